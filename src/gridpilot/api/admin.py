"""Security administration and audit: who am I, API tokens, gateway
certificates and asset bindings (admin), the audit log (auditor, admin)."""

from __future__ import annotations

import csv
import io
import json
from collections.abc import Iterator
from dataclasses import asdict, dataclass
from datetime import datetime
from typing import Annotated, Any, Literal

from fastapi import APIRouter, HTTPException, Query, Request, Response
from fastapi.responses import StreamingResponse
from pydantic import BaseModel, Field
from sqlalchemy.ext.asyncio import AsyncConnection

from gridpilot.core.errors import NotFound
from gridpilot.ingest.enrollment import EnrollmentStore
from gridpilot.ingest.onboarding import GatewayOnboarding
from gridpilot.ingest.registry import GatewayStore
from gridpilot.security.audit import Actor, AuditEvent, AuditLog
from gridpilot.security.certs import CertificateRegistry
from gridpilot.security.principal import GRANTABLE, Role
from gridpilot.security.signing import EvidenceSigner
from gridpilot.security.tenants import TenantStore
from gridpilot.security.tokens import TokenInfo, TokenStore

from .auth import principal_of, tenant_of
from .inputs import INT64_MAX, Instant, RequestBody
from .owned import require_asset, require_gateway

router = APIRouter(prefix="/api/v1")


@dataclass
class SecurityDeps:
    audit: AuditLog
    tokens: TokenStore
    certs: CertificateRegistry
    gateways: GatewayStore
    enrollment: EnrollmentStore
    # Gateway certificates for enrollment tokens (api/onboarding.py); None: off.
    onboarding: GatewayOnboarding | None = None
    tenants: TenantStore | None = None
    # Signs evidence exports (api/evidence.py); None: they answer 404.
    evidence_signer: EvidenceSigner | None = None


def _deps(request: Request) -> SecurityDeps:
    deps: SecurityDeps = request.app.state.security
    return deps


def actor(request: Request) -> Actor:
    return principal_of(request.state).actor(getattr(request.state, "request_id", ""))


class MeView(BaseModel):
    principal: str
    roles: list[str]
    auth: str
    tenant_id: str = Field(description="the tenant whose objects this caller sees")
    permissions: list[str] = Field(
        description="what the roles grant (read, dispatch, audit, admin): the console "
        "shows only the controls these allow; the server still checks each request"
    )


class TokenCreate(RequestBody):
    name: str = Field(min_length=1, max_length=64, pattern=r"^[A-Za-z0-9_-]+$")
    role: Role
    expires_at: Instant | None = None
    tenant_id: str | None = Field(
        None,
        min_length=1,
        max_length=63,
        pattern=r"^[a-z0-9][a-z0-9-]*$",
        description="the token's tenant; default: the caller's (only a platform admin "
        "names another)",
    )


@dataclass(frozen=True)
class TokenCreated(TokenInfo):
    """A new token's view (``security.tokens.TokenInfo``) and its secret."""

    token: Annotated[str, Field(description="the bearer token; shown once, not stored")]


class Rebind(RequestBody):
    gateway_id: str = Field(min_length=1, max_length=64, pattern=r"^[A-Za-z0-9][A-Za-z0-9._-]*$")
    reason: str = Field("", max_length=500)


class RebindView(BaseModel):
    asset_id: str
    gateway_id: str
    previous_gateway_id: str


class RevokeGateway(RequestBody):
    reason: str = Field("", max_length=500)


class CertificateView(BaseModel):
    fingerprint: str
    gateway_id: str
    serial: str
    not_before: datetime
    not_after: datetime
    first_seen: datetime | None
    last_seen: datetime | None
    revoked_at: datetime | None
    revoked_by: str | None
    revoke_reason: str | None


class RevokedView(BaseModel):
    gateway_id: str
    revoked_fingerprints: list[str]


class AuditView(BaseModel):
    id: int
    at: datetime
    actor: str
    actor_role: str
    auth_method: str
    action: str
    target: str
    outcome: str
    request_id: str
    detail: dict[str, Any]
    prev_hash: str
    hash: str


@router.get("/me", response_model=MeView, tags=["security"])
async def me(request: Request) -> MeView:
    p = principal_of(request.state)
    granted = [m.value for m in GRANTABLE if p.can(m)]
    return MeView(
        principal=p.name,
        roles=sorted(p.roles),
        auth=p.method,
        permissions=granted,
        tenant_id=p.tenant_id,
    )


@router.get("/tokens", response_model=list[TokenInfo], tags=["security"])
async def list_tokens(request: Request, include_revoked: bool = False) -> list[TokenInfo]:
    return await _deps(request).tokens.list(include_revoked, tenant_of(request))


@router.post("/tokens", response_model=TokenCreated, status_code=201, tags=["security"])
async def create_token(request: Request, body: TokenCreate) -> TokenCreated:
    """A token of the caller's tenant; a platform admin names any tenant
    (its first admin token) and alone may grant ``platform-admin``."""
    deps, who = _deps(request), actor(request)
    own = tenant_of(request)
    tenant = body.tenant_id or own or principal_of(request.state).tenant_id
    if own is not None and body.role is Role.PLATFORM_ADMIN:
        raise HTTPException(403, "only a platform admin may grant platform-admin")
    async with deps.audit.action(who, "token.create", body.name, recorded=True):
        if own is not None and tenant != own:
            raise NotFound(f"tenant {tenant} does not exist", field="tenant_id")
        info, secret = await deps.tokens.create(
            body.name, body.role.value, who, body.expires_at, tenant
        )
    return TokenCreated(**asdict(info), token=secret)


@router.post("/tokens/{token_id}/revoke", response_model=TokenInfo, tags=["security"])
async def revoke_token(request: Request, token_id: str) -> TokenInfo:
    deps, who = _deps(request), actor(request)
    async with deps.audit.action(who, "token.revoke", token_id, recorded=True):
        return await deps.tokens.revoke(token_id, who, tenant_of(request))


@router.get(
    "/gateways/{gateway_id}/certificates", response_model=list[CertificateView], tags=["security"]
)
async def gateway_certificates(request: Request, gateway_id: str) -> list[dict[str, Any]]:
    await require_gateway(request, gateway_id)
    return await _deps(request).certs.list_for(gateway_id)


@router.post("/gateways/{gateway_id}/revoke", response_model=RevokedView, tags=["security"])
async def revoke_gateway(
    request: Request, gateway_id: str, body: RevokeGateway | None = None
) -> RevokedView:
    """Revoke every certificate of the gateway the headend has seen; its live
    stream is closed within seconds. (Certificates it never presented:
    ``gridpilot pki revoke``.)"""
    deps, who = _deps(request), actor(request)
    async with deps.audit.action(who, "gateway.revoke", gateway_id, recorded=True):
        await require_gateway(request, gateway_id)
        fps = await deps.certs.revoke_gateway(gateway_id, who, body.reason if body else "")
    return RevokedView(gateway_id=gateway_id, revoked_fingerprints=fps)


@router.put("/assets/{asset_id}/gateway", response_model=RebindView, tags=["security"])
async def rebind_asset(request: Request, asset_id: str, body: Rebind) -> RebindView:
    """Bind the asset to another gateway of its site (e.g. a replaced gateway).
    The old gateway's telemetry and acks for it are refused from then on."""
    deps = _deps(request)
    who = actor(request)

    async def record(conn: AsyncConnection, old: str) -> None:
        await deps.audit.append(
            AuditEvent(
                who,
                "asset.rebind",
                asset_id,
                "ok",
                {"from": old, "to": body.gateway_id, "reason": body.reason},
            ),
            conn,
        )

    async with deps.audit.action(who, "asset.rebind", asset_id, recorded=True):
        await require_asset(request, asset_id)
        await require_gateway(request, body.gateway_id)
        old = await deps.gateways.rebind(asset_id, body.gateway_id, record)
    return RebindView(asset_id=asset_id, gateway_id=body.gateway_id, previous_gateway_id=old)


AUDIT_FIELDS = list(AuditView.model_fields)


@router.get(
    "/audit",
    response_model=list[AuditView],
    tags=["security"],
    responses={200: {"content": {"application/x-ndjson": {}, "text/csv": {}}}},
)
async def audit_log(
    request: Request,
    after_id: Annotated[
        int, Query(ge=0, le=INT64_MAX, description="rows with a greater id (paging)")
    ] = 0,
    since: Instant | None = None,
    until: Instant | None = None,
    action: str | None = None,
    actor_name: Annotated[str | None, Query(alias="actor")] = None,
    target: str | None = None,
    limit: Annotated[int, Query(ge=1, le=10_000)] = 1000,
    format: Literal["json", "jsonl", "csv"] = "json",
) -> Any:
    """Audit events in id order; ``format=jsonl`` or ``csv`` for export."""
    rows = await _deps(request).audit.query(
        after_id=after_id,
        since=since,
        until=until,
        action=action,
        actor=actor_name,
        target=target,
        limit=limit,
        tenant=tenant_of(request),
    )
    if format == "json":
        return rows
    views = [AuditView.model_validate(r).model_dump(mode="json") for r in rows]
    if format == "jsonl":
        body = "".join(json.dumps(v, sort_keys=True) + "\n" for v in views)
        return Response(body, media_type="application/x-ndjson")
    return StreamingResponse(
        _csv(views),
        media_type="text/csv",
        headers={"Content-Disposition": 'attachment; filename="gridpilot-audit.csv"'},
    )


def _csv(views: list[dict[str, Any]]) -> Iterator[str]:
    buf = io.StringIO()
    writer = csv.DictWriter(buf, fieldnames=AUDIT_FIELDS)
    writer.writeheader()
    for v in views:
        writer.writerow({**v, "detail": json.dumps(v["detail"], sort_keys=True)})
    yield buf.getvalue()
