"""DispatchStore: the writes (and the reads a write decides on) of dispatch rows,
their transitions, allocations, claims and late acks. Every method is one
transaction and idempotent where a retried activity may call it again."""

from __future__ import annotations

import contextlib
from collections.abc import AsyncIterator
from datetime import datetime
from typing import Any, NamedTuple

from sqlalchemy import and_, func, select, update
from sqlalchemy.dialects.postgresql import Insert, insert
from sqlalchemy.ext.asyncio import AsyncConnection, AsyncEngine

from gridpilot.core.dispatch import DispatchKind
from gridpilot.core.lifecycle import TERMINAL_VALUES, DispatchState
from gridpilot.core.supersede import ClaimKey, Verdict, resolve_claim
from gridpilot.schema import tables as t
from gridpilot.schema.tables import DEFAULT_TENANT
from gridpilot.schema.tenancy import visible
from gridpilot.workflows.models import (
    AgentAck,
    AllocationRecord,
    ClaimRequest,
    ClaimResult,
    DispatchInput,
    Route,
    SplitInputs,
    TransitionRecord,
)

from .reads import load_split_inputs
from .transitions import dispatch_tenant, transition_statement


class DispatchTarget(NamedTuple):
    """The asset a dispatch targets (None: a site-level dispatch) and its state."""

    asset_id: str | None
    state: DispatchState


class CancelTarget(NamedTuple):
    state: DispatchState
    source: str
    asset_id: str | None
    site_id: str | None


class Holder(NamedTuple):
    dispatch_id: str
    priority: int


class IdempotentSubmit(NamedTuple):
    dispatch_id: str
    request_hash: str | None


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
        "trace_id": inp.trace_id,
    }


def insert_dispatch(inp: DispatchInput) -> Insert:
    """The dispatch row, written by the REST submit and again by the workflow:
    a second write of the same dispatch does nothing. No conflict target: a
    concurrent writer of the same dispatch can collide on the id or on the
    caller's Idempotency-Key, and PostgreSQL raises on a unique index that is
    not an arbiter even under ON CONFLICT."""
    return (
        insert(t.dispatches)
        .values(
            **dispatch_row(inp, "submitted"), tenant_id=target_tenant(inp.asset_id, inp.site_id)
        )
        .on_conflict_do_nothing()
    )


def target_tenant(asset_id: str | None, site_id: str | None) -> Any:
    """A dispatch belongs to the tenant of its target (its asset's, else its
    site's), whoever writes the row: the API in the caller's scope, or a
    workflow's activity (system work) that may write it first."""
    of_asset = select(t.assets.c.tenant_id).where(t.assets.c.id == asset_id).scalar_subquery()
    of_site = select(t.sites.c.tenant_id).where(t.sites.c.id == site_id).scalar_subquery()
    return func.coalesce(of_asset, of_site, DEFAULT_TENANT)


async def lock_asset(conn: AsyncConnection, asset_id: str) -> None:
    """The per-asset lock (until the transaction ends) that orders claims and
    deliveries: a dispatch superseded at a claim cannot be sent after it."""
    await conn.execute(select(func.pg_advisory_xact_lock(func.hashtext(f"asset:{asset_id}"))))


class DispatchStore:
    def __init__(self, engine: AsyncEngine) -> None:
        self._engine = engine

    # ------------------------------------------------------------ rows
    async def insert(self, inp: DispatchInput) -> None:
        """The dispatch row as submitted (idempotent: see ``insert_dispatch``)."""
        async with self._engine.begin() as conn:
            await conn.execute(insert_dispatch(inp))

    async def record(self, inp: DispatchInput, first: TransitionRecord | None = None) -> None:
        """The workflow's write of its row, with its ``first`` transition when
        given (one transaction); an asset dispatch without a site gets its
        asset's site."""
        async with self._engine.begin() as conn:
            if inp.site_id is None and inp.asset_id is not None:
                site = await conn.execute(
                    select(t.assets.c.site_id).where(t.assets.c.id == inp.asset_id)
                )
                inp = inp.model_copy(update={"site_id": site.scalar()})
            await conn.execute(insert_dispatch(inp))
            if first is not None:
                await conn.execute(transition_statement(first))

    async def record_transitions(self, *recs: TransitionRecord) -> None:
        """Transitions of one dispatch, in order, in one transaction
        (``transition_statement``: each idempotent)."""
        async with self._engine.begin() as conn:
            for rec in recs:
                await conn.execute(transition_statement(rec))

    async def record_allocation(self, rec: AllocationRecord) -> None:
        async with self._engine.begin() as conn:
            await conn.execute(
                update(t.dispatches)
                .where(t.dispatches.c.id == rec.dispatch_id)
                .values(policy=rec.policy, allocation=rec.model_dump(mode="json"))
            )

    async def record_late_ack(self, ack: AgentAck) -> None:
        """Keep what the agent said about a dispatch that had already ended
        (idempotent: the same ack re-sent is kept once)."""
        async with self._engine.begin() as conn:
            await conn.execute(
                insert(t.dispatch_late_acks)
                .values(
                    dispatch_id=ack.dispatch_id,
                    state=ack.state.value,
                    at=ack.at,
                    reason=ack.reason.value if ack.reason else None,
                    detail=ack.detail,
                    gateway_id=ack.gateway_id,
                    tenant_id=dispatch_tenant(ack.dispatch_id),
                )
                .on_conflict_do_nothing()
            )

    async def next_submit_seq(self) -> int:
        """The submission order (core.supersede), fixed before the 201: of two
        submits, the one answered first has the lower number. (A sequence is
        never rolled back, so a failed submit leaves a gap, which is harmless.)"""
        async with self._engine.begin() as conn:
            seq = (await conn.execute(select(func.nextval("dispatch_submit_seq")))).scalar()
        assert seq is not None
        return int(seq)

    # ------------------------------------------------------------ lookups
    async def dispatch_target(self, dispatch_id: str) -> DispatchTarget | None:
        """The asset a dispatch targets and its recorded state; None for an
        unknown dispatch."""
        d = t.dispatches
        async with self._engine.connect() as conn:
            res = await conn.execute(select(d.c.asset_id, d.c.state).where(d.c.id == dispatch_id))
            row = res.first()
        return None if row is None else DispatchTarget(row.asset_id, DispatchState(row.state))

    async def tenant_of_target(self, asset_id: str | None, site_id: str | None) -> str:
        async with self._engine.connect() as conn:
            found: str = (await conn.execute(select(target_tenant(asset_id, site_id)))).scalar_one()
        return found

    async def cancel_target(self, dispatch_id: str) -> CancelTarget | None:
        d = t.dispatches
        async with self._engine.connect() as conn:
            row = (
                await conn.execute(
                    select(d.c.state, d.c.source, d.c.asset_id, d.c.site_id).where(
                        d.c.id == dispatch_id, visible(d)
                    )
                )
            ).first()
        if row is None:
            return None
        return CancelTarget(DispatchState(row.state), row.source, row.asset_id, row.site_id)

    async def by_idempotency_key(self, principal: str, key: str) -> IdempotentSubmit | None:
        d = t.dispatches
        async with self._engine.connect() as conn:
            row = (
                await conn.execute(
                    select(d.c.id, d.c.request_hash).where(
                        d.c.submitted_by == principal, d.c.idempotency_key == key, visible(d)
                    )
                )
            ).first()
        return None if row is None else IdempotentSubmit(row[0], row[1])

    async def higher_priority_holder(
        self, asset_id: str, priority: int, start: datetime, end: datetime
    ) -> Holder | None:
        """A live cloud dispatch of the asset whose window overlaps and whose
        priority is higher (superseded or not: it is live until it ends)."""
        d = t.dispatches
        async with self._engine.connect() as conn:
            holder = (
                await conn.execute(
                    select(d.c.id, d.c.priority)
                    .where(
                        d.c.kind == DispatchKind.ASSET.value,
                        d.c.asset_id == asset_id,
                        d.c.state.not_in(TERMINAL_VALUES),
                        d.c.source == "cloud",  # local ones: the agent arbitrates
                        d.c.priority > priority,
                        d.c.start_at < end,
                        d.c.end_at > start,
                    )
                    .order_by(d.c.priority.desc())
                    .limit(1)
                )
            ).first()
        return None if holder is None else Holder(holder.id, holder.priority)

    async def resolve_route(self, asset_id: str) -> Route:
        """Which gateway owns the asset, and which replica's queue holds its
        live session (None: offline)."""
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

    # ------------------------------------------------------------ claims
    async def claim(self, req: ClaimRequest) -> ClaimResult:
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
                        d.c.kind == DispatchKind.ASSET.value,
                        d.c.asset_id == req.asset_id,
                        d.c.id != req.dispatch_id,
                        d.c.state.not_in(TERMINAL_VALUES),
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

    @contextlib.asynccontextmanager
    async def held_for_delivery(
        self, asset_id: str, dispatch_id: str, sent: TransitionRecord | None = None
    ) -> AsyncIterator[str | None]:
        """The asset's claim lock (``lock_asset``), held while the body sends the
        setpoint, and the dispatch that superseded this one, or None: a dispatch
        superseded by a claim that came first is never sent, and a claim that
        comes after the send finds it sent (handed over at the agent). The
        ``sent`` transition, if given, is written in the same transaction once
        the body has sent (not when it raises)."""
        d = t.dispatches
        async with self._engine.begin() as conn:
            await lock_asset(conn, asset_id)
            by = select(d.c.superseded_by).where(d.c.id == dispatch_id)
            yield (await conn.execute(by)).scalar()
            if sent is not None:
                await conn.execute(transition_statement(sent))

    async def split_inputs(self, site_id: str, now: datetime) -> SplitInputs:
        """A site's assets and their fresh availability (``reads.load_split_inputs``)."""
        return await load_split_inputs(self._engine, site_id, now)

    @contextlib.asynccontextmanager
    async def idempotency_lock(self, scope: str) -> AsyncIterator[None]:
        """Serialize the submits of one caller's Idempotency-Key across replicas
        (an advisory lock held in a transaction while the body runs)."""
        async with self._engine.begin() as conn:
            key = func.hashtextextended("idempotency\n" + scope, 0)
            await conn.execute(select(func.pg_advisory_xact_lock(key)))
            yield
