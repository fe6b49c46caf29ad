"""The dispatch service behind /api/v1/dispatches and the CLI."""

from __future__ import annotations

import asyncio
import contextlib
import hashlib
import json
import uuid
import weakref
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import Any

from sqlalchemy import func, select
from sqlalchemy.ext.asyncio import AsyncEngine
from temporalio.client import Client, WorkflowHandle
from temporalio.common import (
    SearchAttributePair,
    TypedSearchAttributes,
    WorkflowIDConflictPolicy,
    WorkflowIDReusePolicy,
)
from temporalio.exceptions import WorkflowAlreadyStartedError
from temporalio.service import RPCError

from gridpilot.activities.records import TERMINAL_STATES, insert_dispatch, load_split_inputs
from gridpilot.core.assets import Asset, AssetType, PowerLimits
from gridpilot.core.dispatch import (
    DispatchKind,
    DurationBounds,
    check_duration,
    check_limits,
    check_power,
    check_window,
    resolve_target,
)
from gridpilot.core.errors import Conflict, NotFound, OutOfLimits, ValidationFailed
from gridpilot.core.split import Available, check_capacity, split
from gridpilot.schema import tables as t
from gridpilot.security.audit import Action, Actor, AuditLog
from gridpilot.workflows.constants import (
    SA_ASSET_ID,
    SA_DISPATCH_KIND,
    SA_DISPATCH_STATE,
    SA_SITE_ID,
    SIGNAL_CANCEL,
)
from gridpilot.workflows.models import CancelRequest, DispatchInput

from .errors import Unavailable
from .schemas import DispatchCreate, SplitLine, SplitPreview

ID_NAMESPACE = uuid.UUID("6f1d3c2e-2f55-4a57-9a53-0b1c1e6f2d10")


@dataclass(frozen=True)
class DispatchOptions:
    task_queue: str
    bounds: DurationBounds = DurationBounds()
    delivery_timeout: timedelta = timedelta(seconds=60)
    ack_timeout_s: float = 30.0


class DispatchService:
    def __init__(
        self,
        engine: AsyncEngine,
        client: Client | None,
        opts: DispatchOptions,
        audit: AuditLog | None = None,
    ) -> None:
        self._engine = engine
        self._client = client
        self._opts = opts
        self._audit = audit
        # One waiter per (principal, key) in this process holds a connection
        # for the advisory lock; the others wait here, not in the pool.
        self._key_locks: weakref.WeakValueDictionary[tuple[str, str], asyncio.Lock] = (
            weakref.WeakValueDictionary()
        )

    # ------------------------------------------------------------ submit
    async def submit(
        self,
        body: DispatchCreate,
        idempotency_key: str | None,
        principal: str,
        actor: Actor | None = None,
    ) -> tuple[str, bool]:
        """Returns (dispatch_id, created). An Idempotency-Key belongs to its
        caller: the same caller's repeat returns the first dispatch (the same
        key with another body is a conflict); another caller's same key is
        another dispatch. Submits with one key run one at a time (an advisory
        lock held in a transaction across replicas), so concurrent ones create
        one dispatch, write one audit row, and the others return it."""
        if not idempotency_key:
            return await self._submit(body, None, principal, actor)
        lock = self._key_locks.setdefault((principal, idempotency_key), asyncio.Lock())
        async with lock, self._engine.begin() as conn:
            scope = "idempotency\n" + _key_scope(principal, idempotency_key)
            await conn.execute(select(func.pg_advisory_xact_lock(func.hashtextextended(scope, 0))))
            return await self._submit(body, idempotency_key, principal, actor)

    async def _submit(
        self,
        body: DispatchCreate,
        idempotency_key: str | None,
        principal: str,
        actor: Actor | None,
    ) -> tuple[str, bool]:
        target, warnings = resolve_target(body.asset_id, body.site_id)
        check_power(body.p_kw)
        check_duration(body.duration_s, self._opts.bounds)
        now = datetime.now(UTC)
        request_hash = _hash(body)
        if idempotency_key:
            existing = await self._by_idempotency_key(principal, idempotency_key)
            if existing is not None:
                if existing[1] != request_hash:
                    raise Conflict(
                        "Idempotency-Key was used for a different request",
                        field="Idempotency-Key",
                    )
                return existing[0], False
        start, end = check_window(now, body.start_at, body.duration_s, body.deliver_by)
        deliver_by = body.deliver_by or min(start + self._opts.delivery_timeout, end)
        site_id = body.site_id
        if target.kind is DispatchKind.ASSET:
            asset = await self._asset(target.id)
            check_limits(body.p_kw, asset)
            site_id = asset.site_id
            await self._check_priority(asset.asset_id, body.priority, start, end)
        else:
            assets, available = await self._site_assets(target.id)
            partial = check_capacity(
                split(body.p_kw, assets, available), target.id, body.accept_partial
            )
            if partial is not None:
                warnings = [*warnings, partial]
        dispatch_id = (
            f"dsp-{uuid.uuid5(ID_NAMESPACE, _key_scope(principal, idempotency_key))}"
            if idempotency_key
            else f"dsp-{uuid.uuid4()}"
        )
        inp = DispatchInput(
            dispatch_id=dispatch_id,
            kind=target.kind.value,
            p_kw=body.p_kw,
            q_kvar=body.q_kvar,
            duration_s=body.duration_s,
            start_at=start,
            end_at=end,
            deliver_by=deliver_by,
            asset_id=target.id if target.kind is DispatchKind.ASSET else None,
            site_id=site_id,
            ramp_kw_per_s=body.ramp_kw_per_s,
            submitted_by=principal,
            warnings=warnings,
            ack_timeout_s=self._opts.ack_timeout_s,
            idempotency_key=idempotency_key,
            request_hash=request_hash,
            priority=body.priority,
            submit_seq=await self._next_submit_seq(),
        )
        # Audit the attempt first (fail closed: no record, no dispatch), then
        # Temporal, then the outcome: `failed` if Temporal is down (503, retry),
        # `ok` once the workflow runs. The row is written here and again,
        # idempotently, by the workflow.
        audit_detail = {
            "p_kw": body.p_kw,
            "duration_s": body.duration_s,
            "asset_id": inp.asset_id,
            "site_id": site_id,
        }
        async with self._action(actor or Actor(principal), "dispatch.submit", inp, audit_detail):
            await self._start(inp)
        async with self._engine.begin() as conn:
            await conn.execute(insert_dispatch(inp))
        return dispatch_id, True

    async def record_local(self, inp: DispatchInput, actor: Actor) -> None:
        """A local dispatch the agent reports (already applied on site): audit,
        row, then its workflow, which records what the agent's acks say.
        Idempotent: the agent re-sends a report until it is confirmed. The row
        comes first so the acks that follow the report find their dispatch."""
        detail = {"p_kw": inp.p_kw, "asset_id": inp.asset_id, "by": inp.submitted_by}
        async with self._action(actor, "dispatch.local", inp, detail):
            async with self._engine.begin() as conn:
                await conn.execute(insert_dispatch(inp))
            await self._start(inp)

    async def _start(self, inp: DispatchInput) -> None:
        client = self._require_client()
        workflow = "SiteDispatchWorkflow" if inp.kind == DispatchKind.SITE else "DispatchWorkflow"
        pairs = [
            SearchAttributePair(SA_DISPATCH_STATE, "submitted"),
            SearchAttributePair(SA_DISPATCH_KIND, inp.kind),
        ]
        if inp.asset_id:
            pairs.append(SearchAttributePair(SA_ASSET_ID, inp.asset_id))
        if inp.site_id:
            pairs.append(SearchAttributePair(SA_SITE_ID, inp.site_id))
        try:
            await client.start_workflow(
                workflow,
                inp,
                id=inp.dispatch_id,
                task_queue=self._opts.task_queue,
                id_conflict_policy=WorkflowIDConflictPolicy.USE_EXISTING,
                id_reuse_policy=WorkflowIDReusePolicy.REJECT_DUPLICATE,
                search_attributes=TypedSearchAttributes(pairs),
                memo={"submitted_by": inp.submitted_by, "source": inp.source},
                execution_timeout=(inp.end_at - inp.start_at)
                + timedelta(hours=1)
                + max(inp.start_at - datetime.now(UTC), timedelta(0)),
                static_summary=_summary(inp),
            )
        except WorkflowAlreadyStartedError:
            return  # same id (idempotency key) already ran: that dispatch stands
        except RPCError as exc:
            raise Unavailable("temporal", f"Temporal is not reachable: {exc.message}") from exc

    # ------------------------------------------------------------ preview
    async def preview(self, body: DispatchCreate) -> SplitPreview:
        target, warnings = resolve_target(body.asset_id, body.site_id)
        check_power(body.p_kw)
        check_duration(body.duration_s, self._opts.bounds)
        if target.kind is DispatchKind.ASSET:
            asset = await self._asset(target.id)
            check_limits(body.p_kw, asset)
            return SplitPreview(
                site_id=asset.site_id,
                asset_id=asset.asset_id,
                policy="single_asset",
                target_kw=body.p_kw,
                allocated_kw=body.p_kw,
                unallocated_kw=0.0,
                allocations=[
                    SplitLine(
                        asset_id=asset.asset_id,
                        p_kw=body.p_kw,
                        weight_kw=asset.capacity_kw(1 if body.p_kw >= 0 else -1),
                        bound_kw=asset.capacity_kw(1 if body.p_kw >= 0 else -1),
                        clamped=False,
                    )
                ],
                warnings=warnings,
            )
        assets, available = await self._site_assets(target.id)
        result = split(body.p_kw, assets, available)
        refused = None
        try:
            partial = check_capacity(result, target.id, body.accept_partial)
        except OutOfLimits as exc:
            refused, partial = exc.message, None
        return SplitPreview(
            site_id=target.id,
            asset_id=None,
            policy=result.policy,
            target_kw=result.target_kw,
            allocated_kw=result.allocated_kw,
            unallocated_kw=result.unallocated_kw,
            allocations=[
                SplitLine(
                    asset_id=a.asset_id,
                    p_kw=a.p_kw,
                    weight_kw=a.weight_kw,
                    bound_kw=a.bound_kw,
                    clamped=a.clamped,
                )
                for a in result.allocations
            ],
            warnings=warnings if partial is None else [*warnings, partial],
            refused=refused,
        )

    # ------------------------------------------------------------ cancel
    async def cancel(
        self, dispatch_id: str, principal: str, detail: str, actor: Actor | None = None
    ) -> None:
        """Audited as ``attempt``, then ``ok``, ``refused`` (unknown or local
        dispatch) or ``failed`` (Temporal down: 503)."""
        who = actor or Actor(principal)
        async with self._audited(who, "dispatch.cancel", dispatch_id, {"detail": detail}) as act:
            await self._cancel(dispatch_id, principal, detail, act.detail)

    async def _cancel(
        self, dispatch_id: str, principal: str, detail: str, audit_detail: dict[str, Any]
    ) -> None:
        async with self._engine.connect() as conn:
            row = (
                await conn.execute(
                    select(
                        t.dispatches.c.state,
                        t.dispatches.c.source,
                        t.dispatches.c.asset_id,
                        t.dispatches.c.site_id,
                    ).where(t.dispatches.c.id == dispatch_id)
                )
            ).first()
        if row is None:
            raise NotFound(f"dispatch {dispatch_id} does not exist", field="dispatch_id")
        state = row.state
        if row.source == "local" and state not in TERMINAL_STATES:
            raise Conflict(
                f"dispatch {dispatch_id} was written on site by a local operator; end it "
                "there (OPC UA Control/Release), or send a cloud dispatch for the asset "
                "(the site's arbitration policy decides)",
                field="dispatch_id",
            )
        audit_detail.update(state=state, asset_id=row.asset_id, site_id=row.site_id)
        if state in ("complete", "expired", "failed", "cancelled"):
            return  # idempotent: nothing left to cancel
        handle: WorkflowHandle[Any, Any] = self._require_client().get_workflow_handle(dispatch_id)
        try:
            await handle.signal(
                SIGNAL_CANCEL, CancelRequest(actor=principal, detail=detail or "cancelled")
            )
        except RPCError as exc:
            if "completed" in exc.message or "not found" in exc.message:
                return
            raise Unavailable("temporal", f"Temporal is not reachable: {exc.message}") from exc

    # ------------------------------------------------------------ helpers
    def _action(
        self, actor: Actor, action: str, inp: DispatchInput, detail: dict[str, Any]
    ) -> contextlib.AbstractAsyncContextManager[Action]:
        return self._audited(actor, action, inp.dispatch_id, detail)

    def _audited(
        self, actor: Actor, action: str, target: str, detail: dict[str, Any]
    ) -> contextlib.AbstractAsyncContextManager[Action]:
        if self._audit is None:
            return contextlib.nullcontext(Action(detail, target))
        return self._audit.action(actor, action, target, detail)

    async def _check_priority(
        self, asset_id: str, priority: int, start: datetime, end: datetime
    ) -> None:
        """Refuse early (409) what the workflow's claim would refuse: a live,
        overlapping dispatch of higher priority holds the asset (superseded or
        not: it is live until it ends)."""
        d = t.dispatches
        async with self._engine.connect() as conn:
            holder = (
                await conn.execute(
                    select(d.c.id, d.c.priority)
                    .where(
                        d.c.kind == DispatchKind.ASSET.value,
                        d.c.asset_id == asset_id,
                        d.c.state.not_in(TERMINAL_STATES),
                        d.c.source == "cloud",  # local ones: the agent arbitrates
                        d.c.priority > priority,
                        d.c.start_at < end,
                        d.c.end_at > start,
                    )
                    .order_by(d.c.priority.desc())
                    .limit(1)
                )
            ).first()
        if holder is not None:
            raise Conflict(
                f"asset {asset_id} is held by dispatch {holder.id} with priority "
                f"{holder.priority}; use priority >= {holder.priority} to supersede it",
                field="priority",
            )

    async def _next_submit_seq(self) -> int:
        """The submission order (core.supersede), fixed before the 201: of two
        submits, the one answered first has the lower number. (A sequence is
        never rolled back, so a failed submit leaves a gap, which is harmless.)"""
        async with self._engine.begin() as conn:
            seq = (await conn.execute(select(func.nextval("dispatch_submit_seq")))).scalar()
        assert seq is not None
        return int(seq)

    def _require_client(self) -> Client:
        if self._client is None:
            raise Unavailable("temporal", "Temporal is not connected yet; retry shortly")
        return self._client

    async def _by_idempotency_key(self, principal: str, key: str) -> tuple[str, str | None] | None:
        d = t.dispatches
        async with self._engine.connect() as conn:
            row = (
                await conn.execute(
                    select(d.c.id, d.c.request_hash).where(
                        d.c.submitted_by == principal, d.c.idempotency_key == key
                    )
                )
            ).first()
        return None if row is None else (row[0], row[1])

    async def _asset(self, asset_id: str) -> Asset:
        async with self._engine.connect() as conn:
            row = (await conn.execute(select(t.assets).where(t.assets.c.id == asset_id))).first()
        if row is None:
            raise ValidationFailed(f"asset {asset_id} does not exist", field="asset_id")
        if row.held_reason is not None:
            raise Conflict(
                f"asset {asset_id} is held until an admin approves it ({row.held_reason})",
                field="asset_id",
            )
        return Asset(
            asset_id=row.id,
            site_id=row.site_id,
            asset_type=AssetType(row.asset_type),
            limits=PowerLimits(row.p_min_kw, row.p_max_kw),
            name=row.name,
            capacity_kwh=row.capacity_kwh,
            default_p_kw=row.default_p_kw,
        )

    async def _site_assets(self, site_id: str) -> tuple[list[Asset], dict[str, Available]]:
        loaded = await load_split_inputs(self._engine, site_id, datetime.now(UTC))
        if not loaded.assets:
            raise ValidationFailed(
                f"site {site_id} has no assets or does not exist", field="site_id"
            )
        assets = [
            Asset(
                asset_id=a.asset_id,
                site_id=site_id,
                asset_type=AssetType(a.asset_type),
                limits=PowerLimits(a.p_min_kw, a.p_max_kw),
            )
            for a in loaded.assets
        ]
        available = {
            a.asset_id: Available(a.available_charge_kw, a.available_discharge_kw)
            for a in loaded.assets
        }
        return assets, available


def _key_scope(principal: str, idempotency_key: str) -> str:
    """An Idempotency-Key means something only together with its caller."""
    return f"{principal}\n{idempotency_key}"


def _hash(body: DispatchCreate) -> str:
    raw = json.dumps(body.model_dump(mode="json"), sort_keys=True)
    return hashlib.sha256(raw.encode()).hexdigest()


def _summary(inp: DispatchInput) -> str:
    target = inp.asset_id or inp.site_id
    where = "written on site " if inp.source == "local" else ""
    return f"{inp.p_kw:g} kW for {inp.duration_s} s on {target} ({where}by {inp.submitted_by})"
