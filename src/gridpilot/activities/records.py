"""Database activities of the dispatch workflows; each is idempotent."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

from sqlalchemy import and_, func, select, update
from sqlalchemy.dialects.postgresql import insert
from sqlalchemy.ext.asyncio import AsyncEngine
from temporalio import activity

from gridpilot.schema import tables as t
from gridpilot.workflows.models import (
    AllocationRecord,
    DispatchInput,
    Route,
    SplitAsset,
    SplitInputs,
    TransitionRecord,
)

# Telemetry older than this does not limit a split (it may be stale).
FRESH_TELEMETRY = timedelta(seconds=60)


def dispatch_row(inp: DispatchInput, state: str) -> dict[str, object]:
    return {
        "id": inp.dispatch_id,
        "kind": inp.kind,
        "parent_id": inp.parent_id,
        "asset_id": inp.asset_id,
        "site_id": inp.site_id,
        "p_kw": inp.p_kw,
        "q_kvar": inp.q_kvar,
        "duration_s": inp.duration_s,
        "start_at": inp.start_at,
        "end_at": inp.end_at,
        "deliver_by": inp.deliver_by,
        "state": state,
        "warnings": inp.warnings,
        "idempotency_key": inp.idempotency_key,
        "request_hash": inp.request_hash,
        "submitted_by": inp.submitted_by,
    }


class RecordActivities:
    def __init__(self, engine: AsyncEngine) -> None:
        self._engine = engine

    @activity.defn(name="record_dispatch")
    async def record_dispatch(self, inp: DispatchInput) -> None:
        async with self._engine.begin() as conn:
            if inp.site_id is None and inp.asset_id is not None:
                site = await conn.execute(
                    select(t.assets.c.site_id).where(t.assets.c.id == inp.asset_id)
                )
                inp = inp.model_copy(update={"site_id": site.scalar()})
            await conn.execute(
                insert(t.dispatches)
                .values(**dispatch_row(inp, "submitted"))
                .on_conflict_do_nothing(index_elements=[t.dispatches.c.id])
            )

    @activity.defn(name="record_transition")
    async def record_transition(self, rec: TransitionRecord) -> None:
        async with self._engine.begin() as conn:
            res = await conn.execute(
                insert(t.dispatch_transitions)
                .values(
                    dispatch_id=rec.dispatch_id,
                    seq=rec.seq,
                    from_state=rec.from_state.value if rec.from_state else None,
                    to_state=rec.to_state.value,
                    at=rec.at,
                    reason=rec.reason.value if rec.reason else None,
                    detail=rec.detail,
                    actor=rec.actor,
                )
                .on_conflict_do_nothing()
            )
            if res.rowcount == 0:
                return  # a retried activity: already recorded
            values: dict[str, object] = {
                "state": rec.to_state.value,
                "reason": rec.reason.value if rec.reason else None,
                "detail": rec.detail,
                "updated_at": func.now(),
            }
            if rec.applied_p_kw is not None:
                values["applied_p_kw"] = rec.applied_p_kw
            await conn.execute(
                update(t.dispatches).where(t.dispatches.c.id == rec.dispatch_id).values(**values)
            )

    @activity.defn(name="record_allocation")
    async def record_allocation(self, rec: AllocationRecord) -> None:
        async with self._engine.begin() as conn:
            await conn.execute(
                update(t.dispatches)
                .where(t.dispatches.c.id == rec.dispatch_id)
                .values(policy=rec.policy, allocation=rec.model_dump(mode="json"))
            )

    @activity.defn(name="resolve_route")
    async def resolve_route(self, asset_id: str) -> Route:
        async with self._engine.connect() as conn:
            gateway = (
                await conn.execute(select(t.assets.c.gateway_id).where(t.assets.c.id == asset_id))
            ).scalar()
            if gateway is None:
                return Route(asset_id=asset_id, known=False)
            queue = (
                await conn.execute(
                    select(t.agent_sessions.c.task_queue).where(
                        and_(
                            t.agent_sessions.c.gateway_id == gateway,
                            t.agent_sessions.c.ended_at.is_(None),
                        )
                    )
                )
            ).scalar()
            return Route(asset_id=asset_id, known=True, gateway_id=gateway, task_queue=queue)

    @activity.defn(name="load_split_inputs")
    async def load_split_inputs(self, site_id: str) -> SplitInputs:
        return await load_split_inputs(self._engine, site_id, datetime.now(UTC))


async def load_split_inputs(engine: AsyncEngine, site_id: str, now: datetime) -> SplitInputs:
    """A site's assets with what fresh telemetry says they can do now. The
    preview endpoint and the site workflow both read it through here."""
    a, latest = t.assets, t.telemetry_latest
    async with engine.connect() as conn:
        rows = await conn.execute(
            select(
                a.c.id,
                a.c.asset_type,
                a.c.p_min_kw,
                a.c.p_max_kw,
                latest.c.ts,
                latest.c.available_charge_kw,
                latest.c.available_discharge_kw,
            )
            .select_from(a.outerjoin(latest, latest.c.asset_id == a.c.id))
            .where(a.c.site_id == site_id)
            .order_by(a.c.id)
        )
        assets = []
        for r in rows:
            fresh = r.ts is not None and now - r.ts <= FRESH_TELEMETRY
            assets.append(
                SplitAsset(
                    asset_id=r.id,
                    asset_type=r.asset_type,
                    p_min_kw=r.p_min_kw,
                    p_max_kw=r.p_max_kw,
                    available_charge_kw=r.available_charge_kw if fresh else None,
                    available_discharge_kw=r.available_discharge_kw if fresh else None,
                )
            )
    return SplitInputs(site_id=site_id, assets=assets)
