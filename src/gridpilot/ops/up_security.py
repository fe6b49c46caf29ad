"""What makes ``gridpilot up`` secure by default: a dev CA with the headend's
and the demo agent's certificates in the data dir, the demo gateway's
enrollment for its site, an admin API token, and
for the agent's OPC UA surface an operator login and a trusted demo client
certificate."""

from __future__ import annotations

import asyncio
import os
import re
import secrets
import shutil
import socket
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from pathlib import Path
from urllib.parse import urlsplit, urlunsplit

import psycopg
from cryptography import x509

from gridpilot.ingest.enrollment import EnrollmentStore
from gridpilot.ops.logging import configure_logging
from gridpilot.schema import db
from gridpilot.schema.roles import check_role_name
from gridpilot.security.audit import Actor, AuditLog
from gridpilot.security.passwords import hash_password
from gridpilot.security.pki import Pki
from gridpilot.security.tokens import TokenStore

RENEW_BEFORE = timedelta(days=30)
ADMIN_TOKEN_NAME = "demo-admin"
UP_ACTOR = Actor("cli:gridpilot-up", "admin", "cli")
DEMO_MAX_ASSET_KW = 300.0


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
        _write_secret(token_file, secret)
    return secret


def ensure_demo_enrollment(
    database_url: str, site_id: str, gateway_id: str, max_asset_kw: float = DEMO_MAX_ASSET_KW
) -> None:
    """Enroll the demo gateway for the demo site (once), so its Hello is
    accepted and its assets (up to 300 kW each) count without approval."""
    asyncio.run(_enroll(database_url, site_id, gateway_id, max_asset_kw))


async def _enroll(database_url: str, site_id: str, gateway_id: str, max_asset_kw: float) -> None:
    engine = db.async_engine(database_url)
    try:
        store = EnrollmentStore(engine, AuditLog(engine))
        if not await store.list_enrollments(site_id=site_id, gateway_id=gateway_id):
            await store.enroll(site_id, gateway_id, max_asset_kw, UP_ACTOR)
    finally:
        await engine.dispose()


def ensure_app_login(database_url: str, role: str, password_file: Path) -> str:
    """The URL the demo headend uses: the app role (which may not rewrite the
    audit log), given LOGIN and a password kept in ``password_file`` (0600).
    ``database_url`` is the owner's: it migrated the database and makes the
    telemetry partitions."""
    password = password_file.read_text().strip() if password_file.is_file() else ""
    if not re.fullmatch(r"[A-Za-z0-9_-]{16,}", password):  # url-safe: nothing to escape
        password = secrets.token_urlsafe(24)
        _write_secret(password_file, password)
    db.maintain_partitions(database_url)
    with psycopg.connect(database_url, autocommit=True) as conn:
        conn.execute(f"ALTER ROLE {check_role_name(role)} LOGIN PASSWORD '{password}'")
    parts = urlsplit(database_url)
    host = parts.netloc.rpartition("@")[2]
    return urlunsplit(parts._replace(netloc=f"{role}:{password}@{host}"))


async def _admin_token(database_url: str, existing: str | None) -> str:
    engine = db.async_engine(database_url)
    try:
        tokens = TokenStore(engine, AuditLog(engine))
        if existing and await tokens.authenticate(existing) is not None:
            return existing
        # One step: revoking first would be refused when it is the last admin token.
        return (await tokens.rotate(ADMIN_TOKEN_NAME, "admin", UP_ACTOR))[1]
    finally:
        await engine.dispose()


OPCUA_OPERATOR = "demo-operator"
OPCUA_CLIENT_URI = "urn:gridpilot:demo:scada-client"


@dataclass(frozen=True)
class DemoOpcua:
    """The demo site's OPC UA surface: what the site YAML gets (``server``)
    and what ``up.json`` tells a user to connect with (``connect``)."""

    server: dict[str, object]
    connect: dict[str, object]


def ensure_demo_opcua(data_dir: Path, gateway_id: str, port: int) -> DemoOpcua:
    """An operator password (made once, 0600) and a demo SCADA client
    certificate already in the agent's trust list, so an OPC UA client can
    connect at once with Basic256Sha256 SignAndEncrypt. Any other client is
    refused until its certificate is moved from ``opcua/rejected`` to
    ``opcua/trusted`` (the agent's state dir is the data dir)."""
    password_file = data_dir / "opcua-operator-password"
    if not password_file.is_file():
        _write_secret(password_file, secrets.token_urlsafe(12))
    password = password_file.read_text().strip()
    client_dir = data_dir / "opcua-client"
    cert, key = client_dir / "demo-scada.der", client_dir / "demo-scada.pem"
    if not (cert.is_file() and key.is_file()):
        client_dir.mkdir(parents=True, exist_ok=True)
        asyncio.run(_client_certificate(cert, key))
        os.chmod(key, 0o600)
    trusted = data_dir / "opcua" / "trusted"
    trusted.mkdir(parents=True, exist_ok=True)
    shutil.copy(cert, trusted / cert.name)
    namespace = f"urn:gridpilot:edge:{gateway_id}"
    server: dict[str, object] = {
        "endpoint": f"opc.tcp://127.0.0.1:{port}/gridpilot/",
        "namespace_uri": namespace,
        "security_policies": ["Basic256Sha256_SignAndEncrypt"],
        "users": [
            {"name": OPCUA_OPERATOR, "role": "operator", "password_hash": hash_password(password)}
        ],
        "arbitration": "cloud_priority",
    }
    connect: dict[str, object] = {
        "endpoint_url": f"opc.tcp://127.0.0.1:{port}/gridpilot/",
        "security": "Basic256Sha256 SignAndEncrypt",
        "namespace_uri": namespace,
        "username": OPCUA_OPERATOR,
        "password_file": str(password_file),
        "client_certificate": str(cert),
        "client_private_key": str(key),
        "client_application_uri": OPCUA_CLIENT_URI,
        "server_certificate": str(data_dir / "opcua" / "server-cert.der"),
        "trusted_dir": str(trusted),
        "rejected_dir": str(data_dir / "opcua" / "rejected"),
        "setpoint_node": f"nsu={namespace};s=Sites/demo-site/demo-bess/Control/SetpointKw",
    }
    return DemoOpcua(server, connect)


async def _client_certificate(cert: Path, key: Path) -> None:
    from asyncua.crypto.cert_gen import setup_self_signed_certificate
    from cryptography.x509.oid import ExtendedKeyUsageOID

    await setup_self_signed_certificate(
        key,
        cert,
        OPCUA_CLIENT_URI,
        socket.gethostname(),  # asyncua clients check their own certificate for it
        [ExtendedKeyUsageOID.CLIENT_AUTH],
        {"commonName": "GridPilot demo SCADA client", "organizationName": "GridPilot demo"},
    )


def _write_secret(path: Path, secret: str) -> None:
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    try:
        os.fchmod(fd, 0o600)
        os.write(fd, (secret + "\n").encode())
    finally:
        os.close(fd)
