"""The FastAPI application: /api/v1, health, metrics and the console."""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Annotated, Any

from fastapi import APIRouter, Depends, FastAPI, Header, Request, Response
from fastapi.responses import FileResponse, JSONResponse, PlainTextResponse
from prometheus_client import CONTENT_TYPE_LATEST, CollectorRegistry, generate_latest
from sqlalchemy import text
from sqlalchemy.ext.asyncio import AsyncEngine

import gridpilot

from . import admin, errors, reads
from .admin import SecurityDeps
from .auth import AuthMiddleware, AuthSettings, principal_of, require_rule
from .dispatches import DispatchService
from .inputs import DEFAULT_MAX_BODY_BYTES, BodyLimit, check_parameters
from .schemas import CancelBody, DispatchCreate, DispatchView, SplitPreview

CONSOLE = Path(__file__).parent / "console"
HealthCheck = Callable[[], Awaitable[dict[str, Any]]]


@dataclass
class ApiDeps:
    engine: AsyncEngine
    dispatches: DispatchService
    security: SecurityDeps
    auth: AuthSettings
    readiness: HealthCheck | None = None
    metrics: CollectorRegistry | None = None
    extra: dict[str, Any] = field(default_factory=dict)
    max_body_bytes: int = DEFAULT_MAX_BODY_BYTES


def _principal(request: Request) -> str:
    """The caller, as AuthMiddleware authenticated it (e.g. ``token:alice``)."""
    return principal_of(request.state).name


write = APIRouter(prefix="/api/v1", tags=["dispatches"])


@write.post("/dispatches", response_model=DispatchView, status_code=201)
async def submit_dispatch(
    request: Request,
    response: Response,
    body: DispatchCreate,
    idempotency_key: Annotated[
        str | None,
        Header(
            max_length=200,
            pattern=r"^[\x20-\x7e]+$",
            description="retry-safe key (printable ASCII), scoped to the caller",
        ),
    ] = None,
) -> dict[str, Any]:
    service: DispatchService = request.app.state.deps.dispatches
    dispatch_id, created = await service.submit(
        body, idempotency_key, _principal(request), admin.actor(request)
    )
    if not created:
        response.status_code = 200
    response.headers["Location"] = f"/api/v1/dispatches/{dispatch_id}"
    return await reads.dispatch_view(request.app.state.engine, dispatch_id)


@write.post("/dispatches/preview", response_model=SplitPreview)
async def preview_dispatch(request: Request, body: DispatchCreate) -> SplitPreview:
    service: DispatchService = request.app.state.deps.dispatches
    return await service.preview(body)


@write.post("/dispatches/{dispatch_id}/cancel", response_model=DispatchView, status_code=202)
async def cancel_dispatch(
    request: Request, dispatch_id: str, body: CancelBody | None = None
) -> dict[str, Any]:
    service: DispatchService = request.app.state.deps.dispatches
    await service.cancel(
        dispatch_id, _principal(request), body.detail if body else "", admin.actor(request)
    )
    return await reads.dispatch_view(request.app.state.engine, dispatch_id)


def create_app(deps: ApiDeps) -> FastAPI:
    app = FastAPI(
        # Authorization first, then no parameter PostgreSQL cannot hold (inputs.py).
        dependencies=[Depends(require_rule), Depends(check_parameters)],
        title="GridPilot",
        version=gridpilot.__version__,
        description="Dispatch control plane for distributed energy resources. "
        "Sign convention: p_kw > 0 exports to the grid, p_kw < 0 imports.",
    )
    app.state.deps = deps
    app.state.engine = deps.engine
    app.state.security = deps.security
    errors.install(app)
    app.include_router(reads.router)
    app.include_router(write)
    app.include_router(admin.router)
    # Inside auth: an unauthenticated caller gets 401 whatever it sends.
    app.add_middleware(BodyLimit, max_bytes=deps.max_body_bytes)
    # Outermost of ours: every request is authenticated, authorized and logged
    # before any route runs (see auth.RULES).
    app.add_middleware(AuthMiddleware, settings=deps.auth)

    @app.get("/healthz", tags=["health"])
    async def healthz() -> dict[str, str]:
        return {"status": "ok"}

    @app.get("/readyz", tags=["health"])
    async def readyz() -> JSONResponse:
        checks: dict[str, Any] = {}
        try:
            async with deps.engine.connect() as conn:
                await conn.execute(text("SELECT 1"))
            checks["database"] = "ok"
        except Exception as exc:
            checks["database"] = f"unavailable: {type(exc).__name__}"
        if deps.readiness is not None:
            checks.update(await deps.readiness())
        ok = all(v == "ok" for v in checks.values())
        return JSONResponse(
            status_code=200 if ok else 503,
            content={"status": "ready" if ok else "degraded", "checks": checks},
        )

    @app.get("/metrics", tags=["health"], response_class=PlainTextResponse)
    async def metrics() -> Response:
        if deps.metrics is None:
            return Response(status_code=404)
        return Response(generate_latest(deps.metrics), media_type=CONTENT_TYPE_LATEST)

    @app.get("/", include_in_schema=False)
    async def console() -> FileResponse:
        return FileResponse(CONSOLE / "index.html")

    return app
