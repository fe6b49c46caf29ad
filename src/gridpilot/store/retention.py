"""Retention per tenant and the legal hold (migration 0016).

A tenant's policy: raw telemetry kept ``telemetry_days`` (NULL: no
per-tenant deletion; TimescaleDB's own retention job still drops chunks at
GRIDPILOT_TELEMETRY_RETENTION_DAYS, plain PostgreSQL keeps it), audit rows
``audit_days`` (NULL: kept; never under GRIDPILOT_AUDIT_RETENTION_MIN_DAYS),
and ``legal_hold``, which suspends every deletion of the tenant's data.
:func:`enforce_telemetry` deletes in batches, each of which re-reads the
hold under a lock a policy change waits for, so a hold stops deletion at
the next batch at the latest.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Any

import structlog
from sqlalchemy import func, select, text, true
from sqlalchemy.dialects.postgresql import insert
from sqlalchemy.ext.asyncio import AsyncConnection, AsyncEngine

from gridpilot.schema import tables as t
from gridpilot.schema.tenancy import SETTING, SYSTEM
from gridpilot.security.audit import Actor, AuditEvent, AuditLog

log = structlog.get_logger(__name__)

DELETE_BATCH = 10_000
# A tenant's telemetry is that of its assets: the ingest COPY does not write
# telemetry.tenant_id (every row says 'default'), so a filter on it would
# delete every tenant's rows under the default tenant's policy.
DELETE_SQL = text(
    "DELETE FROM telemetry WHERE ts < :cutoff AND (asset_id, ts) IN "
    "(SELECT asset_id, ts FROM telemetry WHERE ts < :cutoff AND asset_id IN "
    "(SELECT id FROM assets WHERE tenant_id = :tenant) LIMIT :n)"
)


@dataclass(frozen=True)
class RetentionPolicy:
    tenant_id: str
    telemetry_days: int | None = None
    audit_days: int | None = None
    legal_hold: bool = False
    hold_reason: str | None = None
    updated_by: str | None = None
    updated_at: datetime | None = None
    checked_at: datetime | None = None  # a retention round last looked at the tenant


async def get(engine: AsyncEngine, tenant: str) -> RetentionPolicy:
    r = t.retention_policies
    async with engine.connect() as conn:
        row = (await conn.execute(select(r).where(r.c.tenant_id == tenant))).mappings().first()
    return RetentionPolicy(tenant) if row is None else RetentionPolicy(**row)


async def put(
    engine: AsyncEngine, policy: RetentionPolicy, who: Actor, audit: AuditLog
) -> RetentionPolicy:
    """Store the policy and its audit row in one transaction; then apply a
    hold's pause of TimescaleDB's retention at once."""
    r = t.retention_policies
    values: dict[str, Any] = {
        "tenant_id": policy.tenant_id,
        "telemetry_days": policy.telemetry_days,
        "audit_days": policy.audit_days,
        "legal_hold": policy.legal_hold,
        "hold_reason": policy.hold_reason,
        "updated_by": who.name,
    }
    async with engine.begin() as conn:
        stmt = insert(r).values(**values)
        await conn.execute(
            stmt.on_conflict_do_update(
                index_elements=[r.c.tenant_id],
                set_={**{k: stmt.excluded[k] for k in values}, "updated_at": text("now()")},
            )
        )
        detail = {k: v for k, v in values.items() if k not in ("tenant_id", "updated_by")}
        await audit.append(
            AuditEvent(who, "retention.update", policy.tenant_id, "ok", detail), conn
        )
        await sync_timescale_hold(conn)
    return await get(engine, policy.tenant_id)


async def sync_timescale_hold(conn: AsyncConnection) -> int:
    """Pause TimescaleDB's retention jobs while any tenant is on hold (a
    dropped chunk holds every tenant's rows), resume them when none is."""
    held = await any_hold(conn)
    changed = await conn.scalar(text("SELECT gridpilot_hold_retention(:h)"), {"h": bool(held)})
    if changed:
        log.info("timescale_retention_jobs", paused=bool(held), jobs=changed)
    return int(changed or 0)


async def any_hold(conn: AsyncConnection) -> bool:
    """Whether any tenant is on legal hold. Every tenant's hold counts, also in
    a tenant's request changing its own policy, where row-level security
    (migration 0017) would show that tenant's row only: the rest of ``conn``'s
    transaction runs as system work."""
    await conn.execute(text("SELECT set_config(:k, :v, true)"), {"k": SETTING, "v": SYSTEM})
    r = t.retention_policies
    return bool(await conn.scalar(select(true()).where(r.c.legal_hold).limit(1)))


async def enforce_telemetry(engine: AsyncEngine, now: datetime) -> dict[str, int]:
    """Delete each tenant's raw telemetry older than its ``telemetry_days``,
    unless it is on hold; rows deleted per tenant with such a policy."""
    tn, r = t.tenants, t.retention_policies
    async with engine.begin() as conn:
        await sync_timescale_hold(conn)
        tenants = (
            await conn.execute(
                select(tn.c.id, r.c.telemetry_days, r.c.legal_hold).select_from(
                    tn.outerjoin(r, r.c.tenant_id == tn.c.id)
                )
            )
        ).all()
    deleted: dict[str, int] = {}
    for tenant, days, held in tenants:
        if not held and days:
            cutoff = now - timedelta(days=days)
            deleted[tenant] = n = await _delete_before(engine, tenant, cutoff)
            if n:
                log.info("telemetry_retention", tenant=tenant, deleted=n, before=cutoff.isoformat())
        async with engine.begin() as conn:
            await conn.execute(
                r.update().where(r.c.tenant_id == tenant).values(checked_at=func.now())
            )
    return deleted


async def _delete_before(engine: AsyncEngine, tenant: str, cutoff: datetime) -> int:
    r, total = t.retention_policies, 0
    while True:
        async with engine.begin() as conn:
            # A policy change (PUT) waits for this batch; a hold set meanwhile stops the next.
            held = await conn.scalar(
                select(r.c.legal_hold).where(r.c.tenant_id == tenant).with_for_update(read=True)
            )
            if held:
                log.info("telemetry_retention_held", tenant=tenant, deleted=total)
                return total
            result = await conn.execute(
                DELETE_SQL, {"tenant": tenant, "cutoff": cutoff, "n": DELETE_BATCH}
            )
        total += max(result.rowcount, 0)
        if result.rowcount < DELETE_BATCH:
            return total
