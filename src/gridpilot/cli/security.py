"""``gridpilot pki``, ``gridpilot token`` and ``gridpilot audit``.

``pki`` works on files only, except ``pki revoke``, which (like ``token`` and
``audit``) acts on the database at GRIDPILOT_DATABASE_URL. Actions on the
database are audited as ``cli:<os user>``.
"""

from __future__ import annotations

import asyncio
import getpass
import re
from collections.abc import Awaitable, Callable
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Annotated, TypeVar

import sqlalchemy.exc
import typer
from cryptography import x509

from gridpilot.core.errors import DomainError
from gridpilot.ops.logging import configure_logging
from gridpilot.ops.settings import load_settings
from gridpilot.schema import db
from gridpilot.schema.tables import DEFAULT_TENANT
from gridpilot.security.audit import Actor, AuditLog
from gridpilot.security.certs import CertificateRegistry
from gridpilot.security.identity import fingerprint, gateway_uri
from gridpilot.security.pki import (
    GATEWAY_DAYS,
    HEADEND_DAYS,
    Pki,
    PkiError,
)
from gridpilot.security.principal import Role
from gridpilot.security.tokens import TokenStore

pki_app = typer.Typer(
    help="A small CA for gateway and headend certificates (dev, pilots, `gridpilot up`).",
    no_args_is_help=True,
)
token_app = typer.Typer(
    help="REST API tokens: create (shown once), list, revoke.", no_args_is_help=True
)
audit_app = typer.Typer(help="The append-only audit log.", no_args_is_help=True)

PkiDir = Annotated[
    Path,
    typer.Option("--dir", envvar="GRIDPILOT_PKI_DIR", help="the PKI directory"),
]
T = TypeVar("T")


def cli_actor() -> Actor:
    return Actor(f"cli:{getpass.getuser()}", "admin", "cli")


def _fail(message: str, code: int = 1) -> typer.Exit:
    typer.echo(f"gridpilot: {message}", err=True)
    return typer.Exit(code)


def _open(root: Path) -> Pki:
    try:
        return Pki(root)
    except PkiError as exc:
        raise _fail(str(exc)) from None


def _with_db(work: Callable[[AuditLog], Awaitable[T]]) -> T:
    settings = load_settings()
    configure_logging("warning")  # stdout carries only the command's output (e.g. a token)

    async def run() -> T:
        engine = db.async_engine(settings.database_url)
        try:
            return await work(AuditLog(engine))
        finally:
            await engine.dispose()

    try:
        return asyncio.run(run())
    except DomainError as exc:
        raise _fail(exc.message) from None
    except sqlalchemy.exc.ProgrammingError:
        raise _fail("the database schema is missing or old: run 'gridpilot db upgrade'") from None
    except db.DATABASE_OR_NETWORK_DOWN as exc:
        raise _fail(f"cannot reach the database: {exc.__class__.__name__}") from None


# ---------------------------------------------------------------- pki
@pki_app.command("init")
def pki_init(
    root: PkiDir = Path("pki"),
    trust_domain: Annotated[
        str, typer.Option(help="gateway certificates name spiffe://<this>/gateway/<id>")
    ] = "gridpilot",
    days: Annotated[int, typer.Option(help="CA validity in days")] = 3650,
) -> None:
    """Create a CA (ca.pem, ca.key with 0600) in the PKI directory."""
    try:
        pki = Pki.init(root, trust_domain, days)
    except PkiError as exc:
        raise _fail(str(exc)) from None
    typer.echo(f"CA created: {pki.ca_file} (trust domain {pki.trust_domain})")


@pki_app.command("issue-headend")
def pki_issue_headend(
    dns: Annotated[list[str], typer.Option("--dns", help="DNS name agents dial (repeatable)")],
    ip: Annotated[list[str] | None, typer.Option("--ip", help="IP address (repeatable)")] = None,
    days: Annotated[int, typer.Option(help="validity in days (max 397)")] = HEADEND_DAYS,
    root: PkiDir = Path("pki"),
) -> None:
    """Issue the AgentGateway's server certificate (serverAuth)."""
    try:
        issued = _open(root).issue_headend(dns, ip or [], days)
    except PkiError as exc:
        raise _fail(str(exc)) from None
    typer.echo(f"headend certificate: {issued.cert_file}\nheadend key:         {issued.key_file}")
    typer.echo(
        "headend settings:\n"
        f"  GRIDPILOT_GRPC_TLS_CERT_FILE={issued.cert_file}\n"
        f"  GRIDPILOT_GRPC_TLS_KEY_FILE={issued.key_file}\n"
        f"  GRIDPILOT_GRPC_CLIENT_CA_FILE={root / 'ca.pem'}"
    )


@pki_app.command("issue-gateway")
def pki_issue_gateway(
    gateway_id: Annotated[str, typer.Argument(help="the gateway id of the site's agent")],
    days: Annotated[int, typer.Option(help="validity in days (max 397)")] = GATEWAY_DAYS,
    site: Annotated[
        str | None,
        typer.Option(
            "--site",
            help="name the site in the certificate (spiffe://<domain>/site/<site>/gateway/<id>):"
            " it then counts as the gateway's enrollment for that site",
        ),
    ] = None,
    root: PkiDir = Path("pki"),
) -> None:
    """Issue a gateway's client certificate: one URI SAN naming the gateway (and with
    --site its site), clientAuth."""
    pki = _open(root)
    try:
        issued = pki.issue_gateway(gateway_id, days, site)
    except PkiError as exc:
        raise _fail(str(exc)) from None
    cert = issued.cert
    typer.echo(
        f"gateway {gateway_id}: {issued.cert_file} (key {issued.key_file}, 0600)\n"
        f"  identity     {gateway_uri(pki.trust_domain, gateway_id, site)}\n"
        f"  valid until  {cert.not_valid_after_utc:%Y-%m-%d %H:%M} UTC\n"
        f"  fingerprint  {fingerprint(cert)}\n"
        "site YAML:\n"
        "  headend:\n"
        "    address: <headend host>:50051\n"
        f"    ca_file: {pki.ca_file}\n"
        f"    cert_file: {issued.cert_file}\n"
        f"    key_file: {issued.key_file}"
    )


@pki_app.command("revoke")
def pki_revoke(
    gateway_id: Annotated[str, typer.Argument(help="the gateway whose certificates to revoke")],
    reason: Annotated[str, typer.Option(help="why (kept in the audit log)")] = "",
    cert: Annotated[
        list[Path] | None, typer.Option("--cert", help="also this certificate file (repeatable)")
    ] = None,
    root: PkiDir = Path("pki"),
) -> None:
    """Revoke every certificate of a gateway (all this CA issued to it, all the
    headend has seen, and --cert files). Its live stream closes within seconds;
    a certificate issued afterwards works again."""
    certs: list[x509.Certificate] = []
    trust_domain = load_settings().trust_domain
    if (root / "ca.key").exists():
        pki = _open(root)
        trust_domain = pki.trust_domain
        certs += pki.issued_for(gateway_id)
    for path in cert or []:
        certs.append(x509.load_pem_x509_certificate(path.read_bytes()))

    async def work(audit: AuditLog) -> list[str]:
        registry = CertificateRegistry(audit.engine, audit)
        return await registry.revoke_gateway(gateway_id, cli_actor(), reason, certs, trust_domain)

    try:
        fps = _with_db(work)
    except ValueError as exc:
        raise _fail(str(exc)) from None
    typer.echo(f"gateway {gateway_id}: {len(fps)} certificate(s) revoked")
    for fp in fps:
        typer.echo(f"  {fp}")


# ---------------------------------------------------------------- token
@token_app.command("create")
def token_create(
    name: Annotated[str, typer.Option(help="who or what uses it, e.g. alice or scada-bridge")],
    role: Annotated[Role, typer.Option(help="viewer, operator, admin, auditor or platform-admin")],
    expires_days: Annotated[
        int | None, typer.Option(help="expire after this many days (default: never)")
    ] = None,
    tenant: Annotated[
        str, typer.Option(help="the tenant whose objects it sees (gridpilot tenant list)")
    ] = DEFAULT_TENANT,
) -> None:
    """Create an API token and print it once (only its SHA-256 is stored).
    A platform-admin token acts above tenants (docs/security.md, Tenancy)."""
    expires = datetime.now(UTC) + timedelta(days=expires_days) if expires_days else None

    async def work(audit: AuditLog) -> tuple[str, str]:
        info, secret = await TokenStore(audit.engine, audit).create(
            name, role.value, cli_actor(), expires, tenant
        )
        return info.id, secret

    token_id, secret = _with_db(work)
    typer.echo(secret)
    typer.echo(
        f"token {token_id} ({name}, {role.value}, tenant {tenant}); shown once, store it now",
        err=True,
    )


@token_app.command("list")
def token_list(
    all_: Annotated[bool, typer.Option("--all", help="include revoked tokens")] = False,
) -> None:
    """List tokens (id, name, role, tenant, prefix; never the token)."""

    async def work(audit: AuditLog) -> list[str]:
        rows = await TokenStore(audit.engine, audit).list(all_)
        return [
            f"{r.id}  {r.name:<20} {r.role:<9} {r.tenant_id:<12} {r.prefix}…  "
            f"created {r.created_at:%Y-%m-%d} "
            f"by {r.created_by}"
            + (f"  REVOKED {r.revoked_at:%Y-%m-%d}" if r.revoked_at else "")
            + (f"  last used {r.last_used_at:%Y-%m-%d %H:%M}" if r.last_used_at else "")
            for r in rows
        ]

    for line in _with_db(work):
        typer.echo(line)


@token_app.command("revoke")
def token_revoke(
    token: Annotated[str, typer.Argument(help="token id (tok_…) or the name of a live token")],
) -> None:
    """Revoke a token; requests with it get 401 from then on. The last live
    admin token is refused: create another admin token first."""

    async def work(audit: AuditLog) -> str:
        return (await TokenStore(audit.engine, audit).revoke(token, cli_actor())).id

    typer.echo(f"token {_with_db(work)} revoked")


# ---------------------------------------------------------------- audit
@audit_app.command("verify")
def audit_verify(
    expect_head: Annotated[
        str | None,
        typer.Option(
            "--expect-head",
            metavar="ID:HASH",
            help="a head recorded elsewhere (the headend's `audit_head` log line, or the "
            "head an earlier verify printed): that row must still be in the chain with this "
            "hash, so removing the newest rows is found too",
        ),
    ] = None,
) -> None:
    """Check the audit log's hash chain; exit 1 and name the first bad row if
    any row was changed or removed."""
    expected = _parse_head(expect_head) if expect_head else None

    async def work(audit: AuditLog) -> tuple[bool, str]:
        r = await audit.verify(expected)
        if r.ok:
            return True, f"audit log ok: {r.count} events, head {r.head_id}:{r.head_hash}"
        return False, (
            f"audit log TAMPERED at id {r.bad_id}: {r.problem} "
            f"({r.count} events verified before it)"
        )

    ok, line = _with_db(work)
    if not ok:
        raise _fail(line)
    typer.echo(line)


@audit_app.command("prune")
def audit_prune(
    dry_run: Annotated[
        bool, typer.Option("--dry-run", help="say what would go, remove nothing")
    ] = False,
) -> None:
    """Remove the oldest audit rows that every tenant's retention lets go
    (PUT /api/v1/retention audit_days, never under GRIDPILOT_AUDIT_RETENTION_MIN_DAYS;
    nothing of a tenant on legal hold). Run it as the owner of the tables (like
    `gridpilot db upgrade`, e.g. daily); the chain then starts at an anchor that
    `gridpilot audit verify` checks from."""
    from gridpilot.security.audit_prune import prune

    min_days = load_settings().audit_retention_min_days

    async def work(audit: AuditLog) -> str:
        r = await prune(audit, datetime.now(UTC), min_days, cli_actor(), dry_run)
        if r.anchor is None:
            return "audit log: nothing to prune"
        verb = "would remove" if dry_run else "removed"
        return (
            f"audit log: {verb} {r.rows} rows; the chain starts after {r.anchor[0]}:{r.anchor[1]}"
        )

    typer.echo(_with_db(work))  # not the owner: exit 1 saying so


def _parse_head(value: str) -> tuple[int, str]:
    id_, _, hash_ = value.partition(":")
    if not (id_.isdigit() and int(id_) > 0 and re.fullmatch(r"[0-9a-f]{64}", hash_)):
        raise typer.BadParameter(
            "expected ID:HASH, e.g. 42:<64 hex digits>", param_hint="--expect-head"
        )
    return int(id_), hash_


@audit_app.command("verify-export")
def audit_verify_export(
    bundle: Annotated[Path, typer.Argument(help="an evidence bundle (zip) from the export")],
    key: Annotated[
        Path | None,
        typer.Option(
            "--key",
            help="the signer's public key (PEM, from `gridpilot audit export-key` or "
            "GET /api/v1/audit/export/key): pins who signed; without it the bundle's own "
            "key is used, which proves integrity, not origin",
        ),
    ] = None,
) -> None:
    """Check an evidence bundle offline: its signature, every file's digest, the
    CSVs against the JSON, and the audit hash chain segment. Exit 1 naming what
    failed (a changed file or row, a broken chain, a bad signature)."""
    from gridpilot.security.evidence_verify import BundleInvalid, verify_bundle
    from gridpilot.security.signing import SigningKeyError, load_public_key

    try:
        data = bundle.read_bytes()
        public = load_public_key(key.read_bytes()) if key is not None else None
    except (OSError, SigningKeyError) as exc:
        raise _fail(str(exc), 2) from None
    try:
        report = verify_bundle(data, public)
    except BundleInvalid as exc:
        raise _fail(f"evidence bundle INVALID: {exc}") from None
    typer.echo(report.summary())


@audit_app.command("export-key")
def audit_export_key(
    key_file: Annotated[
        Path | None,
        typer.Option(
            "--key-file",
            help="the signing key (default: GRIDPILOT_EVIDENCE_KEY_FILE, else "
            "<GRIDPILOT_PKI_DIR>/evidence.key); created when missing",
        ),
    ] = None,
) -> None:
    """Print the public key (PEM) evidence exports are signed with, to pin for
    `gridpilot audit verify-export --key`; its fingerprint goes to stderr."""
    from gridpilot.security.signing import EvidenceSigner, SigningKeyError, public_pem

    path = key_file or load_settings().evidence_key_path
    if path is None:
        raise _fail("no signing key: set GRIDPILOT_EVIDENCE_KEY_FILE or GRIDPILOT_PKI_DIR", 2)
    try:
        signer = EvidenceSigner.load_or_create(path)
    except (SigningKeyError, OSError) as exc:
        raise _fail(str(exc)) from None
    typer.echo(public_pem(signer.public_key).decode(), nl=False)
    typer.echo(f"fingerprint {signer.fingerprint} ({path})", err=True)
