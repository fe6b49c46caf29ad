"""Site enrollment (admin): which gateways may speak for a site, and the
approval of assets a gateway declared beyond its enrollment's bound.
Every change is audited: ``attempt`` first, then ``refused``/``failed`` here or
``ok`` in the transaction that makes it (ingest/enrollment.py)."""

from __future__ import annotations

from datetime import datetime
from typing import Annotated, Any

from fastapi import APIRouter, Path, Query, Request, Response
from pydantic import BaseModel, Field

from gridpilot.ingest.enrollment import EnrollmentStore
from gridpilot.security.identity import GATEWAY_ID_PATTERN

from .admin import SecurityDeps, actor
from .inputs import RequestBody
from .owned import require_asset, require_site_free_or_own
from .schemas import AssetView

router = APIRouter(prefix="/api/v1", tags=["enrollment"])

ID = GATEWAY_ID_PATTERN.pattern  # sites and gateways share the id rule of certificates
SiteId = Annotated[str, Path(pattern=ID, description="the site's id")]
GatewayId = Annotated[str, Path(pattern=ID, description="the gateway's id")]


def _deps(request: Request) -> SecurityDeps:
    deps: SecurityDeps = request.app.state.security
    return deps


def _store(request: Request) -> EnrollmentStore:
    return _deps(request).enrollment


class EnrollGateway(RequestBody):
    gateway_id: str = Field(pattern=ID, description="the gateway (its certificate's id)")
    max_asset_kw: float | None = Field(
        None,
        ge=0,
        le=1_000_000,
        allow_inf_nan=False,
        description="assets this gateway declares for the first time with |p_min_kw| or "
        "|p_max_kw| beyond this are held until an admin approves them; none set: every new "
        "asset is held",
    )


class EnrollmentView(BaseModel):
    site_id: str
    gateway_id: str
    enrolled_by: str
    enrolled_at: datetime
    max_asset_kw: float | None


class Approve(RequestBody):
    reason: str = Field("", max_length=500)


@router.get("/gateways", response_model=list[EnrollmentView])
async def list_enrollments(
    request: Request,
    gateway_id: Annotated[str | None, Query(pattern=ID)] = None,
) -> list[dict[str, Any]]:
    """Every gateway enrollment (the sites each gateway may speak for)."""
    return await _store(request).list_enrollments(gateway_id=gateway_id)


@router.get("/sites/{site_id}/gateways", response_model=list[EnrollmentView])
async def site_gateways(request: Request, site_id: SiteId) -> list[dict[str, Any]]:
    """The gateways enrolled for this site."""
    return await _store(request).list_enrollments(site_id=site_id)


@router.post("/sites/{site_id}/gateways", response_model=EnrollmentView, status_code=201)
async def enroll_gateway(request: Request, site_id: SiteId, body: EnrollGateway) -> dict[str, Any]:
    """Enroll a gateway for a site (again: replaces its max_asset_kw). Only an
    enrolled gateway's Hello for the site is accepted (or one whose
    certificate names the site)."""
    deps, who = _deps(request), actor(request)
    async with deps.audit.action(who, "gateway.enroll", body.gateway_id, recorded=True):
        await require_site_free_or_own(request, site_id)
        return await deps.enrollment.enroll(site_id, body.gateway_id, body.max_asset_kw, who)


@router.delete("/sites/{site_id}/gateways/{gateway_id}", status_code=204)
async def unenroll_gateway(request: Request, site_id: SiteId, gateway_id: GatewayId) -> Response:
    """Withdraw the enrollment: the gateway's next Hello for the site is refused."""
    deps, who = _deps(request), actor(request)
    async with deps.audit.action(who, "gateway.unenroll", gateway_id, recorded=True):
        await deps.enrollment.remove(site_id, gateway_id, who)
    return Response(status_code=204)


@router.get("/sites/{site_id}/held-assets", response_model=list[AssetView])
async def held_assets(request: Request, site_id: SiteId) -> list[dict[str, Any]]:
    """Assets of the site waiting for approval (not dispatched to or counted)."""
    return await _store(request).held(site_id)


@router.post("/assets/{asset_id}/approve", response_model=AssetView)
async def approve_asset(
    request: Request, asset_id: str, body: Approve | None = None
) -> dict[str, Any]:
    """Count a held asset from now on: dispatch, site split, site capacity."""
    deps, who = _deps(request), actor(request)
    async with deps.audit.action(who, "asset.approve", asset_id, recorded=True):
        await require_asset(request, asset_id)
        return await deps.enrollment.approve(asset_id, who, body.reason if body else "")
