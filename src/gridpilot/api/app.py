"""The FastAPI application: /api/v1, health, metrics and the console."""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from typing import Any

from fastapi import Depends, FastAPI, Request, Response
from fastapi.responses import JSONResponse, PlainTextResponse
from prometheus_client import CONTENT_TYPE_LATEST, CollectorRegistry, generate_latest
from pydantic import BaseModel, Field
from sqlalchemy import text
from sqlalchemy.ext.asyncio import AsyncEngine

import gridpilot
from gridpilot.core.errors import NotFound
from gridpilot.core.quotas import Quotas
from gridpilot.core.usage import UsageMeter
from gridpilot.schema import tenancy
from gridpilot.schema.tables import DEFAULT_TENANT

from . import (
    admin,
    dispatches,
    enrollment,
    errors,
    events,
    evidence,
    onboarding,
    openapi,
    pages,
    reads,
    retention,
    tenants,
    usage,
)
from .admin import SecurityDeps
from .auth import AuthMiddleware, AuthSettings, principal_of, require_rule
from .dispatch_service import DispatchService
from .inputs import DEFAULT_MAX_BODY_BYTES, BodyLimit, check_parameters
from .quotas import RateLimit
from .retention import RetentionDefaults

HealthCheck = Callable[[], Awaitable[dict[str, Any]]]
DATABASE_CHECK_S = 2.0


class ReadinessView(BaseModel):
    status: str = Field(description="ready or degraded")
    checks: dict[str, str] = Field(description="each dependency: ok, or why not")
    not_ready: list[str] = Field(description="the checks that are not ok (e.g. temporal)")


@dataclass
class ApiDeps:
    engine: AsyncEngine
    dispatches: DispatchService
    security: SecurityDeps
    auth: AuthSettings
    readiness: HealthCheck | None = None
    metrics: CollectorRegistry | None = None
    # Awaited before each /metrics render: reads the figures kept elsewhere (the database).
    metrics_refresh: Callable[[], Awaitable[None]] | None = None
    extra: dict[str, Any] = field(default_factory=dict)
    max_body_bytes: int = DEFAULT_MAX_BODY_BYTES
    # A trace UI's link with {trace_id} (Settings.trace_ui_url): a dispatch's trace_url.
    trace_ui_url: str | None = None
    # A dispatch's workflow in the Temporal UI: this + the dispatch id (pages.workflow_url).
    workflow_url: str | None = None
    # Rate limits (core/quotas.py); None: none.
    quotas: Quotas | None = None
    # Counts API calls per tenant and hour (core/usage.py); None: not metered.
    usage: UsageMeter | None = None
    # What retention policies fall back on and are held to (None: the defaults).
    retention: RetentionDefaults | None = None


async def _database_check(engine: AsyncEngine) -> str:
    try:
        async with asyncio.timeout(DATABASE_CHECK_S):
            async with engine.connect() as conn:
                await conn.execute(text("SELECT 1"))
    except Exception as exc:
        return f"unavailable: {type(exc).__name__}"
    return "ok"


async def _no_checks() -> dict[str, Any]:
    return {}


def create_app(deps: ApiDeps) -> FastAPI:
    app = FastAPI(
        # Authorization first, then no parameter PostgreSQL cannot hold (inputs.py).
        dependencies=[Depends(require_rule), Depends(check_parameters)],
        # /docs is ours (pages.py): Swagger UI from the package, not a CDN.
        docs_url=None,
        redoc_url=None,
        title="GridPilot",
        version=gridpilot.__version__,
        description="Dispatch control plane for distributed energy resources. "
        "Sign convention: p_kw > 0 exports to the grid, p_kw < 0 imports.",
    )
    app.state.deps = deps
    app.state.engine = deps.engine
    app.state.security = deps.security
    errors.install(app)
    openapi.install(app)
    app.include_router(reads.router)
    app.include_router(dispatches.router)
    app.include_router(admin.router)
    app.include_router(evidence.router)
    app.include_router(usage.router)
    app.include_router(retention.router)
    app.include_router(enrollment.router)
    app.include_router(onboarding.router)
    app.include_router(events.router)
    app.include_router(tenants.router)
    pages.install(app, deps.workflow_url)
    # Inside auth: an unauthenticated caller gets 401 whatever it sends.
    app.add_middleware(BodyLimit, max_bytes=deps.max_body_bytes)
    # Inside auth (it needs the principal), before the body is read: 429.
    app.add_middleware(RateLimit, quotas=deps.quotas, usage=deps.usage)
    # Every request is authenticated, authorized and logged before any route
    # runs (see auth.RULES); outermost, every answer gets the security headers.
    app.add_middleware(AuthMiddleware, settings=deps.auth)
    app.add_middleware(pages.SecurityHeaders)

    @app.get("/healthz", tags=["health"])
    async def healthz() -> dict[str, str]:
        return {"status": "ok"}

    @app.get(
        "/readyz",
        tags=["health"],
        response_model=ReadinessView,
        responses={503: {"model": ReadinessView, "description": "Not ready: see `not_ready`."}},
    )
    async def readyz() -> JSONResponse:
        """Ready when the database and Temporal each answer within 2 s (and,
        on a headend, the telemetry writer reaches the database)."""
        database, others = await asyncio.gather(
            _database_check(deps.engine), (deps.readiness or _no_checks)()
        )
        checks: dict[str, Any] = {"database": database, **others}
        not_ready = sorted(k for k, v in checks.items() if v != "ok")
        return JSONResponse(
            status_code=503 if not_ready else 200,
            content={
                "status": "degraded" if not_ready else "ready",
                "checks": checks,
                "not_ready": not_ready,
            },
        )

    @app.get(
        "/metrics",
        tags=["health"],
        response_class=PlainTextResponse,
        responses={404: {"description": "This process has no metrics registry."}},
    )
    async def metrics(request: Request) -> Response:
        """The whole fleet's figures: the service operator's (the default
        tenant and platform admins); another tenant's principal finds none."""
        caller = principal_of(request.state)
        if caller.authenticated and not caller.platform and caller.tenant_id != DEFAULT_TENANT:
            raise NotFound("no metrics for this tenant: /metrics is the service operator's")
        if deps.metrics is None:
            raise NotFound("this process has no metrics registry")
        if deps.metrics_refresh is not None:
            # Every tenant's figures, whoever asks: the cache is shared.
            with tenancy.scope(tenancy.SYSTEM):
                await deps.metrics_refresh()
        return Response(generate_latest(deps.metrics), media_type=CONTENT_TYPE_LATEST)

    return app
