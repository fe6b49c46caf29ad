"""SiteDispatchWorkflow: a site target split over its assets, one child each.

The split is ``core.split`` (the same code the preview endpoint runs). Each
child is a DispatchWorkflow; children report their transitions back with a
signal and the parent's own state follows them: sent once all children are
started, acked when every live child is acked, active when any is active, and
at the end complete when any child completed, otherwise failed or cancelled.
"""

from __future__ import annotations

import asyncio
from datetime import datetime

from temporalio import workflow
from temporalio.common import SearchAttributePair, TypedSearchAttributes
from temporalio.exceptions import ApplicationError
from temporalio.workflow import ChildWorkflowHandle, ParentClosePolicy

with workflow.unsafe.imports_passed_through():
    from gridpilot.activities.records import RecordActivities
    from gridpilot.core.assets import Asset
    from gridpilot.core.dispatch import DispatchKind
    from gridpilot.core.lifecycle import DispatchState, ReasonCode
    from gridpilot.core.site_outcome import site_outcome
    from gridpilot.core.split import Available

    from .calls import on_database
    from .constants import (
        SA_ASSET_ID,
        SA_DISPATCH_KIND,
        SA_DISPATCH_STATE,
        SA_SITE_ID,
        SIGNAL_CHILD_STATE,
    )
    from .dispatch import DispatchWorkflow
    from .models import (
        AllocationLine,
        AllocationRecord,
        CancelRequest,
        ChildState,
        DispatchInput,
        DispatchResult,
    )
    from .outcome import child_result, close
    from .site_rules import allocate, child_input, child_runs, next_state, site_assets

S = DispatchState
# The site's end state is decided from what its children delivered (core.site_outcome).
PATCH_SITE_OUTCOME = "site-outcome"
# The children of an allocation start together (their start commands in one workflow
# task, CHILD_START_BATCH at a time) rather than one workflow task each.
PATCH_CHILDREN_TOGETHER = "children-together"
CHILD_START_BATCH = 50
# A child of this workflow, typed: its signals go by method reference.
Child = ChildWorkflowHandle[DispatchWorkflow, DispatchResult]


@workflow.defn
class SiteDispatchWorkflow(DispatchWorkflow):
    @workflow.init
    def __init__(self, inp: DispatchInput) -> None:
        super().__init__(inp)
        self.children: dict[str, DispatchState] = {}  # by asset (v1)
        self.child_states: dict[str, DispatchState] = {}  # by child dispatch id
        self.assets: list[Asset] = []
        self.available: dict[str, Available] = {}
        self.child_results: dict[str, DispatchResult] = {}
        self.allocation: AllocationRecord | None = None
        self.child_last: dict[str, ChildState] = {}  # by child dispatch id
        self.child_lines: dict[str, AllocationLine] = {}  # every child started, in order
        self.child_active_at: dict[str, datetime] = {}
        self.child_ended_at: dict[str, datetime] = {}

    @workflow.signal(name=SIGNAL_CHILD_STATE)  # sent by name: see constants.py
    def child_state(self, msg: ChildState) -> None:
        self.children[msg.asset_id] = msg.state
        self.child_states[msg.dispatch_id] = msg.state
        self.child_last[msg.dispatch_id] = msg
        at = msg.at or workflow.now()
        if msg.active_at is not None:  # told with a later state (patch "lean-records")
            self.child_active_at.setdefault(msg.dispatch_id, msg.active_at)
        if msg.state is S.ACTIVE:
            self.child_active_at.setdefault(msg.dispatch_id, at)
        if msg.state.terminal:
            self.child_ended_at.setdefault(msg.dispatch_id, at)

    @workflow.run
    async def run(self, inp: DispatchInput) -> DispatchResult:
        assert inp.site_id is not None
        await self._submit()
        loaded = await on_database(RecordActivities.load_split_inputs, inp.site_id)
        if not loaded.assets:
            end = await self._end(S.FAILED, ReasonCode.UNKNOWN_ASSET, "the site has no assets")
            self.outcome = end
            return await close(end, self.cancel_requested)
        self.assets, self.available = site_assets(loaded, inp.site_id)
        self.allocation = allocate(inp, self.assets, self.available, version=1, excluded=set())
        await on_database(RecordActivities.record_allocation, self.allocation)
        if workflow.patched("site-respread"):
            following = asyncio.ensure_future(self._follow_children())
            while True:
                try:
                    end = await asyncio.shield(following)
                    break
                except asyncio.CancelledError:
                    # Cancelled through Temporal (the UI, the CLI): end it the way an
                    # operator cancel does, so the children are cancelled and it is recorded.
                    self.cancel_requested = True
                    if self.cancel_request is None:
                        self.cancel_request = CancelRequest(
                            actor="temporal", detail="workflow cancellation requested"
                        )
        else:
            end = await self._follow_children_v1()
        self.outcome = end
        return await close(end, self.cancel_requested)

    async def _start_child(self, line: AllocationLine, respread: bool = False) -> Child:
        inp = self.inp
        assert line.child_dispatch_id is not None and inp.site_id is not None
        child = child_input(inp, line, respread_at=workflow.now() if respread else None)
        self.children[line.asset_id] = S.SUBMITTED
        self.child_lines[line.child_dispatch_id] = line
        return await workflow.start_child_workflow(
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

    async def _start_children(
        self, lines: list[AllocationLine], respread: bool = False
    ) -> dict[str, Child]:
        """The children of these lines, by asset, started in line order."""
        if not workflow.patched(PATCH_CHILDREN_TOGETHER):
            return {line.asset_id: await self._start_child(line, respread) for line in lines}
        started: dict[str, Child] = {}
        for i in range(0, len(lines), CHILD_START_BATCH):
            batch = lines[i : i + CHILD_START_BATCH]
            handles = await asyncio.gather(*(self._start_child(x, respread) for x in batch))
            started.update(zip((x.asset_id for x in batch), handles, strict=True))
        return started

    async def _cancel_children(self, handles: list[Child]) -> None:
        req = self.cancel_request
        assert req is not None
        for h in handles:
            if h.done():
                continue  # that child has ended: nothing to cancel
            try:
                await h.signal(DispatchWorkflow.cancel, req)
            except ApplicationError:  # it ended before the signal got there
                workflow.logger.info("child %s already closed", h.id)

    async def _follow_children(self) -> DispatchResult:
        """Follow the children; when one is refused or its agent is offline,
        re-spread the target over the remaining assets (a new allocation
        version, whose children supersede the old ones of the same asset)."""
        assert self.allocation is not None
        current = await self._start_children(self.allocation.lines)
        shares = {line.asset_id: line.p_kw for line in self.allocation.lines}
        await self._advance(S.SENT)
        excluded: set[str] = set()
        finished: dict[str, DispatchResult] = {}  # by asset, the final result
        self.cancelled_children = False

        def live() -> list[Child]:
            return [h for h in current.values() if not h.done()]

        def needs_attention() -> bool:
            return (
                not live()
                or any(h.done() and a not in finished for a, h in current.items())
                or next_state(self.state, [self.child_states.get(h.id) for h in current.values()])
                is not None
                or (self.cancel_request is not None and not self.cancelled_children)
            )

        while True:
            await workflow.wait_condition(needs_attention, timeout_summary="follow the children")
            if self.cancel_request is not None and not self.cancelled_children:
                self.cancelled_children = True
                await self._cancel_children(list(current.values()))
            respread = False
            for asset_id, h in list(current.items()):
                if not h.done() or asset_id in finished:
                    continue
                result = child_result(h, self.child_last.get(h.id))
                finished[asset_id] = result
                lost = result.state in (S.FAILED, S.EXPIRED)
                if lost and self.cancel_request is None and asset_id not in excluded:
                    excluded.add(asset_id)
                    respread = True
            remaining = [a.asset_id for a in self.assets if a.asset_id not in excluded]
            if respread and remaining and workflow.now() < self.inp.end_at:
                allocation = allocate(
                    self.inp, self.assets, self.available, self.allocation.version + 1, excluded
                )
                # Decide before any await (a child that ends while the allocation is
                # written is looked at next round), and record the child that carries
                # each share: a kept child keeps its id.
                to_start: list[AllocationLine] = []
                for line in allocation.lines:
                    old = current.get(line.asset_id)
                    unchanged = abs(shares.get(line.asset_id, 0.0) - line.p_kw) < 0.0005
                    if old is not None and (
                        (not old.done() and unchanged)  # its share is unchanged
                        or (old.done() and finished[line.asset_id].state is S.COMPLETE)
                    ):
                        line.child_dispatch_id = old.id
                    else:
                        to_start.append(line)
                self.allocation = allocation
                await on_database(RecordActivities.record_allocation, self.allocation)
                # Same priority as its sibling: the new child supersedes it.
                current.update(await self._start_children(to_start, respread=True))
                for line in to_start:
                    shares[line.asset_id] = line.p_kw
                    finished.pop(line.asset_id, None)
            nxt = next_state(self.state, [self.child_states.get(h.id) for h in current.values()])
            if nxt is not None:
                await self._advance(nxt)
            if not live() and all(a in finished for a in current):
                break
        return await self._finish([finished[a] for a in sorted(finished)])

    async def _follow_children_v1(self) -> DispatchResult:
        """Site dispatches started before re-spreading existed replay here."""
        assert self.allocation is not None
        handles = []
        for line in self.allocation.lines:
            handles.append(await self._start_child(line))
        await self._advance(S.SENT)
        # A child that ended failed / cancelled (patch "outcome-status") raises here.
        waiter = asyncio.gather(*handles, return_exceptions=True)
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
                await self._cancel_children(handles)
            nxt = self._next_state()
            if nxt is not None:
                await self._advance(nxt)
        await waiter
        results = [child_result(h, self.child_last.get(h.id)) for h in handles]
        return await self._finish(results)

    def _next_state(self) -> DispatchState | None:
        """The parent's next forward state implied by its children (v1: by asset)."""
        return next_state(self.state, list(self.children.values()))

    async def _advance(self, target: DispatchState) -> None:
        assert self.state is not None
        await self._through(target, actor="children")

    async def _finish(self, results: list[DispatchResult]) -> DispatchResult:
        if workflow.patched(PATCH_SITE_OUTCOME):
            return await self._finish_by_delivery(results)
        delivered = sum(r.applied_p_kw or 0.0 for r in results if r.state is S.COMPLETE)
        prefix = f"{self.inp.dispatch_id}."  # "bess-1", or "bess-1.v2" for a re-spread child
        summary = ", ".join(f"{r.dispatch_id.removeprefix(prefix)}={r.state}" for r in results)
        if self.cancel_request is not None:
            req: CancelRequest = self.cancel_request
            end = await self._end(S.CANCELLED, req.reason, summary, actor=req.actor)
        elif any(r.state is S.COMPLETE for r in results):
            await self._through(S.COMPLETE, detail=summary, actor="children")
            end = self._result()
        else:
            reasons = {r.reason for r in results if r.reason is not None}
            reason = reasons.pop() if len(reasons) == 1 else ReasonCode.DEVICE_WRITE_FAILED
            state = S.EXPIRED if all(r.state is S.EXPIRED for r in results) else S.FAILED
            end = await self._end(state, reason, summary, actor="children")
        return end.model_copy(update={"requested_kw": self.inp.p_kw, "delivered_kw": delivered})

    async def _finish_by_delivery(self, results: list[DispatchResult]) -> DispatchResult:
        """Every child started (re-spread ones too) with what it delivered;
        ``core.site_outcome`` decides the site's end."""
        inp = self.inp
        runs = child_runs(
            inp,
            self.child_lines,
            results,
            self.child_last,
            self.child_active_at,
            self.child_ended_at,
            workflow.now(),
        )
        req = self.cancel_request
        out = site_outcome(
            inp.p_kw,
            inp.duration_s,
            runs,
            cancelled=req.reason if req is not None else None,
            prefix=f"{inp.dispatch_id}.",
        )
        if out.state is S.COMPLETE:
            await self._through(S.COMPLETE, detail=out.detail, actor="children")
            end = self._result()
        else:
            actor = req.actor if req is not None else "children"
            end = await self._end(out.state, out.reason, out.detail, actor=actor)
        return end.model_copy(
            update={
                "requested_kw": out.requested_kw,
                "delivered_kw": out.delivered_kw,
                "requested_kwh": out.requested_kwh,
                "delivered_kwh": out.delivered_kwh,
            }
        )
