"""Read endpoints: agents, sites, assets, telemetry (dispatches: dispatches.py)."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from typing import Annotated, Any

from fastapi import APIRouter, Query, Request
from sqlalchemy import and_, func, select, true
from sqlalchemy.ext.asyncio import AsyncEngine

from gridpilot.core.errors import NotFound, ValidationFailed
from gridpilot.schema import tables as t
from gridpilot.schema.rollups import has_rollups
from gridpilot.schema.tenancy import visible
from gridpilot.store import fleet
from gridpilot.store.history import WIDTHS, HistoryQuery, history, pick_width

from .inputs import Instant
from .schemas import (
    AgentSessionView,
    AgentView,
    AssetView,
    BucketView,
    SampleView,
    SiteView,
)

router = APIRouter(prefix="/api/v1")
MAX_ROWS = 10_000


def _visible_assets() -> Any:
    """The ids of the assets the caller's tenant owns: telemetry has no row
    security of its own (COPY and TimescaleDB's columnstore refuse it), so its
    reads go through assets, which has (docs/security.md, Tenancy)."""
    return select(t.assets.c.id).where(visible(t.assets))


def _engine(request: Request) -> AsyncEngine:
    engine: AsyncEngine = request.app.state.engine
    return engine


@router.get("/agents", response_model=list[AgentView], tags=["agents"])
async def list_agents(request: Request) -> list[dict[str, Any]]:
    async with _engine(request).connect() as conn:
        return await fleet.agents(conn)


@router.get("/agents/sessions", response_model=list[AgentSessionView], tags=["agents"])
async def every_agents_sessions(
    request: Request, per_gateway: Annotated[int, Query(ge=1, le=1000)] = 20
) -> list[dict[str, Any]]:
    """Every gateway's newest sessions (at most ``per_gateway`` each), by
    gateway id, newest first: the agents page's history in one call."""
    ses, g = t.agent_sessions, t.gateways
    newest = (
        select(*(ses.c[name] for name in AgentSessionView.model_fields))
        .where(ses.c.gateway_id == g.c.id)
        .order_by(ses.c.connected_at.desc(), ses.c.id)
        .limit(per_gateway)
        .lateral("newest")
    )
    q = select(newest).select_from(g.join(newest, true())).where(visible(g)).order_by(g.c.id)
    async with _engine(request).connect() as conn:
        return [dict(r) for r in (await conn.execute(q)).mappings().all()]


@router.get("/agents/{gateway_id}/sessions", response_model=list[AgentSessionView], tags=["agents"])
async def agent_sessions(
    request: Request, gateway_id: str, limit: Annotated[int, Query(ge=1, le=1000)] = 50
) -> list[dict[str, Any]]:
    """The gateway's sessions, newest first: its connects and disconnects."""
    ses = t.agent_sessions
    q = (
        select(*(ses.c[name] for name in AgentSessionView.model_fields))
        .where(ses.c.gateway_id == gateway_id, visible(ses))
        .order_by(ses.c.connected_at.desc(), ses.c.id)
        .limit(limit)
    )
    async with _engine(request).connect() as conn:
        rows = (await conn.execute(q)).mappings().all()
        if not rows:
            known = await conn.execute(
                select(t.gateways.c.id).where(t.gateways.c.id == gateway_id, visible(t.gateways))
            )
            if known.first() is None:
                raise NotFound(f"gateway {gateway_id} does not exist", field="gateway_id")
    return [dict(r) for r in rows]


@router.get("/sites", response_model=list[SiteView], tags=["sites"])
async def list_sites(request: Request) -> list[dict[str, Any]]:
    a = t.assets
    q = (
        select(
            t.sites.c.id,
            t.sites.c.name,
            func.coalesce(func.array_agg(a.c.id).filter(a.c.id.is_not(None)), []).label(
                "asset_ids"
            ),
            func.coalesce(func.sum(a.c.p_min_kw), 0).label("p_min_kw"),
            func.coalesce(func.sum(a.c.p_max_kw), 0).label("p_max_kw"),
        )
        .select_from(
            # held assets (waiting for an admin's approval) are not the site's yet
            t.sites.outerjoin(a, and_(a.c.site_id == t.sites.c.id, a.c.held_reason.is_(None)))
        )
        .where(visible(t.sites))
        .group_by(t.sites.c.id)
        .order_by(t.sites.c.id)
    )
    async with _engine(request).connect() as conn:
        rows = (await conn.execute(q)).mappings().all()
    return [{**r, "asset_ids": sorted(r["asset_ids"])} for r in rows]


@router.get("/assets", response_model=list[AssetView], tags=["assets"])
async def list_assets(request: Request, site_id: str | None = None) -> list[dict[str, Any]]:
    q = select(t.assets).where(visible(t.assets)).order_by(t.assets.c.id)
    if site_id:
        q = q.where(t.assets.c.site_id == site_id)
    async with _engine(request).connect() as conn:
        return [dict(r) for r in (await conn.execute(q)).mappings().all()]


@router.get("/assets/{asset_id}", response_model=AssetView, tags=["assets"])
async def get_asset(request: Request, asset_id: str) -> dict[str, Any]:
    async with _engine(request).connect() as conn:
        row = (
            (
                await conn.execute(
                    select(t.assets).where(t.assets.c.id == asset_id, visible(t.assets))
                )
            )
            .mappings()
            .first()
        )
    if row is None:
        raise NotFound(f"asset {asset_id} does not exist", field="asset_id")
    return dict(row)


@router.get("/telemetry/latest", response_model=list[SampleView], tags=["telemetry"])
async def latest_telemetry_of_many(
    request: Request, site_id: str | None = None, asset_id: str | None = None
) -> list[dict[str, Any]]:
    """Each asset's latest sample (of a site, or one asset, or every asset) in
    one call, by asset id; an asset without telemetry has no entry."""
    latest = t.telemetry_latest
    q = select(latest).where(latest.c.asset_id.in_(_visible_assets())).order_by(latest.c.asset_id)
    if asset_id:
        q = q.where(latest.c.asset_id == asset_id)
    if site_id:
        q = q.where(
            latest.c.asset_id.in_(select(t.assets.c.id).where(t.assets.c.site_id == site_id))
        )
    async with _engine(request).connect() as conn:
        return [dict(r) for r in (await conn.execute(q)).mappings().all()]


@router.get("/assets/{asset_id}/telemetry/latest", response_model=SampleView, tags=["telemetry"])
async def latest_telemetry(request: Request, asset_id: str) -> dict[str, Any]:
    latest = t.telemetry_latest
    q = select(latest).where(
        latest.c.asset_id == asset_id, latest.c.asset_id.in_(_visible_assets())
    )
    async with _engine(request).connect() as conn:
        row = (await conn.execute(q)).mappings().first()
        if row is None:
            exists = (
                await conn.execute(
                    select(t.assets.c.id).where(t.assets.c.id == asset_id, visible(t.assets))
                )
            ).first()
            what = "has no telemetry yet" if exists else "does not exist"
            raise NotFound(f"asset {asset_id} {what}", field="asset_id")
    return dict(row)


@router.get("/telemetry", response_model=list[SampleView] | list[BucketView], tags=["telemetry"])
async def telemetry(
    request: Request,
    asset_id: str | None = None,
    site_id: str | None = None,
    start: Instant | None = None,
    end: Instant | None = None,
    bucket: Annotated[
        str | None,
        Query(
            description="aggregate into buckets of 1m, 5m, 15m, 1h, 6h or 1d, or `auto`: the "
            "finest of those that keeps each series within max_points; without it, raw samples. "
            "Buckets cover whole widths (the window is widened to bucket edges)."
        ),
    ] = None,
    max_points: Annotated[
        int,
        Query(ge=1, le=MAX_ROWS, description="with bucket=auto: most buckets per series"),
    ] = 500,
    limit: Annotated[int, Query(ge=1, le=MAX_ROWS)] = 1000,
) -> list[dict[str, Any]]:
    if not asset_id and not site_id:
        raise ValidationFailed("give asset_id or site_id", field="asset_id")
    now = datetime.now(UTC)
    end = end or now
    start = start or end - timedelta(hours=1)
    if start >= end:
        raise ValidationFailed("start must be before end", field="start")
    if bucket is not None:
        width = pick_width(start, end, max_points) if bucket == "auto" else bucket
        if width is None:
            raise ValidationFailed(
                f"the window needs more than max_points={max_points} daily buckets: "
                "raise max_points or shorten the window",
                field="max_points",
            )
        if width not in WIDTHS:
            raise ValidationFailed(
                f"bucket must be auto or one of {', '.join(WIDTHS)}", field="bucket"
            )
        query = HistoryQuery(start, end, width, asset_id, site_id, limit)
        async with _engine(request).connect() as conn:
            rollups = getattr(request.app.state, "telemetry_rollups", None)
            if rollups is None:
                rollups = request.app.state.telemetry_rollups = await conn.run_sync(has_rollups)
            return [dict(r) for r in await history(conn, query, rollups)]
    tel = t.telemetry
    where = [tel.c.ts >= start, tel.c.ts < end, tel.c.asset_id.in_(_visible_assets())]
    if asset_id:
        where.append(tel.c.asset_id == asset_id)
    if site_id:
        where.append(tel.c.asset_id.in_(select(t.assets.c.id).where(t.assets.c.site_id == site_id)))
    q = select(tel).where(*where).order_by(tel.c.ts, tel.c.asset_id).limit(limit)
    async with _engine(request).connect() as conn:
        return [dict(r) for r in (await conn.execute(q)).mappings().all()]
