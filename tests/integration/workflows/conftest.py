"""A harness for the dispatch workflows against a real Temporal server.

The workflows call their activities by name. Here those names are served by
:class:`FakeBackend`, in memory: it records every call, answers
``resolve_route`` from routes the test sets (online / offline / unknown, or a
dead headend queue), serves ``load_split_inputs``, and can play the agent
(signal acks when a setpoint or a release is delivered). Like the real agent
(``edge_agent/control.py``) it hands an asset over from one dispatch to the next:
the one it held gets ``released / SUPERSEDED`` when the new setpoint takes over.
Two workers run, as in a headend: one on the shared dispatch queue (workflows +
DB/route activities) and one on the "headend" replica queue (``deliver_*``).

Histories of representative runs are saved for the replay test when
``GRIDPILOT_RECORD_HISTORIES=1`` (see ``record_histories``).
"""

from __future__ import annotations

import asyncio
import contextlib
import os
from collections.abc import AsyncIterator, Awaitable, Callable
from contextlib import asynccontextmanager
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any
from uuid import uuid4

import pytest
import pytest_asyncio
from gp_testing import wait_for
from gp_testing.workflows import dispatch_result
from temporalio import activity
from temporalio.api.enums.v1 import IndexedValueType, WorkflowTaskFailedCause
from temporalio.api.operatorservice.v1 import AddSearchAttributesRequest
from temporalio.client import Client, WorkflowExecutionStatus, WorkflowHandle
from temporalio.common import TypedSearchAttributes
from temporalio.exceptions import ApplicationError
from temporalio.service import RPCError
from temporalio.testing import WorkflowEnvironment
from temporalio.worker import Worker

from gridpilot.activities.outcome import request_own_cancel
from gridpilot.api.dispatch_workflows import search_attributes
from gridpilot.core.lifecycle import DispatchState, ReasonCode
from gridpilot.core.supersede import ClaimKey, Verdict, resolve_claim
from gridpilot.workflows.constants import (
    ERROR_SUPERSEDED,
    SEARCH_ATTRIBUTES,
    SIGNAL_AGENT_ACK,
)
from gridpilot.workflows.dispatch import DispatchWorkflow
from gridpilot.workflows.models import (
    AgentAck,
    AllocationRecord,
    ClaimRequest,
    ClaimResult,
    DispatchInput,
    DispatchResult,
    ReleaseCommand,
    Route,
    SetpointCommand,
    SetpointDelivery,
    SplitInputs,
    SubmissionRecord,
    TransitionBatch,
    TransitionRecord,
)
from gridpilot.workflows.site import SiteDispatchWorkflow

HISTORIES_DIR = Path(__file__).with_name("histories")
RECORD_ENV = "GRIDPILOT_RECORD_HISTORIES"
GATEWAY = "gw-test"
UNHANDLED_COMMAND = WorkflowTaskFailedCause.WORKFLOW_TASK_FAILED_CAUSE_UNHANDLED_COMMAND
WAIT_S = 30.0  # a bound on every wait, so a wedged workflow fails a test instead of hanging it


@dataclass
class Call:
    name: str
    arg: Any
    task_queue: str


@dataclass
class FakeBackend:
    """The DB, route registry and headend delivery, in memory and under test control."""

    client: Client
    task_queue: str
    headend_queue: str
    calls: list[Call] = field(default_factory=list)
    routes: dict[str, Route] = field(default_factory=dict)
    transitions: dict[str, list[TransitionRecord]] = field(default_factory=dict)
    dispatches: dict[str, DispatchInput] = field(default_factory=dict)
    allocations: list[AllocationRecord] = field(default_factory=list)
    split_inputs: dict[str, SplitInputs] = field(default_factory=dict)
    # deliver_setpoint raises AGENT_OFFLINE (the stream is gone) this many more times
    deliver_failures: int = 0
    # the agent's answers, signalled right after a setpoint / release reaches it
    agent_replies: list[str] = field(default_factory=list)
    reply_to_release: bool = False
    # the agent refuses these dispatches (its rails) with this reason when delivered
    agent_rejects: dict[str, ReasonCode] = field(default_factory=dict)
    # what the agent holds per asset, as edge_agent/control.py: the setpoint applied
    # at the device and the one accepted for a later start
    agent_active: dict[str, str] = field(default_factory=dict)
    agent_scheduled: dict[str, str] = field(default_factory=dict)
    # claim_asset: the live dispatches per asset, like the dispatches table
    claims: dict[str, ClaimRequest] = field(default_factory=dict)
    superseded_by: dict[str, str] = field(default_factory=dict)
    _tasks: set[asyncio.Task[None]] = field(default_factory=set)
    _changed: asyncio.Event = field(default_factory=asyncio.Event)

    # ------------------------------------------------------------ routes
    def online(self, asset_id: str, queue: str | None = None) -> None:
        self.routes[asset_id] = Route(
            asset_id=asset_id,
            known=True,
            gateway_id=GATEWAY,
            task_queue=queue or self.headend_queue,
        )

    def offline(self, asset_id: str) -> None:
        self.routes[asset_id] = Route(asset_id=asset_id, known=True, gateway_id=GATEWAY)

    # ------------------------------------------------------------ activities
    def _called(self, name: str, arg: Any) -> None:
        self.calls.append(Call(name, arg, activity.info().task_queue))
        self._changed.set()

    @activity.defn(name="record_dispatch")
    async def record_dispatch(self, inp: DispatchInput) -> None:
        self._called("record_dispatch", inp)
        self.dispatches.setdefault(inp.dispatch_id, inp)

    @activity.defn(name="record_submission")
    async def record_submission(self, rec: SubmissionRecord) -> None:
        self._called("record_submission", rec)
        self.dispatches.setdefault(rec.dispatch.dispatch_id, rec.dispatch)
        self._record(rec.submitted)

    @activity.defn(name="record_transition")
    async def record_transition(self, rec: TransitionRecord) -> None:
        self._called("record_transition", rec)
        self._record(rec)

    @activity.defn(name="record_transitions")
    async def record_transitions(self, batch: TransitionBatch) -> None:
        self._called("record_transitions", batch)
        for rec in batch.records:
            self._record(rec)

    def _record(self, rec: TransitionRecord) -> None:
        recorded = self.transitions.setdefault(rec.dispatch_id, [])
        if all(r.seq != rec.seq for r in recorded):  # idempotent, like the real one
            recorded.append(rec)
        self._changed.set()

    @activity.defn(name="record_allocation")
    async def record_allocation(self, rec: AllocationRecord) -> None:
        self._called("record_allocation", rec)
        self.allocations.append(rec)

    @activity.defn(name="record_late_ack")
    async def record_late_ack(self, ack: AgentAck) -> None:
        self._called("record_late_ack", ack)

    @activity.defn(name="resolve_route")
    async def resolve_route(self, asset_id: str) -> Route:
        self._called("resolve_route", asset_id)
        return self.routes.get(asset_id, Route(asset_id=asset_id, known=False))

    @activity.defn(name="load_split_inputs")
    async def load_split_inputs(self, site_id: str) -> SplitInputs:
        self._called("load_split_inputs", site_id)
        return self.split_inputs.get(site_id, SplitInputs(site_id=site_id, assets=[]))

    @activity.defn(name="claim_asset")
    async def claim_asset(self, req: ClaimRequest) -> ClaimResult:
        self._called("claim_asset", req)
        self.claims[req.dispatch_id] = req
        live = [
            c
            for c in self.claims.values()
            if c.asset_id == req.asset_id
            and c.dispatch_id != req.dispatch_id
            and not self._ended(c.dispatch_id)  # superseded or not: live until it ends
            and c.start_at < req.end_at
            and c.end_at > req.start_at
        ]
        # The same rule as the real activity (core.supersede).
        mine = self.superseded_by.get(req.dispatch_id)
        decision = resolve_claim(
            ClaimKey(req.dispatch_id, req.priority, req.submit_seq, superseded=mine is not None),
            [ClaimKey(c.dispatch_id, c.priority, c.submit_seq) for c in live],
        )
        winner = decision.winner
        if decision.verdict is Verdict.REFUSED:
            assert winner is not None
            return ClaimResult(refused_by=winner.dispatch_id, refused_priority=winner.priority)
        if decision.verdict is Verdict.SUPERSEDED:
            won = mine if winner is None else winner.dispatch_id
            assert won is not None
            self.superseded_by[req.dispatch_id] = won
            return ClaimResult(superseded_by=won)
        for c in decision.superseded:
            self.superseded_by[c] = req.dispatch_id
        return ClaimResult(superseded=list(decision.superseded))

    def _ended(self, dispatch_id: str) -> bool:
        recorded = self.transitions.get(dispatch_id, [])
        return bool(recorded) and recorded[-1].to_state.terminal

    @activity.defn(name="deliver_setpoint")
    async def deliver_setpoint(self, cmd: SetpointCommand) -> None:
        self._called("deliver_setpoint", cmd)
        winner = self.superseded_by.get(cmd.dispatch_id)
        if winner is not None:  # as the real one, under the claim lock: never sent
            raise ApplicationError(
                f"superseded by {winner} before delivery",
                winner,
                type=ERROR_SUPERSEDED,
                non_retryable=True,
            )
        if self.deliver_failures > 0:
            self.deliver_failures -= 1
            raise ApplicationError(
                f"gateway {cmd.gateway_id} has no stream on this headend",
                type="AGENT_OFFLINE",
                non_retryable=True,
            )
        # The agent answers at once: its acks are in before this activity completes.
        reason = self.agent_rejects.get(cmd.dispatch_id)
        if reason is not None:  # refused: the agent keeps what it held
            await self.ack(cmd.dispatch_id, "rejected", asset_id=cmd.asset_id, reason=reason)
            return
        await self._agent_accepts(cmd, activity.info().current_attempt_scheduled_time)
        if self.agent_replies:
            self._spawn(self._replies(cmd, list(self.agent_replies)))

    @activity.defn(name="deliver_setpoint_sent")
    async def deliver_setpoint_sent(self, delivery: SetpointDelivery) -> None:
        """As the real one: the setpoint (``deliver_setpoint``), then, once it
        is on its way, its SENT transition."""
        await self.deliver_setpoint(delivery.command)
        self._record(delivery.sent)

    @activity.defn(name="deliver_release")
    async def deliver_release(self, cmd: ReleaseCommand) -> None:
        self._called("deliver_release", cmd)
        self._agent_drops(cmd.dispatch_id)
        if self.reply_to_release:
            ack = self.ack_for(
                cmd.dispatch_id, "released", reason=cmd.reason, asset_id=cmd.asset_id
            )
            # The agent answers at once: the ack is in before this activity completes.
            await self.client.get_workflow_handle(cmd.dispatch_id).signal(SIGNAL_AGENT_ACK, ack)

    def shared_activities(self) -> list[Callable[..., Any]]:
        return [
            self.record_dispatch,
            self.record_submission,
            self.record_transition,
            self.record_transitions,
            self.record_allocation,
            self.record_late_ack,
            self.resolve_route,
            self.load_split_inputs,
            self.claim_asset,
            request_own_cancel,  # the real one: it only needs the Temporal client
        ]

    def headend_activities(self) -> list[Callable[..., Any]]:
        return [self.deliver_setpoint, self.deliver_setpoint_sent, self.deliver_release]

    # ------------------------------------------------------------ the agent
    def ack_for(self, dispatch_id: str, state: str, **fields: Any) -> AgentAck:
        return AgentAck(
            dispatch_id=dispatch_id,
            state=state,
            at=datetime.now(UTC),
            gateway_id=GATEWAY,
            **fields,
        )

    async def ack(self, dispatch_id: str, state: str, **fields: Any) -> None:
        """Send an agent ack the way the headend does: a signal on the dispatch's workflow.
        ``applied`` for a dispatch the agent holds for a later start is that start: the
        setpoint it replaces at the device is released / SUPERSEDED first."""
        if state == "applied":
            await self._agent_starts(dispatch_id)
        handle = self.client.get_workflow_handle(dispatch_id)
        await handle.signal(SIGNAL_AGENT_ACK, self.ack_for(dispatch_id, state, **fields))
        if state in ("completed", "rejected", "failed", "released"):
            self._agent_drops(dispatch_id)

    async def _agent_accepts(self, cmd: SetpointCommand, now: datetime) -> None:
        """A new setpoint replaces the one waiting for its start, and, starting now,
        the one applied at the device (``AssetController._on_setpoint``)."""
        new, asset = cmd.dispatch_id, cmd.asset_id
        if new in (self.agent_active.get(asset), self.agent_scheduled.get(asset)):
            return  # a redelivery: nothing re-applied, nothing superseded
        waiting = self.agent_scheduled.pop(asset, None)
        if waiting is not None:
            await self._superseded(waiting, asset, f"superseded by {new} before it started")
        if cmd.start_at > now:
            self.agent_scheduled[asset] = new
            return
        await self._take_over(asset, new)

    async def _agent_starts(self, dispatch_id: str) -> None:
        """A scheduled setpoint starting: it takes over the asset (``_on_start_due``)."""
        for asset, waiting in list(self.agent_scheduled.items()):
            if waiting == dispatch_id:
                del self.agent_scheduled[asset]
                await self._take_over(asset, dispatch_id)

    async def _take_over(self, asset: str, new: str) -> None:
        old = self.agent_active.get(asset)
        self.agent_active[asset] = new
        if old is not None and old != new:
            await self._superseded(old, asset, f"superseded by {new}")

    async def _superseded(self, dispatch_id: str, asset: str, detail: str) -> None:
        if self._ended(dispatch_id):
            return  # ended at the headend meanwhile: nothing to tell
        with contextlib.suppress(RPCError):  # or it closed just now
            await self.ack(
                dispatch_id,
                "released",
                asset_id=asset,
                reason=ReasonCode.SUPERSEDED,
                detail=detail,
            )

    def _agent_drops(self, dispatch_id: str) -> None:
        for held in (self.agent_active, self.agent_scheduled):
            for asset, d in list(held.items()):
                if d == dispatch_id:
                    del held[asset]

    async def _replies(self, cmd: SetpointCommand, states: list[str]) -> None:
        for state in states:
            applied = cmd.p_kw if state in ("applied", "completed") else None
            await self.ack(cmd.dispatch_id, state, asset_id=cmd.asset_id, applied_p_kw=applied)

    def _spawn(self, coro: Awaitable[None]) -> None:
        task = asyncio.ensure_future(coro)
        self._tasks.add(task)
        task.add_done_callback(self._tasks.discard)

    async def drain(self) -> None:
        if self._tasks:
            await asyncio.gather(*self._tasks, return_exceptions=True)

    # ------------------------------------------------------------ looking
    def called(self, name: str, dispatch_id: str | None = None) -> list[Call]:
        out = [c for c in self.calls if c.name == name]
        if dispatch_id is not None:
            out = [c for c in out if getattr(c.arg, "dispatch_id", None) == dispatch_id]
        return out

    def states(self, dispatch_id: str) -> list[DispatchState]:
        return [r.to_state for r in self.transitions.get(dispatch_id, [])]

    async def wait_until(self, what: str, check: Callable[[], bool]) -> None:
        # re-checked after every activity call
        await wait_for(check, WAIT_S, what, wake=self._changed)

    async def wait_state(self, dispatch_id: str, state: DispatchState) -> None:
        await wait_for(
            lambda: state in self.states(dispatch_id),
            WAIT_S,
            lambda: f"{dispatch_id} to reach {state} (has {self.states(dispatch_id)})",
            wake=self._changed,
        )


@dataclass
class Harness:
    env: WorkflowEnvironment
    backend: FakeBackend

    @property
    def client(self) -> Client:
        return self.env.client

    async def now(self) -> datetime:
        """The server's clock (virtual on the time-skipping server)."""
        if self.env.supports_time_skipping:
            return (await self.env.get_current_time()).astimezone(UTC)
        return datetime.now(UTC)

    async def dispatch_input(
        self,
        *,
        asset_id: str | None = "bess-1",
        site_id: str | None = None,
        p_kw: float = 50.0,
        duration_s: int = 5,
        deliver_s: float = 5.0,
        ack_timeout_s: float = 2.0,
        submitted_by: str = "op-alice",
    ) -> DispatchInput:
        start = await self.now()
        return DispatchInput(
            dispatch_id=f"dsp-{uuid4()}",
            kind="site" if asset_id is None else "asset",
            p_kw=p_kw,
            duration_s=duration_s,
            start_at=start,
            end_at=start + timedelta(seconds=duration_s),
            deliver_by=start + timedelta(seconds=deliver_s),
            asset_id=asset_id,
            site_id=site_id,
            submitted_by=submitted_by,
            ack_timeout_s=ack_timeout_s,
        )

    started: list[WorkflowHandle[Any, Any]] = field(default_factory=list)

    async def start(self, inp: DispatchInput) -> WorkflowHandle[Any, Any]:
        """Start it the way the API does: id = dispatch id, with its search attributes."""
        site = inp.asset_id is None
        pairs = search_attributes(inp)
        handle = await self.client.start_workflow(
            SiteDispatchWorkflow.run if site else DispatchWorkflow.run,
            inp,
            id=inp.dispatch_id,
            task_queue=self.backend.task_queue,
            search_attributes=TypedSearchAttributes(pairs),
            # as the API: the window, an hour, and the wait for a scheduled start
            execution_timeout=inp.end_at
            - inp.start_at
            + timedelta(hours=1)
            + max(inp.start_at - await self.now(), timedelta(0)),
        )
        self.started.append(handle)
        return handle

    async def result(self, handle: WorkflowHandle[Any, Any]) -> DispatchResult:
        """How the dispatch ended (whatever its execution status: outcome-status),
        bounded. A workflow task that fails (the workflow code raised: it is wedged,
        retrying that task forever) fails the test at once.

        On the time-skipping server, time runs fast only until the dispatch's end is
        recorded: a cancelled one then waits for its own cancel request (no timer), and
        a server still skipping would jump over the other dispatches' windows."""
        if not self.env.supports_time_skipping:
            return await self._result(handle)
        if not self.backend._ended(handle.id):
            # Locked again on leaving the block; never cancelled inside the unlock call.
            async with self.env.time_skipping_unlocked():  # type: ignore[attr-defined]
                with contextlib.suppress(TimeoutError):
                    await asyncio.wait_for(self._recorded_end(handle.id), WAIT_S)
        with self.env.auto_time_skipping_disabled():
            return await self._result(handle)

    async def _recorded_end(self, dispatch_id: str) -> None:
        b = self.backend
        while not b._ended(dispatch_id):
            b._changed.clear()
            await b._changed.wait()

    async def _result(self, handle: WorkflowHandle[Any, Any]) -> DispatchResult:
        result = asyncio.ensure_future(dispatch_result(handle))
        wedged = asyncio.ensure_future(self.task_failure(handle))
        try:
            done, _ = await asyncio.wait(
                {result, wedged}, timeout=WAIT_S, return_when=asyncio.FIRST_COMPLETED
            )
        finally:
            wedged.cancel()
            if not result.done():
                result.cancel()  # also when this wait is cancelled: time skipping locks again
        if result in done:
            return result.result()
        if wedged in done:
            pytest.fail(f"{handle.id} is wedged: its workflow task failed: {wedged.result()}")
        pytest.fail(f"{handle.id} did not finish in {WAIT_S} s")

    @staticmethod
    async def task_failure(handle: WorkflowHandle[Any, Any]) -> str:
        """Wait for a failed workflow task in the history; its failure message."""
        while True:
            async for event in handle.fetch_history_events():
                if event.HasField("workflow_task_failed_event_attributes"):
                    attrs = event.workflow_task_failed_event_attributes
                    if attrs.cause != UNHANDLED_COMMAND:  # a race with a signal, retried
                        return attrs.failure.message
            await asyncio.sleep(0.1)

    async def terminate_running(self) -> None:
        """Leave nothing running on the shared dev server (e.g. after a failed assertion)."""
        for handle in self.started:
            with contextlib.suppress(RPCError):
                desc = await handle.describe()
                if desc.status == WorkflowExecutionStatus.RUNNING:
                    await handle.terminate("test over")


async def _register_search_attributes(env: WorkflowEnvironment) -> None:
    """The Java time-skipping server rejects unknown custom search attributes (the
    workflow task then retries forever), and start_time_skipping cannot declare them."""
    keyword = IndexedValueType.INDEXED_VALUE_TYPE_KEYWORD
    await env.client.operator_service.add_search_attributes(
        AddSearchAttributesRequest(
            namespace=env.client.namespace,
            search_attributes={key.name: keyword for key in SEARCH_ATTRIBUTES},
        )
    )


@asynccontextmanager
async def _running(env: WorkflowEnvironment, task_queue: str) -> AsyncIterator[Harness]:
    backend = FakeBackend(env.client, task_queue, f"{task_queue}-headend")
    harness = Harness(env, backend)
    shared = Worker(
        env.client,
        task_queue=task_queue,
        workflows=[DispatchWorkflow, SiteDispatchWorkflow],
        activities=backend.shared_activities(),
    )
    headend = Worker(
        env.client, task_queue=backend.headend_queue, activities=backend.headend_activities()
    )
    async with shared, headend:
        try:
            yield harness
        finally:
            await backend.drain()
            await harness.terminate_running()


@pytest_asyncio.fixture(loop_scope="session")
async def dev(temporal_env: WorkflowEnvironment, task_queue: str) -> AsyncIterator[Harness]:
    """Workers on the dev server (real clock, real visibility)."""
    async with _running(temporal_env, task_queue) as harness:
        yield harness


@pytest_asyncio.fixture(loop_scope="session")
async def skipping(
    temporal_time_skipping_env: WorkflowEnvironment, task_queue: str
) -> AsyncIterator[Harness]:
    """Workers on the time-skipping server, its search attributes registered."""
    await _register_search_attributes(temporal_time_skipping_env)
    async with _running(temporal_time_skipping_env, task_queue) as harness:
        yield harness


RecordHistories = Callable[..., Awaitable[None]]


@pytest.fixture
def record_histories() -> RecordHistories:
    """``await record_histories(name=handle, ...)`` saves each closed workflow's history as
    ``histories/<name>.json`` for the replay test, only when GRIDPILOT_RECORD_HISTORIES=1."""

    async def record(**handles: WorkflowHandle[Any, Any]) -> None:
        if os.environ.get(RECORD_ENV) != "1":
            return
        HISTORIES_DIR.mkdir(exist_ok=True)
        for name, handle in handles.items():
            history = await handle.fetch_history()
            (HISTORIES_DIR / f"{name}.json").write_text(history.to_json() + "\n")

    return record
