"""``gridpilot agent check --connect`` output and ``gridpilot agent schema``."""

from __future__ import annotations

import asyncio
import json
import logging
import sys
from pathlib import Path

import structlog
import typer
from rich.console import Console
from rich.table import Table

from gridpilot.edge_agent.adapters import quiet_protocol_loggers
from gridpilot.edge_agent.config import SiteConfig
from gridpilot.edge_agent.probe import probe_site
from gridpilot.edge_agent.schema import render_schema


def check_connect(console: Console, cfg: SiteConfig, timeout_s: float) -> int:
    """Read every device once and print its normalized values; the number of
    devices that could not be read."""
    quiet_protocol_loggers()
    if not structlog.is_configured():  # the tables go to stdout; only problems to stderr
        structlog.configure(
            wrapper_class=structlog.make_filtering_bound_logger(logging.WARNING),
            logger_factory=structlog.PrintLoggerFactory(sys.stderr),
        )
    results = asyncio.run(probe_site(cfg, timeout_s=timeout_s))
    failed = 0
    for r in results:
        if r.error is not None:
            failed += 1
            console.print(
                f"{r.asset_id} ({r.device}): FAILED after {r.seconds:.1f} s: {r.error}",
                markup=False,
                highlight=False,
            )
            continue
        table = Table(title=f"{r.asset_id} ({r.device}), read in {r.seconds:.2f} s")
        table.add_column("field", no_wrap=True)
        table.add_column("value", justify="right")
        table.add_column("quality", no_wrap=True)
        for name, value, quality in r.rows():
            shown = json.dumps(value) if isinstance(value, dict | list) else _fmt(value)
            table.add_row(name, shown, quality)
        console.print(table)
    return failed


def write_schema(output: Path | None) -> None:
    text = render_schema()
    if output is None:
        typer.echo(text, nl=False)
    else:
        output.write_text(text, encoding="utf-8")
        typer.echo(f"wrote {output}", err=True)


def _fmt(value: object) -> str:
    if value is None:
        return "—"
    if isinstance(value, float):
        return f"{value:g}"
    return str(value)


def make_opcua_certificate(out: Path, uri: str, host: str) -> tuple[Path, Path]:
    """A self-signed OPC UA application certificate (DER) and key (PEM) whose
    subjectAltName holds ``uri`` (the client's application URI) and ``host``."""
    from asyncua.crypto.cert_gen import setup_self_signed_certificate
    from cryptography.x509.oid import ExtendedKeyUsageOID

    out.mkdir(parents=True, exist_ok=True)
    cert, key = out / "agent-cert.der", out / "agent-key.pem"
    for path in (cert, key):
        if path.exists():
            raise typer.BadParameter(f"{path} exists; remove it first", param_hint="--out")
    asyncio.run(
        setup_self_signed_certificate(
            key,
            cert,
            uri,
            host,
            [ExtendedKeyUsageOID.CLIENT_AUTH],
            {"commonName": "GridPilot edge agent", "organizationName": "GridPilot"},
        )
    )
    key.chmod(0o600)
    return cert, key
