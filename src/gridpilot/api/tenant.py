"""The caller's tenant for quotas, usage, retention and evidence exports:
the principal's own (a platform admin's token is kept in ``default``). The
rows a request may see are narrowed by ``auth.tenant_of`` and row-level
security (docs/security.md, Tenancy)."""

from __future__ import annotations

from fastapi import Request

from gridpilot.security.principal import Principal

from .auth import principal_of


def tenant_of(principal: Principal) -> str:
    """The tenant whose quotas, usage and retention this principal's requests use."""
    return principal.tenant_id


def caller_tenant(request: Request) -> str:
    return tenant_of(principal_of(request.state))
