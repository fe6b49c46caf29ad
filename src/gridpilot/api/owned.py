"""Objects named in a path, as the caller's tenant sees them: another
tenant's object does not exist for it (404, as for an unknown id; never 403,
which would say it exists)."""

from __future__ import annotations

from fastapi import Request
from sqlalchemy import or_, select
from sqlalchemy.ext.asyncio import AsyncEngine

from gridpilot.core.errors import NotFound
from gridpilot.schema import tables as t
from gridpilot.schema import tenancy
from gridpilot.schema.tenancy import visible


def _engine(request: Request) -> AsyncEngine:
    engine: AsyncEngine = request.app.state.engine
    return engine


async def require_gateway(request: Request, gateway_id: str) -> None:
    """The gateway is the caller's: it said Hello as one of its gateways, or
    the caller's admin enrolled it."""
    g, e = t.gateways, t.gateway_enrollments
    q = select(
        or_(
            select(g.c.id).where(g.c.id == gateway_id, visible(g)).exists(),
            select(e.c.gateway_id).where(e.c.gateway_id == gateway_id, visible(e)).exists(),
        )
    )
    async with _engine(request).connect() as conn:
        if not (await conn.execute(q)).scalar():
            raise NotFound(f"gateway {gateway_id} does not exist", field="gateway_id")


async def require_asset(request: Request, asset_id: str) -> None:
    a = t.assets
    async with _engine(request).connect() as conn:
        found = await conn.execute(select(a.c.id).where(a.c.id == asset_id, visible(a)))
        if found.first() is None:
            raise NotFound(f"asset {asset_id} does not exist", field="asset_id")


async def require_site_free_or_own(request: Request, site_id: str) -> None:
    """A site id the caller may name: its own site, or one that does not exist
    yet (a gateway's first Hello creates it). Another tenant's is NotFound:
    ids are global, so this one check looks across tenants (system scope)."""
    s = t.sites
    with tenancy.scope(tenancy.SYSTEM):
        async with _engine(request).connect() as conn:
            row = (await conn.execute(select(s.c.tenant_id).where(s.c.id == site_id))).first()
    tenant = tenancy.scoped_tenant()
    if row is not None and tenant is not None and row.tenant_id != tenant:
        raise NotFound(f"site {site_id} does not exist", field="site_id")
