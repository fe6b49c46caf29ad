"""The stores of one database, wired as a headend wires them, for tests."""

from __future__ import annotations

from sqlalchemy.ext.asyncio import AsyncEngine

from gridpilot.api.admin import SecurityDeps
from gridpilot.ingest.enrollment import EnrollmentStore
from gridpilot.ingest.registry import GatewayStore
from gridpilot.security.audit import AuditLog
from gridpilot.security.certs import CertificateRegistry
from gridpilot.security.tenants import TenantStore
from gridpilot.security.tokens import TokenStore


def security_deps(engine: AsyncEngine, audit: AuditLog, tokens: TokenStore) -> SecurityDeps:
    """The security routes' stores on one database (a headend builds its own,
    shared with ingest)."""
    return SecurityDeps(
        audit,
        tokens,
        CertificateRegistry(engine, audit),
        GatewayStore(engine),
        EnrollmentStore(engine, audit),
        tenants=TenantStore(engine, audit),
    )
