"""Read endpoints: agents, sites, assets, telemetry (dispatches: dispatches.py)."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from typing import Annotated, Any

from fastapi import APIRouter, Query, Request
from sqlalchemy import and_, func, literal_column, select
from sqlalchemy.ext.asyncio import AsyncEngine

from gridpilot.core.errors import NotFound, ValidationFailed
from gridpilot.schema import tables as t

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
BUCKETS = {"1m": "1 minute", "5m": "5 minutes", "15m": "15 minutes", "1h": "1 hour"}


def _engine(request: Request) -> AsyncEngine:
    engine: AsyncEngine = request.app.state.engine
    return engine


@router.get("/agents", response_model=list[AgentView], tags=["agents"])
async def list_agents(request: Request) -> list[dict[str, Any]]:
    g, s, live = t.gateways, t.sites, t.agent_sessions.alias("live")
    ended = t.agent_sessions.alias("ended")
    last = (  # each gateway's ended sessions, newest first (nth == 1)
        select(
            ended.c.gateway_id,
            ended.c.ended_at,
            ended.c.end_reason,
            func.row_number()
            .over(partition_by=ended.c.gateway_id, order_by=ended.c.ended_at.desc())
            .label("nth"),
        )
        .where(ended.c.ended_at.is_not(None))
        .subquery("last")
    )
    q = (
        select(
            g.c.id.label("gateway_id"),
            g.c.site_id,
            s.c.name.label("site_name"),
            g.c.last_seen,
            g.c.agent_version,
            live.c.id.label("session_id"),
            live.c.peer,
            live.c.headend_id,
            live.c.connected_at,
            live.c.last_seen.label("session_last_seen"),
            last.c.end_reason.label("last_end_reason"),
            last.c.ended_at.label("last_ended_at"),
        )
        .select_from(
            g.join(s, s.c.id == g.c.site_id)
            .outerjoin(live, and_(live.c.gateway_id == g.c.id, live.c.ended_at.is_(None)))
            .outerjoin(last, and_(last.c.gateway_id == g.c.id, last.c.nth == 1))
        )
        .order_by(g.c.id)
    )
    async with _engine(request).connect() as conn:
        rows = (await conn.execute(q)).mappings().all()
    return [
        {
            **r,
            "connected": r["session_id"] is not None,
            "last_seen": r["session_last_seen"] or r["last_seen"],
        }
        for r in rows
    ]


@router.get("/agents/{gateway_id}/sessions", response_model=list[AgentSessionView], tags=["agents"])
async def agent_sessions(
    request: Request, gateway_id: str, limit: Annotated[int, Query(ge=1, le=1000)] = 50
) -> list[dict[str, Any]]:
    """The gateway's sessions, newest first: its connects and disconnects."""
    ses = t.agent_sessions
    q = (
        select(*(ses.c[name] for name in AgentSessionView.model_fields))
        .where(ses.c.gateway_id == gateway_id)
        .order_by(ses.c.connected_at.desc(), ses.c.id)
        .limit(limit)
    )
    async with _engine(request).connect() as conn:
        rows = (await conn.execute(q)).mappings().all()
        if not rows:
            known = await conn.execute(select(t.gateways.c.id).where(t.gateways.c.id == gateway_id))
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
        .group_by(t.sites.c.id)
        .order_by(t.sites.c.id)
    )
    async with _engine(request).connect() as conn:
        rows = (await conn.execute(q)).mappings().all()
    return [{**r, "asset_ids": sorted(r["asset_ids"])} for r in rows]


@router.get("/assets", response_model=list[AssetView], tags=["assets"])
async def list_assets(request: Request, site_id: str | None = None) -> list[dict[str, Any]]:
    q = select(t.assets).order_by(t.assets.c.id)
    if site_id:
        q = q.where(t.assets.c.site_id == site_id)
    async with _engine(request).connect() as conn:
        return [dict(r) for r in (await conn.execute(q)).mappings().all()]


@router.get("/assets/{asset_id}", response_model=AssetView, tags=["assets"])
async def get_asset(request: Request, asset_id: str) -> dict[str, Any]:
    async with _engine(request).connect() as conn:
        row = (
            (await conn.execute(select(t.assets).where(t.assets.c.id == asset_id)))
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
    q = select(latest).order_by(latest.c.asset_id)
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
    q = select(t.telemetry_latest).where(t.telemetry_latest.c.asset_id == asset_id)
    async with _engine(request).connect() as conn:
        row = (await conn.execute(q)).mappings().first()
        if row is None:
            exists = (
                await conn.execute(select(t.assets.c.id).where(t.assets.c.id == asset_id))
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
    bucket: Annotated[str | None, Query(description="1m, 5m, 15m or 1h")] = None,
    limit: Annotated[int, Query(ge=1, le=MAX_ROWS)] = 1000,
) -> list[dict[str, Any]]:
    if not asset_id and not site_id:
        raise ValidationFailed("give asset_id or site_id", field="asset_id")
    now = datetime.now(UTC)
    end = end or now
    start = start or end - timedelta(hours=1)
    if start >= end:
        raise ValidationFailed("start must be before end", field="start")
    tel = t.telemetry
    where = [tel.c.ts >= start, tel.c.ts < end]
    if asset_id:
        where.append(tel.c.asset_id == asset_id)
    if site_id:
        where.append(tel.c.asset_id.in_(select(t.assets.c.id).where(t.assets.c.site_id == site_id)))
    if bucket is not None:
        if bucket not in BUCKETS:
            raise ValidationFailed(f"bucket must be one of {', '.join(BUCKETS)}", field="bucket")
        b = func.date_bin(
            literal_column(f"interval '{BUCKETS[bucket]}'"),
            tel.c.ts,
            literal_column("'2000-01-01'::timestamptz"),
        ).label("bucket")
        q = (
            select(
                tel.c.asset_id,
                b,
                func.count().label("samples"),
                func.avg(tel.c.p_kw).label("p_kw_avg"),
                func.min(tel.c.p_kw).label("p_kw_min"),
                func.max(tel.c.p_kw).label("p_kw_max"),
                func.avg(tel.c.soc_pct).label("soc_pct_avg"),
            )
            .where(*where)
            .group_by(tel.c.asset_id, b)
            .order_by(b, tel.c.asset_id)
            .limit(limit)
        )
    else:
        q = select(tel).where(*where).order_by(tel.c.ts, tel.c.asset_id).limit(limit)
    async with _engine(request).connect() as conn:
        return [dict(r) for r in (await conn.execute(q)).mappings().all()]
