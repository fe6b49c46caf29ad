"""The dispatch service behind /api/v1/dispatches and the CLI: validate,
audit, start the workflow, record the row. Its SQL is the store's
(``gridpilot.store``), its Temporal calls are ``dispatch_workflows.py``'s."""

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

from sqlalchemy.ext.asyncio import AsyncEngine
from temporalio.client import Client

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
from gridpilot.ops import spans
from gridpilot.schema.tables import DEFAULT_TENANT
from gridpilot.schema.tenancy import owner_tenant
from gridpilot.security.audit import Action, Actor, AuditLog
from gridpilot.store import reads
from gridpilot.store.dispatches import DispatchStore
from gridpilot.workflows.models import CancelRequest, DispatchInput
from gridpilot.workflows.site_rules import site_assets

from .dispatch_workflows import signal_cancel, start_dispatch
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
        self._store = DispatchStore(engine)
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
        async with lock, self._store.idempotency_lock(_key_scope(principal, idempotency_key)):
            return await self._submit(body, idempotency_key, principal, actor)

    async def _submit(
        self,
        body: DispatchCreate,
        idempotency_key: str | None,
        principal: str,
        actor: Actor | None,
    ) -> tuple[str, bool]:
        check_body(body, self._opts.bounds)
        request_hash = _hash(body)
        if idempotency_key:
            earlier = await self._earlier_submit(principal, idempotency_key, request_hash)
            if earlier is not None:
                return earlier, False
        inp = await self._plan(body, idempotency_key, principal, request_hash)
        spans.annotate({"gridpilot.dispatch_id": inp.dispatch_id})
        await self._start_audited(actor or Actor(principal), inp)
        # Written here and again, idempotently, by the workflow.
        await self._store.insert(inp)
        return inp.dispatch_id, True

    async def _earlier_submit(self, principal: str, key: str, request_hash: str) -> str | None:
        """The dispatch this caller's key already made (the same body), if any."""
        existing = await self._store.by_idempotency_key(principal, key)
        if existing is None:
            return None
        if existing.request_hash != request_hash:
            raise Conflict(
                "Idempotency-Key was used for a different request", field="Idempotency-Key"
            )
        return existing.dispatch_id

    async def _plan(
        self,
        body: DispatchCreate,
        idempotency_key: str | None,
        principal: str,
        request_hash: str,
    ) -> DispatchInput:
        """Check the body against the target (limits, priority, site capacity)
        and build the workflow's input."""
        target, warnings = resolve_target(body.asset_id, body.site_id)
        now = datetime.now(UTC)
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
        return DispatchInput(
            dispatch_id=new_dispatch_id(principal, idempotency_key),
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
            submit_seq=await self._store.next_submit_seq(),
            trace_id=spans.current_trace_id(),
        )

    async def _start_audited(self, actor: Actor, inp: DispatchInput) -> None:
        """Audit the attempt first (fail closed: no record, no dispatch), then
        Temporal, then the outcome: ``failed`` if Temporal is down (503, retry),
        ``ok`` once the workflow runs."""
        detail = {
            "p_kw": inp.p_kw,
            "duration_s": inp.duration_s,
            "asset_id": inp.asset_id,
            "site_id": inp.site_id,
        }
        async with self._audited(actor, "dispatch.submit", inp.dispatch_id, detail):
            await self._start(inp)

    async def record_local(self, inp: DispatchInput, actor: Actor) -> None:
        """A local dispatch the agent reports (already applied on site): audit,
        row, then its workflow, which records what the agent's acks say.
        Idempotent: the agent re-sends a report until it is confirmed. The row
        comes first so the acks that follow the report find their dispatch."""
        detail = {"p_kw": inp.p_kw, "asset_id": inp.asset_id, "by": inp.submitted_by}
        async with self._audited(actor, "dispatch.local", inp.dispatch_id, detail):
            await self._store.insert(inp)
            await self._start(inp)

    async def _start(self, inp: DispatchInput) -> None:
        tenant = await self._store.tenant_of_target(inp.asset_id, inp.site_id)
        await start_dispatch(self._require_client(), self._opts.task_queue, inp, tenant)

    # ------------------------------------------------------------ preview
    async def preview(self, body: DispatchCreate) -> SplitPreview:
        check_body(body, self._opts.bounds)
        target, warnings = resolve_target(body.asset_id, body.site_id)
        if target.kind is DispatchKind.ASSET:
            asset = await self._asset(target.id)
            check_limits(body.p_kw, asset)
            return single_asset_preview(asset, body.p_kw, warnings)
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
        row = await self._store.cancel_target(dispatch_id)
        if row is None:
            raise NotFound(f"dispatch {dispatch_id} does not exist", field="dispatch_id")
        state = row.state
        if row.source == "local" and not state.terminal:
            raise Conflict(
                f"dispatch {dispatch_id} was written on site by a local operator; end it "
                "there (OPC UA Control/Release), or send a cloud dispatch for the asset "
                "(the site's arbitration policy decides)",
                field="dispatch_id",
            )
        audit_detail.update(state=state.value, asset_id=row.asset_id, site_id=row.site_id)
        if state.terminal:
            return  # idempotent: nothing left to cancel
        request = CancelRequest(actor=principal, detail=detail or "cancelled")
        await signal_cancel(self._require_client(), dispatch_id, request)

    # ------------------------------------------------------------ helpers
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
        overlapping dispatch of higher priority holds the asset."""
        holder = await self._store.higher_priority_holder(asset_id, priority, start, end)
        if holder is not None:
            raise Conflict(
                f"asset {asset_id} is held by dispatch {holder.dispatch_id} with priority "
                f"{holder.priority}; use priority >= {holder.priority} to supersede it",
                field="priority",
            )

    def _require_client(self) -> Client:
        if self._client is None:
            raise Unavailable("temporal", "Temporal is not connected yet; retry shortly")
        return self._client

    async def _asset(self, asset_id: str) -> Asset:
        row = await reads.asset_row(self._engine, asset_id)
        if row is None:
            raise ValidationFailed(f"asset {asset_id} does not exist", field="asset_id")
        if row["held_reason"] is not None:
            raise Conflict(
                f"asset {asset_id} is held until an admin approves it ({row['held_reason']})",
                field="asset_id",
            )
        return Asset(
            asset_id=row["id"],
            site_id=row["site_id"],
            asset_type=AssetType(row["asset_type"]),
            limits=PowerLimits(row["p_min_kw"], row["p_max_kw"]),
            name=row["name"],
            capacity_kwh=row["capacity_kwh"],
            default_p_kw=row["default_p_kw"],
        )

    async def _site_assets(self, site_id: str) -> tuple[list[Asset], dict[str, Available]]:
        loaded = await self._store.split_inputs(site_id, datetime.now(UTC))
        if not loaded.assets:
            raise ValidationFailed(
                f"site {site_id} has no assets or does not exist", field="site_id"
            )
        return site_assets(loaded, site_id)


def check_body(body: DispatchCreate, bounds: DurationBounds) -> None:
    """What needs no database: a target, finite power, duration bounds."""
    resolve_target(body.asset_id, body.site_id)
    check_power(body.p_kw)
    check_duration(body.duration_s, bounds)


def new_dispatch_id(principal: str, idempotency_key: str | None) -> str:
    """Deterministic for a caller's Idempotency-Key (a retried submit lands on
    the same workflow), random otherwise."""
    if idempotency_key:
        return f"dsp-{uuid.uuid5(ID_NAMESPACE, _key_scope(principal, idempotency_key))}"
    return f"dsp-{uuid.uuid4()}"


def single_asset_preview(asset: Asset, p_kw: float, warnings: list[str]) -> SplitPreview:
    bound = asset.capacity_kw(1 if p_kw >= 0 else -1)
    return SplitPreview(
        site_id=asset.site_id,
        asset_id=asset.asset_id,
        policy="single_asset",
        target_kw=p_kw,
        allocated_kw=p_kw,
        unallocated_kw=0.0,
        allocations=[
            SplitLine(
                asset_id=asset.asset_id, p_kw=p_kw, weight_kw=bound, bound_kw=bound, clamped=False
            )
        ],
        warnings=warnings,
    )


def _key_scope(principal: str, idempotency_key: str) -> str:
    """An Idempotency-Key means something only together with its caller (and
    its tenant: principal names repeat across tenants; the default tenant's
    scope is as it always was)."""
    tenant = owner_tenant(DEFAULT_TENANT)
    caller = principal if tenant == DEFAULT_TENANT else f"{tenant}/{principal}"
    return f"{caller}\n{idempotency_key}"


def _hash(body: DispatchCreate) -> str:
    raw = json.dumps(body.model_dump(mode="json"), sort_keys=True)
    return hashlib.sha256(raw.encode()).hexdigest()
