"""Database activities of the dispatch workflows; each is idempotent."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

from sqlalchemy import and_, func, select, update
from sqlalchemy.dialects.postgresql import Insert, insert
from sqlalchemy.ext.asyncio import AsyncConnection, AsyncEngine
from temporalio import activity

from gridpilot.core.supersede import ClaimKey, Verdict, resolve_claim
from gridpilot.schema import tables as t
from gridpilot.workflows.models import (
    AllocationRecord,
    ClaimRequest,
    ClaimResult,
    DispatchInput,
    Route,
    SplitAsset,
    SplitInputs,
    TransitionRecord,
)

TERMINAL_STATES = ("complete", "expired", "failed", "cancelled")
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
        "priority": inp.priority,
        "source": inp.source,
        "submit_seq": inp.submit_seq or None,
    }


def insert_dispatch(inp: DispatchInput) -> Insert:
    """The dispatch row, written by the REST submit and again by the workflow:
    a second write of the same dispatch does nothing. No conflict target: a
    concurrent writer of the same dispatch can collide on the id or on the
    caller's Idempotency-Key, and PostgreSQL raises on a unique index that is
    not an arbiter even under ON CONFLICT."""
    return insert(t.dispatches).values(**dispatch_row(inp, "submitted")).on_conflict_do_nothing()


async def lock_asset(conn: AsyncConnection, asset_id: str) -> None:
    """The per-asset lock (until the transaction ends) that orders claims and
    deliveries: a dispatch superseded at a claim cannot be sent after it."""
    await conn.execute(select(func.pg_advisory_xact_lock(func.hashtext(f"asset:{asset_id}"))))


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
            await conn.execute(insert_dispatch(inp))

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
            asset = (
                await conn.execute(
                    select(t.assets.c.gateway_id, t.assets.c.p_min_kw, t.assets.c.p_max_kw).where(
                        t.assets.c.id == asset_id
                    )
                )
            ).first()
            if asset is None:
                return Route(asset_id=asset_id, known=False)
            gateway = asset.gateway_id
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
            return Route(
                asset_id=asset_id,
                known=True,
                gateway_id=gateway,
                task_queue=queue,
                p_min_kw=asset.p_min_kw,
                p_max_kw=asset.p_max_kw,
            )

    @activity.defn(name="claim_asset")
    async def claim_asset(self, req: ClaimRequest) -> ClaimResult:
        """At most one live dispatch per asset, in the supersede order of
        ``core.supersede`` (priority, then submission), whichever claims first.
        Serialized per asset by an advisory lock (``lock_asset``; delivery takes it
        too); idempotent on retry (it only marks superseded_by).

        A dispatch already superseded is still live, and counted, until it ends:
        a sent one runs at the agent until the new one takes over there."""
        d = t.dispatches
        async with self._engine.begin() as conn:
            await lock_asset(conn, req.asset_id)
            mine = (
                await conn.execute(select(d.c.superseded_by).where(d.c.id == req.dispatch_id))
            ).first()
            claimant = ClaimKey(
                req.dispatch_id,
                req.priority,
                req.submit_seq,
                superseded=mine is not None and mine.superseded_by is not None,
            )
            live = (
                await conn.execute(
                    select(d.c.id, d.c.priority, d.c.submit_seq)
                    .where(
                        d.c.kind == "asset",
                        d.c.asset_id == req.asset_id,
                        d.c.id != req.dispatch_id,
                        d.c.state.not_in(TERMINAL_STATES),
                        # local dispatches are arbitrated at the agent, by the site's policy
                        d.c.source == "cloud",
                        # Only dispatches whose windows overlap compete.
                        d.c.start_at < req.end_at,
                        d.c.end_at > req.start_at,
                    )
                    .order_by(d.c.priority.desc(), d.c.created_at)
                )
            ).all()
            holders = [ClaimKey(r.id, r.priority, r.submit_seq or 0) for r in live]
            decision = resolve_claim(claimant, holders)
            winner = decision.winner
            if decision.verdict is Verdict.REFUSED:
                assert winner is not None
                return ClaimResult(refused_by=winner.dispatch_id, refused_priority=winner.priority)
            if decision.verdict is Verdict.SUPERSEDED:
                if winner is None:  # superseded before its claim: by the one it names
                    assert mine is not None
                    return ClaimResult(superseded_by=mine.superseded_by)
                await conn.execute(
                    update(d)
                    .where(d.c.id == req.dispatch_id)
                    .values(superseded_by=winner.dispatch_id)
                )
                return ClaimResult(superseded_by=winner.dispatch_id)
            ids = list(decision.superseded)
            if ids:
                await conn.execute(
                    update(d).where(d.c.id.in_(ids)).values(superseded_by=req.dispatch_id)
                )
            return ClaimResult(superseded=ids)

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
            # held assets (waiting for an admin's approval) are never split over
            .where(a.c.site_id == site_id, a.c.held_reason.is_(None))
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
