"""The caller's tenant: the one place routes ask for it.

Every table carries ``tenant_id``; one tenant, ``default``, exists until the
tenancy work gives each principal its own, and then this is where it is read.
"""

from __future__ import annotations

from fastapi import Request

from gridpilot.schema.tables import DEFAULT_TENANT


def caller_tenant(request: Request) -> str:
    """The tenant whose rows this request may see."""
    del request  # today: every principal belongs to the default tenant
    return DEFAULT_TENANT
