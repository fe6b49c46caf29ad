"""Tenants (platform admin): create, list, suspend, resume. Each change is
audited (``attempt``, then ``ok`` in the change's own transaction, or
``refused``/``failed``: security/tenants.py)."""

from __future__ import annotations

from dataclasses import asdict
from datetime import datetime
from typing import Annotated

from fastapi import APIRouter, Path, Request
from pydantic import BaseModel, Field

from gridpilot.security.tenants import TENANT_ID, TenantInfo, TenantStore

from .admin import SecurityDeps, actor
from .errors import Unavailable
from .inputs import RequestBody

router = APIRouter(prefix="/api/v1", tags=["tenants"])
TenantId = Annotated[str, Path(pattern=TENANT_ID.pattern, description="the tenant's id")]


def _store(request: Request) -> TenantStore:
    deps: SecurityDeps = request.app.state.security
    if deps.tenants is None:
        raise Unavailable("tenants", "this API serves no tenant store")
    return deps.tenants


class TenantCreate(RequestBody):
    id: str = Field(
        pattern=TENANT_ID.pattern,
        description="1-63 lower-case letters, digits or '-': the tenant_id of its objects",
    )
    name: str = Field(min_length=1, max_length=200)


class TenantView(BaseModel):
    id: str
    name: str
    created_at: datetime
    suspended_at: datetime | None = Field(
        description="set while suspended: its principals and gateways are refused"
    )
    suspended_by: str | None

    @classmethod
    def of(cls, info: TenantInfo) -> TenantView:
        return cls(**asdict(info))


@router.get("/tenants", response_model=list[TenantView])
async def list_tenants(request: Request) -> list[TenantView]:
    return [TenantView.of(i) for i in await _store(request).list()]


@router.post("/tenants", response_model=TenantView, status_code=201)
async def create_tenant(request: Request, body: TenantCreate) -> TenantView:
    """A new tenant; give it a first admin token with ``POST /tokens``
    (``tenant_id``) or ``gridpilot token create --tenant``."""
    store, who = _store(request), actor(request)
    async with request.app.state.security.audit.action(
        who, "tenant.create", body.id, recorded=True
    ):
        return TenantView.of(await store.create(body.id, body.name, who))


@router.post("/tenants/{tenant_id}/suspend", response_model=TenantView)
async def suspend_tenant(request: Request, tenant_id: TenantId) -> TenantView:
    """Refuse the tenant's principals (401) and its gateways (their live
    streams end within seconds, new ones are refused). Its data stays.
    Idempotent."""
    store, who = _store(request), actor(request)
    async with request.app.state.security.audit.action(
        who, "tenant.suspend", tenant_id, recorded=True
    ):
        return TenantView.of(await store.set_suspended(tenant_id, True, who))


@router.post("/tenants/{tenant_id}/resume", response_model=TenantView)
async def resume_tenant(request: Request, tenant_id: TenantId) -> TenantView:
    store, who = _store(request), actor(request)
    async with request.app.state.security.audit.action(
        who, "tenant.resume", tenant_id, recorded=True
    ):
        return TenantView.of(await store.set_suspended(tenant_id, False, who))
