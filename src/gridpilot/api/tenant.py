"""The caller's tenant: the one place the API asks for it.

Every table carries ``tenant_id``; one tenant, ``default``, exists until the
tenancy work gives each principal its own, and then :func:`tenant_of` is
where it is read.
"""

from __future__ import annotations

from fastapi import Request

from gridpilot.schema.tables import DEFAULT_TENANT
from gridpilot.security.principal import Principal

from .auth import principal_of


def tenant_of(principal: Principal) -> str:
    """The tenant whose rows and quotas this principal's requests use."""
    del principal  # today: every principal belongs to the default tenant
    return DEFAULT_TENANT


def caller_tenant(request: Request) -> str:
    return tenant_of(principal_of(request.state))
