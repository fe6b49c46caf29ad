"""``/api/v1/retention``: the caller's tenant's retention and legal hold
(``store/retention.py``; docs/usage.md)."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime

from fastapi import APIRouter, Request
from pydantic import BaseModel, Field

from gridpilot.core.errors import ValidationFailed
from gridpilot.store import retention as store

from .admin import SecurityDeps, actor
from .inputs import RequestBody
from .tenant import caller_tenant

router = APIRouter(prefix="/api/v1", tags=["usage"])
MAX_DAYS = 36_500


@dataclass(frozen=True)
class RetentionDefaults:
    """The headend's settings the policy falls back on and is held to."""

    telemetry_days: int = 365  # GRIDPILOT_TELEMETRY_RETENTION_DAYS (TimescaleDB's job; 0: off)
    audit_min_days: int = 365  # GRIDPILOT_AUDIT_RETENTION_MIN_DAYS


class RetentionUpdate(RequestBody):
    telemetry_days: int | None = Field(
        None,
        ge=1,
        le=MAX_DAYS,
        description="raw telemetry kept this long (null: no per-tenant deletion)",
    )
    audit_days: int | None = Field(
        None, ge=1, le=MAX_DAYS, description="audit rows kept this long (null: kept)"
    )
    legal_hold: bool = Field(False, description="suspend every deletion of the tenant's data")
    hold_reason: str | None = Field(None, max_length=500, description="required with a hold")


class RetentionView(BaseModel):
    tenant_id: str
    telemetry_days: int | None
    audit_days: int | None
    legal_hold: bool
    hold_reason: str | None
    updated_by: str | None
    updated_at: datetime | None
    checked_at: datetime | None = Field(
        description="when the headend's retention round last looked at this tenant"
    )
    default_telemetry_days: int | None = Field(
        description="on TimescaleDB, its retention job drops every tenant's telemetry older "
        "than this (GRIDPILOT_TELEMETRY_RETENTION_DAYS; null: never); plain PostgreSQL keeps "
        "what no telemetry_days deletes"
    )
    audit_min_days: int = Field(description="the least audit_days may be")


def _defaults(request: Request) -> RetentionDefaults:
    found: RetentionDefaults | None = request.app.state.deps.retention
    return found or RetentionDefaults()


def _view(policy: store.RetentionPolicy, defaults: RetentionDefaults) -> RetentionView:
    return RetentionView(
        **policy.__dict__,
        default_telemetry_days=defaults.telemetry_days or None,
        audit_min_days=defaults.audit_min_days,
    )


@router.get("/retention", response_model=RetentionView)
async def get_retention(request: Request) -> RetentionView:
    """The caller's tenant's retention and legal hold."""
    policy = await store.get(request.app.state.engine, caller_tenant(request))
    return _view(policy, _defaults(request))


@router.put("/retention", response_model=RetentionView)
async def put_retention(request: Request, body: RetentionUpdate) -> RetentionView:
    """Set the caller's tenant's retention and legal hold (audited as
    ``retention.update``). A hold suspends deletion of the tenant's telemetry
    (and pauses TimescaleDB's retention jobs, which drop every tenant's
    chunks) until it is lifted."""
    defaults = _defaults(request)
    if body.audit_days is not None and body.audit_days < defaults.audit_min_days:
        raise ValidationFailed(
            f"audit_days must be at least {defaults.audit_min_days} "
            "(GRIDPILOT_AUDIT_RETENTION_MIN_DAYS)",
            field="audit_days",
        )
    if body.legal_hold and not (body.hold_reason or "").strip():
        raise ValidationFailed("a legal hold needs a hold_reason", field="hold_reason")
    deps: SecurityDeps = request.app.state.security
    policy = store.RetentionPolicy(
        caller_tenant(request),
        body.telemetry_days,
        body.audit_days,
        body.legal_hold,
        body.hold_reason if body.legal_hold else None,
    )
    saved = await store.put(request.app.state.engine, policy, actor(request), deps.audit)
    return _view(saved, defaults)
