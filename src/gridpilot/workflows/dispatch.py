"""DispatchWorkflow: one setpoint for one asset, submitted → … → an end state.

The workflow is the only writer of a dispatch's transitions: it checks each
one against ``core.lifecycle`` and records it through an activity, so the
database, the search attributes and the workflow history tell one story.
"""

from __future__ import annotations

import asyncio
from datetime import timedelta

from temporalio import workflow
from temporalio.exceptions import ActivityError, ApplicationError

with workflow.unsafe.imports_passed_through():
    # The activities are imported for their typed references only (names and
    # signatures); workflow code never runs them.
    from gridpilot.activities.delivery import DeliveryActivities
    from gridpilot.activities.records import RecordActivities
    from gridpilot.core.acks import ack_effect
    from gridpilot.core.lifecycle import DispatchState, ReasonCode

    from .calls import on_database, on_replica, release
    from .constants import QUERY_CURRENT_STATE, SIGNAL_AGENT_ACK, SIGNAL_CANCEL
    from .dispatch_rules import (
        ROUTE_RETRY,
        START_LEAD,
        claim_request,
        setpoint_command,
        supersede_request,
        superseded_by,
        wait_deadline,
    )
    from .models import (
        AgentAck,
        CancelRequest,
        DispatchInput,
        DispatchResult,
        DispatchStatus,
        SetpointDelivery,
        TransitionRecord,
    )
    from .outcome import close
    from .recording import Recorder

S = DispatchState
# A sent dispatch that is superseded ends when the agent hands over to the new one
# (its RELEASED / SUPERSEDED ack), not at the new one's claim.
PATCH_SUPERSEDE_AT_HANDOVER = "supersede-at-handover"
# A setpoint refused at delivery because a newer dispatch claimed the asset first
# (core.supersede) ends this one SUPERSEDED at once, instead of resolving the
# route again until the winner's cancel signal comes.
PATCH_CANCEL_BEFORE_DELIVERY = "cancel-before-delivery"
# Acks that came while it was ending (e.g. the agent's answer to the Release) are
# written to dispatch_late_acks, as those after its end are, not only kept in
# the workflow's result.
PATCH_LATE_ACKS_KEPT = "late-acks-kept"


@workflow.defn
class DispatchWorkflow(Recorder):
    @workflow.init
    def __init__(self, inp: DispatchInput) -> None:
        self.inp = inp
        self.state: DispatchState | None = None
        self.transitions: list[TransitionRecord] = []
        self.lean = False
        self.unwritten: list[TransitionRecord] = []
        self.batching = False
        self.acks: list[AgentAck] = []
        self.late_acks: list[AgentAck] = []
        self.cancel_request: CancelRequest | None = None
        # The dispatch that claimed the asset after this one was sent: this one stays
        # live (it runs at the agent) until the agent hands over, or to its own end.
        self.superseded_by: str | None = None
        self.applied_p_kw: float | None = None
        self.gateway_id: str | None = None
        self.outcome: DispatchResult | None = None
        self.cancel_requested = False  # a Temporal cancel request was delivered

    # ------------------------------------------------------------ messages
    @workflow.signal(name=SIGNAL_AGENT_ACK)
    def agent_ack(self, ack: AgentAck) -> None:
        if ack.dispatch_id != self.inp.dispatch_id:
            return
        if self.state is not None and self.state.terminal:
            self.late_acks.append(ack)  # kept for the record, changes nothing
            return
        self.acks.append(ack)

    @workflow.signal(name=SIGNAL_CANCEL)
    def cancel(self, req: CancelRequest) -> None:
        if self.cancel_request is None:
            self.cancel_request = req

    @workflow.query
    def status(self) -> DispatchStatus:
        return DispatchStatus(
            dispatch_id=self.inp.dispatch_id,
            state=self.state,
            transitions=self.transitions,
            late_acks=self.late_acks,
            superseded_by=self.superseded_by,
        )

    @workflow.query(name=QUERY_CURRENT_STATE)
    def current_state(self) -> DispatchResult:
        """Where it is now, or how it ended (the UI's Queries tab)."""
        if self.outcome is not None:
            return self.outcome
        if not self.transitions:
            return DispatchResult(dispatch_id=self.inp.dispatch_id, state=S.SUBMITTED)
        return self._result()

    # ------------------------------------------------------------ main
    @workflow.run
    async def run(self, inp: DispatchInput) -> DispatchResult:
        await self._submit()
        try:
            end = None
            if inp.source == "local":
                # Written and applied on site: no claim, no delivery (the agent
                # arbitrated it). Only what the agent's acks report is recorded.
                # (Histories before local dispatches all have source "cloud".)
                await self._to(
                    S.SENT, detail=f"written on site by {inp.submitted_by}", actor="agent"
                )
                end = await self._follow_acks()
            if end is None and workflow.patched("claim-asset"):
                end = await self._claim()
            if end is None and workflow.patched("scheduled-start"):
                await self._wait_for_start()
            if end is None:
                end = await self._deliver()
            if end is None:
                end = await self._follow_acks()
        except asyncio.CancelledError:
            # Cancelled through Temporal (the UI, the CLI, a site parent closing): end
            # it the way an operator cancel does, so the asset is released and recorded.
            # A supersede not yet looked at does not end a sent one: only the agent does.
            self.cancel_requested = True
            req = self.cancel_request
            if req is None or (
                req.reason is ReasonCode.SUPERSEDED
                and self.state is not S.SUBMITTED
                and workflow.patched(PATCH_SUPERSEDE_AT_HANDOVER)
            ):
                if req is not None:
                    self.superseded_by = req.superseded_by
                self.cancel_request = CancelRequest(
                    actor="temporal", detail="workflow cancellation requested"
                )
            end = await self._finish_cancelled(sent=self.state is not S.SUBMITTED)
        assert end is not None
        # Acks that came in while it was ending (e.g. the agent's answer to the
        # Release) change nothing, but are kept for the record.
        self.late_acks.extend(self.acks)
        self.acks.clear()
        if self.late_acks and workflow.patched(PATCH_LATE_ACKS_KEPT):
            await self._keep_late_acks()
        self.outcome = end
        return await close(end, self.cancel_requested)

    async def _keep_late_acks(self) -> None:
        """Write the late acks to the record, also those signalled meanwhile (one
        in the very last task stays in the result; after the close, ingest.acks)."""
        kept = 0
        while kept < len(self.late_acks):
            await on_database(RecordActivities.record_late_ack, self.late_acks[kept])
            kept += 1

    async def _claim(self) -> DispatchResult | None:
        """At most one live dispatch per asset: refuse if a higher priority one
        holds it, else supersede the ones this replaces."""
        inp = self.inp
        claim = await on_database(RecordActivities.claim_asset, claim_request(inp))
        if claim.refused_by is not None:
            return await self._end(
                S.FAILED,
                ReasonCode.PRIORITY_CONFLICT,
                f"asset held by {claim.refused_by} (priority {claim.refused_priority})",
            )
        if claim.superseded_by is not None:
            # A newer dispatch (or a higher priority one) keeps the asset: this one
            # lost before it was sent. (No recorded history has this field set.)
            return await self._end_superseded(claim.superseded_by)
        for other in claim.superseded:
            try:
                await workflow.get_external_workflow_handle_for(DispatchWorkflow.run, other).signal(
                    DispatchWorkflow.cancel, supersede_request(inp.dispatch_id)
                )
            except Exception:  # it ended meanwhile: nothing to supersede
                workflow.logger.info("dispatch %s already closed", other)
        return None

    async def _wait_for_start(self) -> None:
        """A scheduled dispatch waits on a durable timer and is delivered
        shortly before its start, so an agent restart in between loses nothing."""
        wait = (self.inp.start_at - START_LEAD - workflow.now()).total_seconds()
        if wait <= 0:
            return
        try:
            await workflow.wait_condition(
                lambda: self.cancel_request is not None,
                timeout=timedelta(seconds=wait),
                timeout_summary="wait for the scheduled start",
            )
        except TimeoutError:
            pass

    async def _deliver(self) -> DispatchResult | None:
        """Resolve the route and write the setpoint; retried until deliver_by."""
        inp = self.inp
        assert inp.asset_id is not None
        while True:
            if self.cancel_request is not None:
                return await self._finish_cancelled(sent=False)
            route = await on_database(RecordActivities.resolve_route, inp.asset_id)
            if not route.known:
                return await self._end(S.FAILED, ReasonCode.UNKNOWN_ASSET, f"{inp.asset_id}")
            if route.p_min_kw is not None and route.p_max_kw is not None:
                # Limits may have changed since the submit: check them again.
                if not route.p_min_kw <= inp.p_kw <= route.p_max_kw:
                    return await self._end(
                        S.FAILED,
                        ReasonCode.OUT_OF_LIMITS,
                        f"p_kw {inp.p_kw} is outside the asset's limits now "
                        f"[{route.p_min_kw}, {route.p_max_kw}] kW",
                    )
            if route.task_queue is not None and route.gateway_id is not None:
                self.gateway_id = route.gateway_id
                try:
                    await self._send(route.gateway_id, route.task_queue)
                    return None
                except ActivityError as err:
                    winner = superseded_by(err)
                    if winner is not None and workflow.patched(PATCH_CANCEL_BEFORE_DELIVERY):
                        return await self._end_superseded(winner)
                    # replica gone or agent just dropped: resolve again
            left = (inp.deliver_by - workflow.now()).total_seconds()
            if left <= 0:
                return await self._end(
                    S.EXPIRED, ReasonCode.AGENT_OFFLINE, "agent not reachable before deliver_by"
                )
            try:
                await workflow.wait_condition(
                    lambda: self.cancel_request is not None,
                    timeout=min(ROUTE_RETRY, timedelta(seconds=left)),
                    timeout_summary="wait for the agent",
                )
            except TimeoutError:
                pass

    async def _send(self, gateway_id: str, task_queue: str) -> None:
        """Write the setpoint on the agent's replica, and record it SENT: lean, by
        the delivery itself, in its transaction (the transition is taken once
        the activity succeeded); else, or on a replica from before that activity
        (a rolling upgrade), as its own write after it."""
        cmd = setpoint_command(self.inp, gateway_id)
        detail = f"gateway {gateway_id}"
        if self.lean:
            sent = self._next(S.SENT, None, detail, "headend")
            try:
                await on_replica(
                    DeliveryActivities.deliver_setpoint_sent,
                    SetpointDelivery(command=cmd, sent=sent),
                    task_queue,
                )
                self._take(sent, written=True)
                return
            except ActivityError as err:
                cause = err.cause
                if not (isinstance(cause, ApplicationError) and cause.type == "NotFoundError"):
                    raise
        await on_replica(DeliveryActivities.deliver_setpoint, cmd, task_queue)
        await self._to(S.SENT, detail=detail)

    async def _follow_acks(self) -> DispatchResult:
        while True:
            req = self.cancel_request
            if req is not None:
                if req.reason is not ReasonCode.SUPERSEDED or not workflow.patched(
                    PATCH_SUPERSEDE_AT_HANDOVER
                ):
                    return await self._finish_cancelled(sent=True)
                # Sent: the agent keeps this setpoint until the new one takes over (it
                # then acks this one RELEASED / SUPERSEDED) or this one's own end. Ending
                # it here would record cancelled what may still run at the device.
                self.superseded_by = req.superseded_by
                self.cancel_request = None
            end = None
            with self._batch():  # lean: the acks in hand are written together
                while self.acks and end is None:
                    end = await self._apply_ack(self.acks.pop(0))
            await self._write()
            if end is not None:
                return end
            deadline = wait_deadline(self.inp, self.state, self.transitions[-1].at)
            left = (deadline - workflow.now()).total_seconds()
            if left <= 0:
                if self.state is S.ACTIVE:
                    # The agent never confirmed the end: end it here and tell
                    # the agent to release, so the asset is not left behind.
                    await release(self.inp, ReasonCode.LEASE_ENDED)
                    return await self._end(S.COMPLETE, None, "ended by the headend at end_at")
                return await self._end(
                    S.EXPIRED,
                    ReasonCode.DEADLINE_PASSED,
                    f"no {'ack' if self.state is S.SENT else 'apply'} from the agent in time",
                )
            try:
                await workflow.wait_condition(
                    lambda: bool(self.acks) or self.cancel_request is not None,
                    timeout=timedelta(seconds=left),
                    timeout_summary=f"wait while {self.state}",
                )
            except TimeoutError:
                pass

    async def _apply_ack(self, ack: AgentAck) -> DispatchResult | None:
        # What the ack asks for is core.acks's (pure); reaching it from here is ours.
        # (LOCAL_CONTROL, a take-over there, is newer than every recorded history.)
        detail, effect = ack.detail, ack_effect(ack.state, ack.reason)
        if effect.state is S.ACKED:
            if self.state is S.SENT:
                await self._to(S.ACKED, detail=detail, actor="agent")
            return None
        if effect.state is S.ACTIVE:
            self.applied_p_kw = ack.applied_p_kw
            if self.state is S.ACTIVE:
                return None  # repeated (the agent answers a redelivery with its latest ack)
            await self._through(S.ACTIVE, detail=detail, actor="agent")
            return None
        if effect.state is S.COMPLETE:
            await self._through(S.COMPLETE, detail=detail, actor="agent")
            return self._result()
        return await self._end(effect.state, effect.reason, detail, actor="agent")

    async def _finish_cancelled(self, sent: bool) -> DispatchResult:
        req = self.cancel_request
        assert req is not None
        # Only a dispatch not yet sent ends here as SUPERSEDED (and, replaying, one
        # started before "supersede-at-handover"): the new setpoint replaces it at the
        # agent, and a Release here could return the asset to its default in between.
        if sent and req.reason is not ReasonCode.SUPERSEDED:
            await release(self.inp, req.reason)
        return await self._end(S.CANCELLED, req.reason, req.detail, actor=req.actor)

    async def _end_superseded(self, winner: str) -> DispatchResult:
        """Superseded before it was sent: nothing to release at the agent."""
        self.superseded_by = winner
        detail = f"superseded by {winner}"
        return await self._end(S.CANCELLED, ReasonCode.SUPERSEDED, detail, f"dispatch {winner}")
