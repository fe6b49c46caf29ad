"""``gridpilot agent enroll`` and ``gridpilot agent renew``: the gateway gets
its client certificate from the headend; its private key never leaves it."""

from __future__ import annotations

import ssl
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Annotated

import httpx
import typer

from gridpilot.edge_agent.enroll import Enrolled, EnrollError, GatewayFiles, due, enroll, renew

TOKEN_ENV = "GRIDPILOT_ENROLL_TOKEN"

StateDir = Annotated[
    Path,
    typer.Option(
        "--state-dir",
        help="The agent's state dir: the key, certificate and CA go to DIR/tls/ "
        "(the systemd unit's is /var/lib/gridpilot-agent).",
        metavar="DIR",
    ),
]
CaFile = Annotated[
    Path | None,
    typer.Option(
        "--ca-file",
        help="PEM CA to verify the headend's HTTPS certificate (default: the system's).",
        metavar="PEM",
    ),
]


def _client(ca_file: Path | None) -> httpx.Client:
    verify: ssl.SSLContext | bool = True
    if ca_file is not None:
        verify = ssl.create_default_context(cafile=str(ca_file))
    return httpx.Client(verify=verify, timeout=30)


def _report(done: Enrolled, what: str) -> None:
    typer.echo(
        f"{what}: gateway {done.gateway_id} (site {done.site_id}), certificate valid until "
        f"{done.not_after:%Y-%m-%d %H:%M} UTC\n"
        f"  fingerprint {done.fingerprint}\n"
        f"  key {done.files.key} (0600, never sent), certificate {done.files.cert}, "
        f"CA {done.files.ca}\n"
        "site YAML:\n" + done.files.site_yaml()
    )


def _fail(exc: Exception, what: str) -> typer.Exit:
    typer.echo(f"gridpilot agent {what}: {exc}", err=True)
    return typer.Exit(1)


def enroll_cmd(
    headend: Annotated[
        str,
        typer.Option(
            "--headend", help="The headend's REST API URL, e.g. https://gridpilot.example.com"
        ),
    ],
    token: Annotated[
        str,
        typer.Option(
            "--token",
            envvar=TOKEN_ENV,
            help="The one-time enrollment token an admin issued for this gateway "
            "(`gridpilot gateway token`).",
        ),
    ],
    state_dir: StateDir = Path("."),
    gateway_id: Annotated[
        str | None,
        typer.Option(
            "--gateway-id",
            help="Name this gateway in the CSR (default: the id the token is for; "
            "another id is refused).",
        ),
    ] = None,
    ca_file: CaFile = None,
) -> None:
    """Enroll this gateway: make its key (0600) and a CSR here, send the CSR
    with the one-time token, store the signed certificate and the CA."""
    try:
        with _client(ca_file) as client:
            done = enroll(client, headend, token, state_dir, gateway_id)
    except (EnrollError, OSError) as exc:
        raise _fail(exc, "enroll") from None
    _report(done, "enrolled")


def renew_cmd(
    state_dir: StateDir = Path("."),
    headend: Annotated[
        str | None,
        typer.Option("--headend", help="The REST API URL (default: the one enrolled with)."),
    ] = None,
    within_days: Annotated[
        int,
        typer.Option(
            "--within-days",
            min=0,
            help="Renew only when the certificate expires within this many days "
            "(0: always). Run it daily, e.g. from a systemd timer.",
        ),
    ] = 30,
    ca_file: CaFile = None,
) -> None:
    """Renew the gateway certificate with a new key, authenticated by the
    current certificate. A running agent uses it from its next connection.
    An expired or revoked certificate cannot renew: enroll with a new token."""
    files = GatewayFiles.in_state_dir(state_dir)
    try:
        if within_days and files.cert.is_file():
            if due(files, timedelta(days=within_days)) is None:
                typer.echo(
                    f"not due: {files.cert} is valid for more than {within_days} days "
                    f"(checked {datetime.now(UTC):%Y-%m-%d %H:%M} UTC)"
                )
                return
        with _client(ca_file) as client:
            done = renew(client, state_dir, headend)
    except (EnrollError, OSError, ValueError) as exc:
        raise _fail(exc, "renew") from None
    _report(done, "renewed")
