"""What makes ``gridpilot up`` secure by default: a dev CA with the headend's
and the demo agent's certificates in the data dir, and an admin API token."""

from __future__ import annotations

import asyncio
import os
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from pathlib import Path

from cryptography import x509

from gridpilot.core.errors import NotFound
from gridpilot.ops.logging import configure_logging
from gridpilot.schema import db
from gridpilot.security.audit import Actor, AuditLog
from gridpilot.security.pki import Pki
from gridpilot.security.tokens import TokenStore

RENEW_BEFORE = timedelta(days=30)
ADMIN_TOKEN_NAME = "demo-admin"
UP_ACTOR = Actor("cli:gridpilot-up", "admin", "cli")


@dataclass(frozen=True)
class DemoTls:
    ca_file: Path
    headend_cert: Path
    headend_key: Path
    agent_cert: Path
    agent_key: Path

    def headend_env(self) -> dict[str, str]:
        return {
            "GRIDPILOT_GRPC_INSECURE": "false",
            "GRIDPILOT_GRPC_TLS_CERT_FILE": str(self.headend_cert),
            "GRIDPILOT_GRPC_TLS_KEY_FILE": str(self.headend_key),
            "GRIDPILOT_GRPC_CLIENT_CA_FILE": str(self.ca_file),
        }


def _fresh(cert_file: Path) -> bool:
    if not cert_file.is_file() or not cert_file.with_suffix(".key").is_file():
        return False
    cert = x509.load_pem_x509_certificate(cert_file.read_bytes())
    return cert.not_valid_after_utc - datetime.now(UTC) > RENEW_BEFORE


def ensure_demo_tls(pki_dir: Path, gateway_id: str) -> DemoTls:
    """Create the dev CA once; (re)issue certificates that are missing or expire soon."""
    pki = Pki.open_or_init(pki_dir)
    headend = pki_dir / "headend.pem"
    if not _fresh(headend):
        pki.issue_headend(["localhost"], ["127.0.0.1"])
    agent = pki_dir / "gateways" / f"{gateway_id}.pem"
    if not _fresh(agent):
        pki.issue_gateway(gateway_id)
    return DemoTls(
        pki.ca_file,
        headend,
        headend.with_suffix(".key"),
        agent,
        agent.with_suffix(".key"),
    )


def ensure_admin_token(database_url: str, token_file: Path) -> str:
    """The demo's admin token: reused while it is live, else a new one written
    to ``token_file`` (0600). The database is migrated first."""
    configure_logging("warning")  # this process prints the URLs; details go to logs/
    db.upgrade(database_url)
    existing = token_file.read_text().strip() if token_file.is_file() else None
    secret = asyncio.run(_admin_token(database_url, existing))
    if secret != existing:
        fd = os.open(token_file, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
        try:
            os.fchmod(fd, 0o600)
            os.write(fd, (secret + "\n").encode())
        finally:
            os.close(fd)
    return secret


async def _admin_token(database_url: str, existing: str | None) -> str:
    engine = db.async_engine(database_url)
    try:
        tokens = TokenStore(engine, AuditLog(engine))
        if existing and await tokens.authenticate(existing) is not None:
            return existing
        try:
            await tokens.revoke(ADMIN_TOKEN_NAME, UP_ACTOR)
        except NotFound:
            pass
        return (await tokens.create(ADMIN_TOKEN_NAME, "admin", UP_ACTOR))[1]
    finally:
        await engine.dispose()
