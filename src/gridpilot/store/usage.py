"""Usage per tenant and hour in the database (migration 0016).

Replicas *add* what they counted (``flush``: an upsert that sums, so
several replicas and repeated flushes of new counts compose); the dispatch
outcomes of an hour are *recomputed* from ``dispatch_transitions``
(``recompute_dispatches``: idempotent, any replica may run it).
"""

from __future__ import annotations

from collections import defaultdict
from datetime import datetime, timedelta
from typing import Any

from sqlalchemy import func, select
from sqlalchemy.dialects.postgresql import insert
from sqlalchemy.ext.asyncio import AsyncEngine

from gridpilot.core.usage import ALL_METRICS, DISPATCH_METRICS, Drained, Metric, hour_of
from gridpilot.schema import tables as t

HOUR = timedelta(hours=1)


async def flush(engine: AsyncEngine, drained: Drained) -> None:
    """Add counters and active assets, in one transaction."""
    if drained.empty:
        return
    u, act = t.usage_hourly, t.usage_active_assets
    async with engine.begin() as conn:
        if drained.counters:
            rows = [
                {"tenant_id": tenant, "hour": hour, "metric": metric, "value": n}
                for (tenant, hour, metric), n in sorted(drained.counters.items())
            ]
            stmt = insert(u).values(rows)
            await conn.execute(
                stmt.on_conflict_do_update(
                    index_elements=[u.c.tenant_id, u.c.hour, u.c.metric],
                    set_={"value": u.c.value + stmt.excluded.value, "updated_at": func.now()},
                )
            )
        assets = [
            {"tenant_id": tenant, "hour": hour, "asset_id": asset_id}
            for (tenant, hour), ids in sorted(drained.assets.items())
            for asset_id in sorted(ids)
        ]
        if assets:
            await conn.execute(insert(act).values(assets).on_conflict_do_nothing())


async def recompute_dispatches(engine: AsyncEngine, since: datetime, until: datetime) -> None:
    """Dispatch outcomes of the hours in [since, until): ends per tenant, hour, state."""
    tr, u = t.dispatch_transitions, t.usage_hourly
    start, end = hour_of(since), hour_of(until) + HOUR
    hour = func.date_trunc("hour", tr.c.at, "UTC")  # whatever the session's time zone
    q = (
        select(tr.c.tenant_id, hour.label("hour"), tr.c.to_state, func.count())
        .where(tr.c.to_state.in_(list(DISPATCH_METRICS)), tr.c.at >= start, tr.c.at < end)
        .group_by(tr.c.tenant_id, hour, tr.c.to_state)
    )
    async with engine.begin() as conn:
        found = (await conn.execute(q)).all()
        rows = [
            {"tenant_id": r[0], "hour": r[1], "metric": DISPATCH_METRICS[r[2]], "value": r[3]}
            for r in found
        ]
        if rows:
            stmt = insert(u).values(rows)
            await conn.execute(
                stmt.on_conflict_do_update(
                    index_elements=[u.c.tenant_id, u.c.hour, u.c.metric],
                    set_={"value": stmt.excluded.value, "updated_at": func.now()},
                )
            )


async def read(
    engine: AsyncEngine, tenant: str, since: datetime, until: datetime
) -> list[dict[str, Any]]:
    """One row per hour in [since, until) that has any usage, oldest first,
    with every metric (0 when none)."""
    u, act = t.usage_hourly, t.usage_active_assets
    window = (hour_of(since), until)
    async with engine.connect() as conn:
        counters = (
            await conn.execute(
                select(u.c.hour, u.c.metric, u.c.value).where(
                    u.c.tenant_id == tenant, u.c.hour >= window[0], u.c.hour < window[1]
                )
            )
        ).all()
        actives = (
            await conn.execute(
                select(act.c.hour, func.count())
                .where(act.c.tenant_id == tenant, act.c.hour >= window[0], act.c.hour < window[1])
                .group_by(act.c.hour)
            )
        ).all()
    hours: defaultdict[datetime, dict[str, int]] = defaultdict(dict)
    for hour, metric, value in counters:
        hours[hour][metric] = int(value)
    for hour, n in actives:
        hours[hour][Metric.ACTIVE_ASSETS.value] = int(n)
    return [
        {"tenant_id": tenant, "hour": hour, **{m: found.get(m, 0) for m in ALL_METRICS}}
        for hour, found in sorted(hours.items())
    ]


async def unpushed_hours(
    engine: AsyncEngine, since: datetime, before: datetime
) -> list[tuple[str, datetime]]:
    """(tenant, hour) with usage in [since, before) that no receiver acknowledged yet."""
    u, p = t.usage_hourly, t.usage_pushes
    pushed = select(p.c.tenant_id, p.c.hour).where(
        p.c.tenant_id == u.c.tenant_id, p.c.hour == u.c.hour
    )
    q = (
        select(u.c.tenant_id, u.c.hour)
        .where(u.c.hour >= since, u.c.hour < before, ~pushed.exists())
        .group_by(u.c.tenant_id, u.c.hour)
        .order_by(u.c.hour, u.c.tenant_id)
    )
    async with engine.connect() as conn:
        return [(r[0], r[1]) for r in (await conn.execute(q)).all()]


async def mark_pushed(engine: AsyncEngine, tenant: str, hour: datetime, attempts: int) -> None:
    p = t.usage_pushes
    async with engine.begin() as conn:
        await conn.execute(
            insert(p)
            .values(tenant_id=tenant, hour=hour, attempts=attempts)
            .on_conflict_do_nothing()
        )
