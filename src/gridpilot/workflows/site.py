"""SiteDispatchWorkflow: a site target split over its assets, one child each.

The split is ``core.split`` (the same code the preview endpoint runs). Each
child is a DispatchWorkflow; children report their transitions back with a
signal and the parent's own state follows them: sent once all children are
started, acked when every live child is acked, active when any is active, and
at the end complete when any child completed, otherwise failed or cancelled.
"""

from __future__ import annotations

import asyncio

from temporalio import workflow
from temporalio.common import SearchAttributePair, TypedSearchAttributes
from temporalio.exceptions import ApplicationError
from temporalio.workflow import ParentClosePolicy

with workflow.unsafe.imports_passed_through():
    from gridpilot.core.assets import Asset, AssetType, PowerLimits
    from gridpilot.core.dispatch import DispatchKind
    from gridpilot.core.lifecycle import DispatchState, ReasonCode, path_to
    from gridpilot.core.split import Available, split

    from .constants import (
        SA_ASSET_ID,
        SA_DISPATCH_KIND,
        SA_DISPATCH_STATE,
        SA_SITE_ID,
        SIGNAL_CHILD_STATE,
    )
    from .dispatch import DB_ACTIVITY, DispatchWorkflow
    from .models import (
        AllocationLine,
        AllocationRecord,
        CancelRequest,
        ChildState,
        DispatchInput,
        DispatchResult,
        SplitInputs,
    )

S = DispatchState


def child_dispatch_id(parent_id: str, asset_id: str) -> str:
    return f"{parent_id}.{asset_id}"


@workflow.defn
class SiteDispatchWorkflow(DispatchWorkflow):
    @workflow.init
    def __init__(self, inp: DispatchInput) -> None:
        super().__init__(inp)
        self.children: dict[str, DispatchState] = {}
        self.child_results: dict[str, DispatchResult] = {}
        self.allocation: AllocationRecord | None = None

    @workflow.signal(name=SIGNAL_CHILD_STATE)
    def child_state(self, msg: ChildState) -> None:
        self.children[msg.asset_id] = msg.state

    @workflow.run
    async def run(self, inp: DispatchInput) -> DispatchResult:
        assert inp.site_id is not None
        await workflow.execute_activity("record_dispatch", inp, **DB_ACTIVITY)  # type: ignore[call-overload]
        await self._to(S.SUBMITTED, actor=inp.submitted_by)
        loaded: SplitInputs = await workflow.execute_activity(
            "load_split_inputs", inp.site_id, result_type=SplitInputs, **DB_ACTIVITY
        )  # type: ignore[call-overload]
        if not loaded.assets:
            return await self._end(S.FAILED, ReasonCode.UNKNOWN_ASSET, "the site has no assets")
        assets = [
            Asset(
                asset_id=a.asset_id,
                site_id=inp.site_id,
                asset_type=AssetType(a.asset_type),
                limits=PowerLimits(a.p_min_kw, a.p_max_kw),
            )
            for a in loaded.assets
        ]
        available = {
            a.asset_id: Available(a.available_charge_kw, a.available_discharge_kw)
            for a in loaded.assets
        }
        result = split(inp.p_kw, assets, available)
        self.allocation = AllocationRecord(
            dispatch_id=inp.dispatch_id,
            policy=result.policy,
            version=1,
            target_kw=result.target_kw,
            allocated_kw=result.allocated_kw,
            unallocated_kw=result.unallocated_kw,
            lines=[
                AllocationLine(
                    asset_id=a.asset_id,
                    p_kw=a.p_kw,
                    weight_kw=a.weight_kw,
                    bound_kw=a.bound_kw,
                    clamped=a.clamped,
                    child_dispatch_id=child_dispatch_id(inp.dispatch_id, a.asset_id),
                )
                for a in result.allocations
            ],
        )
        await workflow.execute_activity("record_allocation", self.allocation, **DB_ACTIVITY)  # type: ignore[call-overload]

        handles = []
        for line in self.allocation.lines:
            assert line.child_dispatch_id is not None
            child = inp.model_copy(
                update={
                    "dispatch_id": line.child_dispatch_id,
                    "kind": DispatchKind.ASSET.value,
                    "asset_id": line.asset_id,
                    "p_kw": line.p_kw,
                    "parent_id": inp.dispatch_id,
                    "warnings": [],
                    "idempotency_key": None,
                    "request_hash": None,
                }
            )
            self.children[line.asset_id] = S.SUBMITTED
            handles.append(
                await workflow.start_child_workflow(
                    DispatchWorkflow.run,
                    child,
                    id=line.child_dispatch_id,
                    parent_close_policy=ParentClosePolicy.REQUEST_CANCEL,
                    search_attributes=TypedSearchAttributes(
                        [
                            SearchAttributePair(SA_DISPATCH_STATE, S.SUBMITTED.value),
                            SearchAttributePair(SA_ASSET_ID, line.asset_id),
                            SearchAttributePair(SA_SITE_ID, inp.site_id),
                            SearchAttributePair(SA_DISPATCH_KIND, DispatchKind.ASSET.value),
                        ]
                    ),
                )
            )
        await self._advance(S.SENT)
        waiter = asyncio.gather(*handles)
        self.cancelled_children = False
        while not waiter.done():
            await workflow.wait_condition(
                lambda: (
                    waiter.done()
                    or self._next_state() is not None
                    or (self.cancel_request is not None and not self.cancelled_children)
                ),
                timeout_summary="follow the children",
            )
            if self.cancel_request is not None and not self.cancelled_children:
                self.cancelled_children = True
                for h in handles:
                    if h.done():
                        continue  # that child has ended: nothing to cancel
                    try:
                        await h.signal(DispatchWorkflow.cancel, self.cancel_request)
                    except ApplicationError:  # it ended before the signal got there
                        workflow.logger.info("child %s already closed", h.id)
            nxt = self._next_state()
            if nxt is not None:
                await self._advance(nxt)
        results: list[DispatchResult] = list(await waiter)
        return await self._finish(results)

    def _next_state(self) -> DispatchState | None:
        """The parent's next forward state implied by its children, if any."""
        states = list(self.children.values())
        live = [s for s in states if not s.terminal]
        if self.state is S.SENT and live and all(s in (S.ACKED, S.ACTIVE) for s in live):
            return S.ACKED
        if self.state in (S.SENT, S.ACKED) and S.ACTIVE in states:
            return S.ACTIVE
        return None

    async def _advance(self, target: DispatchState) -> None:
        assert self.state is not None
        for state in path_to(self.state, target):
            await self._to(state, actor="children")

    async def _finish(self, results: list[DispatchResult]) -> DispatchResult:
        delivered = sum(r.applied_p_kw or 0.0 for r in results if r.state is S.COMPLETE)
        summary = ", ".join(f"{r.dispatch_id.rsplit('.', 1)[-1]}={r.state}" for r in results)
        if self.cancel_request is not None:
            req: CancelRequest = self.cancel_request
            end = await self._end(S.CANCELLED, req.reason, summary, actor=req.actor)
        elif any(r.state is S.COMPLETE for r in results):
            for state in path_to(self.state or S.SUBMITTED, S.COMPLETE):
                await self._to(state, detail=summary, actor="children")
            end = self._result()
        else:
            reasons = {r.reason for r in results if r.reason is not None}
            reason = reasons.pop() if len(reasons) == 1 else ReasonCode.DEVICE_WRITE_FAILED
            state = S.EXPIRED if all(r.state is S.EXPIRED for r in results) else S.FAILED
            end = await self._end(state, reason, summary, actor="children")
        return end.model_copy(update={"requested_kw": self.inp.p_kw, "delivered_kw": delivered})
