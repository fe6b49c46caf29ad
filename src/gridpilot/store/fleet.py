"""Reads of the fleet's health: agents and their edge buffers, each site's
newest sample, dispatch outcomes and latencies. The agents API, /metrics
and ``gridpilot doctor`` all read them here, so they never disagree.

Each read is one cheap query (indexed, or over the few rows of gateways and
live sessions); the dispatch figures are bounded by ``since``.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime
from typing import Any

from sqlalchemy import and_, false, func, literal_column, select, true
from sqlalchemy.ext.asyncio import AsyncConnection

from gridpilot.core.dispatch import DispatchKind
from gridpilot.core.lifecycle import TERMINAL_VALUES, DispatchState
from gridpilot.schema import tables as t
from gridpilot.schema.tenancy import visible

# What a gateway last reported (heartbeats) and refused (gateways' columns).
EDGE_FIELDS = (
    "buffered_batches",
    "buffered_bytes",
    "dropped_batches",
    "dropped_samples",
    "rejected_samples",
    "last_rejection",
    "reported_at",
    "last_drop_at",
)
# Upper bounds (s) of the dispatch latency histograms.
LATENCY_BUCKETS = (0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0, 60.0, 300.0)
_OPEN = (DispatchState.SUBMITTED, DispatchState.SENT, DispatchState.ACKED)


async def agents(
    conn: AsyncConnection, site_id: str | None = None, history: bool = True
) -> list[dict[str, Any]]:
    """Every gateway (of ``site_id``) with its live session, the end of its last
    one (``history``: it reads the gateways' ended sessions; /metrics, asking
    every few seconds, does without), and its edge figures; by gateway id."""
    g, s, live = t.gateways, t.sites, t.agent_sessions.alias("live")
    ended = t.agent_sessions.alias("ended")
    # Each gateway's newest ended session: one probe of its index per gateway
    # (ix_agent_sessions_gateway_ended), however long the history.
    last = (
        select(ended.c.ended_at, ended.c.end_reason)
        .where(ended.c.gateway_id == g.c.id, ended.c.ended_at.is_not(None))
        .order_by(ended.c.ended_at.desc())
        .limit(1)
    )
    if not history:  # the same columns, without reading the sessions' history
        last = last.where(false())
    last_ended = last.lateral("last")
    q = (
        select(
            g.c.id.label("gateway_id"),
            g.c.site_id,
            s.c.name.label("site_name"),
            g.c.last_seen,
            g.c.agent_version,
            *(g.c[name] for name in EDGE_FIELDS),
            live.c.id.label("session_id"),
            live.c.peer,
            live.c.headend_id,
            live.c.task_queue,
            live.c.connected_at,
            live.c.last_seen.label("session_last_seen"),
            last_ended.c.end_reason.label("last_end_reason"),
            last_ended.c.ended_at.label("last_ended_at"),
        )
        .select_from(
            g.join(s, s.c.id == g.c.site_id)
            .outerjoin(live, and_(live.c.gateway_id == g.c.id, live.c.ended_at.is_(None)))
            .outerjoin(last_ended, true())
        )
        .where(visible(g))
        .order_by(g.c.id)
    )
    if site_id is not None:
        q = q.where(g.c.site_id == site_id)
    rows = (await conn.execute(q)).mappings().all()
    return [
        {
            **r,
            "connected": r["session_id"] is not None,
            "last_seen": r["session_last_seen"] or r["last_seen"],
        }
        for r in rows
    ]


@dataclass(frozen=True)
class SiteFigures:
    site_id: str
    assets: int
    agents_connected: int
    newest_sample_at: datetime | None


async def sites(conn: AsyncConnection, site_id: str | None = None) -> list[SiteFigures]:
    """Per site: its assets (not held), live agent sessions and newest sample."""
    s, a, latest, ses = t.sites, t.assets, t.telemetry_latest, t.agent_sessions
    assets = (
        select(a.c.site_id, func.count().label("n"), func.max(latest.c.ts).label("newest"))
        .select_from(a.outerjoin(latest, latest.c.asset_id == a.c.id))
        .where(a.c.held_reason.is_(None))
        .group_by(a.c.site_id)
        .subquery()
    )
    live = (
        select(ses.c.site_id, func.count().label("n"))
        .where(ses.c.ended_at.is_(None))
        .group_by(ses.c.site_id)
        .subquery()
    )
    q = (
        select(
            s.c.id,
            func.coalesce(assets.c.n, 0),
            func.coalesce(live.c.n, 0),
            assets.c.newest,
        )
        .select_from(
            s.outerjoin(assets, assets.c.site_id == s.c.id).outerjoin(
                live, live.c.site_id == s.c.id
            )
        )
        .where(visible(s))
        .order_by(s.c.id)
    )
    if site_id is not None:
        q = q.where(s.c.id == site_id)
    return [SiteFigures(*r) for r in (await conn.execute(q)).all()]


async def dispatch_outcomes(conn: AsyncConnection, since: datetime) -> list[tuple[str, str, int]]:
    """(state, reason or "", count) of the dispatches created since ``since``
    that have ended."""
    d = t.dispatches
    reason = func.coalesce(d.c.reason, literal_column("''"))
    q = (
        select(d.c.state, reason, func.count())
        .where(d.c.created_at >= since, d.c.state.in_(TERMINAL_VALUES))
        .group_by(d.c.state, reason)
        .order_by(d.c.state, reason)
    )
    return [(r[0], r[1], int(r[2])) for r in (await conn.execute(q)).all()]


@dataclass(frozen=True)
class Latencies:
    """Cumulative counts per bucket bound (``LATENCY_BUCKETS``), the count and
    the sum (s): a Prometheus histogram."""

    buckets: tuple[int, ...]
    count: int
    total_s: float


async def dispatch_latencies(
    conn: AsyncConnection, since: datetime, to_state: DispatchState
) -> Latencies:
    """From submit (the row's creation) to ``to_state``, over the asset
    dispatches created since ``since`` that reached it."""
    d, tr = t.dispatches, t.dispatch_transitions
    lat = func.extract("epoch", tr.c.at - d.c.created_at)
    q = (
        select(
            *(func.count().filter(lat <= b) for b in LATENCY_BUCKETS),
            func.count(),
            func.coalesce(func.sum(lat), 0),
        )
        .select_from(d.join(tr, tr.c.dispatch_id == d.c.id))
        .where(
            d.c.created_at >= since,
            d.c.kind == DispatchKind.ASSET.value,
            tr.c.to_state == to_state.value,
        )
    )
    row = (await conn.execute(q)).one()
    n = len(LATENCY_BUCKETS)
    return Latencies(tuple(int(x) for x in row[:n]), int(row[n]), float(row[n + 1]))


async def oldest_unapplied(conn: AsyncConnection, now: datetime) -> dict[str, float]:
    """Per state (submitted, sent, acked): the seconds since the start of the
    oldest asset dispatch that should be active by now and is not."""
    d = t.dispatches
    q = (
        select(d.c.state, func.min(d.c.start_at))
        .where(
            d.c.kind == DispatchKind.ASSET.value,
            d.c.state.in_([s.value for s in _OPEN]),
            d.c.start_at <= now,
        )
        .group_by(d.c.state)
    )
    found = {state: (now - at).total_seconds() for state, at in (await conn.execute(q)).all()}
    return {s.value: found.get(s.value, 0.0) for s in _OPEN}


async def late_acks(conn: AsyncConnection, since: datetime) -> int:
    late = t.dispatch_late_acks
    q = select(func.count()).where(late.c.received_at >= since)
    return int((await conn.execute(q)).scalar_one())


async def newest_sample(conn: AsyncConnection, asset_id: str) -> datetime | None:
    latest = t.telemetry_latest
    q = select(latest.c.ts).where(latest.c.asset_id == asset_id)
    at: datetime | None = (await conn.execute(q)).scalar()
    return at


async def database_now(conn: AsyncConnection) -> datetime:
    now: datetime = (await conn.execute(select(literal_column("clock_timestamp()")))).scalar_one()
    return now
