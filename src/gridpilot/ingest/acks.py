"""Agent DispatchAcks → signals to the dispatch workflows.

The stream's side (:class:`AckIntake`): an ack is taken only for a dispatch
of an asset the gateway speaks for (per the database, not the message), and
each one is confirmed to the agent (``DispatchAckReceived``) once it is
delivered, kept as late, or refused; until then the agent keeps it and
writes it again on each new session.

The delivery (:class:`TemporalAckSink`): a signal only needs the Temporal
server, not a running worker, so the stream never blocks on workers that are
deploying or down. When the Temporal server itself is unreachable, an ack is
not lost and the agent's stream (its telemetry) does not wait for Temporal:
the ack waits in a bounded queue, in the order it came, and one task signals
the queue again with backoff until Temporal answers. An ack for a workflow
that has closed is a late ack: it goes to ``on_late`` (kept for the record,
:func:`late_ack_recorder`). Once an ack is delivered the caller's ``done``
runs (the queue lives in memory; a headend that dies leaves the agent to
send it again).
"""

from __future__ import annotations

import asyncio
import contextlib
import random
import time
from collections import deque
from collections.abc import Awaitable, Callable
from datetime import UTC, datetime

import structlog
from opentelemetry import context as otel_context
from temporalio.client import Client
from temporalio.service import RPCError, RPCStatusCode

from gridpilot.core.sessions import EndReason
from gridpilot.ops import spans
from gridpilot.schema.db import DATABASE_UNAVAILABLE
from gridpilot.store.dispatches import DispatchStore
from gridpilot.wire import dispatch as wire_dispatch
from gridpilot.wire.codes import ack_state_name
from gridpilot.wire.messages import DispatchAck
from gridpilot.workflows.dispatch import DispatchWorkflow
from gridpilot.workflows.models import AgentAck

from .guard import GatewayAuthority, refuse_gateway
from .sessions import AgentSession, SessionClosed

log = structlog.get_logger(__name__)

Done = Callable[[], None]
# Signals an ack to its dispatch workflow, then calls back (TemporalAckSink).
AckSink = Callable[[AgentAck, Done], Awaitable[None]]
MAX_WAITING = 10_000
# Acks taken at once on a replica (each a lookup and a signal); past that, the
# stream that brings the next one waits (back-pressure on its agent).
ACKS_IN_FLIGHT = 64
RETRY_MAX_S = 10.0
# How long an ack whose workflow Temporal says it cannot find is tried again
# before it is kept as late (see _deliver).
NOT_FOUND_GIVE_UP_S = 120.0
# Temporal not (yet) answering: worth another try. Anything else is final.
TRANSIENT = frozenset(
    {
        RPCStatusCode.UNAVAILABLE,
        RPCStatusCode.DEADLINE_EXCEEDED,
        RPCStatusCode.RESOURCE_EXHAUSTED,
        RPCStatusCode.ABORTED,
        RPCStatusCode.INTERNAL,
        RPCStatusCode.UNKNOWN,
    }
)


class AckIntake:
    def __init__(
        self,
        dispatches: DispatchStore,
        sink: AckSink,
        authority: GatewayAuthority | None = None,
    ) -> None:
        self._dispatches = dispatches
        self._sink = sink
        self._late = late_ack_recorder(dispatches)
        self._authority = authority
        self._slots = asyncio.Semaphore(ACKS_IN_FLIGHT)
        self._lanes: dict[str, asyncio.Task[None]] = {}  # per dispatch, its latest ack's
        self._tasks: set[asyncio.Task[None]] = set()

    async def take_soon(self, session: AgentSession, raw: DispatchAck) -> None:
        """``take`` in the background, so the stream's next message (another
        dispatch's ack) does not wait for this one's lookup and signal: a
        site's hundred children are acked together, not one after another.
        The acks of one dispatch are taken in the order they came."""
        await self._slots.acquire()
        task = asyncio.create_task(self._take_after(self._lanes.get(raw.dispatch_id), session, raw))
        self._lanes[raw.dispatch_id] = task
        self._tasks.add(task)
        task.add_done_callback(lambda t: self._taken(raw.dispatch_id, t))

    async def _take_after(
        self, before: asyncio.Task[None] | None, session: AgentSession, raw: DispatchAck
    ) -> None:
        try:
            if before is not None:
                await asyncio.wait([before])  # its outcome is its own
            await self.take(session, raw)
        except SessionClosed:
            pass  # the session ended unconfirmed: the agent writes it again
        except Exception:  # a bug: show it; unconfirmed, the agent writes it again
            log.exception("dispatch_ack_not_taken", dispatch_id=raw.dispatch_id)
        finally:
            self._slots.release()

    def _taken(self, dispatch_id: str, task: asyncio.Task[None]) -> None:
        self._tasks.discard(task)
        if self._lanes.get(dispatch_id) is task:
            del self._lanes[dispatch_id]

    async def take(self, session: AgentSession, raw: DispatchAck) -> None:
        """Take the agent's ack: signal it to its workflow (or keep it as a late
        ack), then confirm it (DispatchAckReceived), so the agent stops
        re-sending it. With the database down the stream ends unconfirmed.
        Traced in the dispatch's trace: the ack carries the agent's span."""
        attributes = {
            "gridpilot.dispatch_id": raw.dispatch_id,
            "gridpilot.gateway_id": session.gateway_id,
            "gridpilot.ack_state": ack_state_name(raw.state) or str(raw.state),
        }
        with spans.span(
            "headend.dispatch_ack", raw.trace_context, attributes, spans.SpanKind.CONSUMER
        ):
            log.info(
                "dispatch_ack_received",
                dispatch_id=raw.dispatch_id,
                state=attributes["gridpilot.ack_state"],
                gateway=session.gateway_id,
            )
            await self._take(session, raw)

    async def _take(self, session: AgentSession, raw: DispatchAck) -> None:
        problem = wire_dispatch.ack_problem(raw)
        if problem is not None:  # refused, or it is re-sent forever
            log.warning("bad_ack_ignored", gateway=session.gateway_id, problem=problem)
            _received(session, raw, refused=problem)
            return
        # The dispatch's asset (from the database, not the message) must be
        # one this gateway speaks for; otherwise nothing reaches the workflow.
        try:
            target = (
                await self._dispatches.dispatch_target(raw.dispatch_id) if raw.dispatch_id else None
            )
        except DATABASE_UNAVAILABLE:
            # Not taken, not confirmed: end the stream, so the agent writes it
            # again on its next session (once the database answers again).
            log.warning("ack_not_taken", gateway=session.gateway_id, reason="database unavailable")
            session.close(EndReason.DATABASE_UNAVAILABLE)
            raise SessionClosed("database unavailable") from None
        owner = target.asset_id if target is not None else None
        if owner not in session.asset_ids or (raw.asset_id and raw.asset_id != owner):
            why = (
                f"ack for dispatch {raw.dispatch_id!r} (asset {owner or raw.asset_id!r}), "
                "which is not this gateway's"
            )
            _received(session, raw, refused=why)
            if f"ack:{raw.dispatch_id}" in session.foreign_audited:
                return
            session.foreign_audited.add(f"ack:{raw.dispatch_id}")
            await refuse_gateway(
                self._authority,
                session.gateway_id,
                "dispatch_ack.foreign_refused",
                raw.dispatch_id,
                why,
            )
            return
        ack = wire_dispatch.agent_ack(raw, session.gateway_id, datetime.now(UTC))
        if ack is None:
            log.warning("bad_ack_ignored", gateway=session.gateway_id, ack=str(raw))
            _received(session, raw, refused="dispatch_ack.state is not a known state")
            return
        assert target is not None  # an unknown dispatch has no owner: refused above
        if target.state.terminal:
            await self._late(ack)
            _received(session, raw)
        else:  # confirmed once Temporal has it (it may wait for Temporal)
            await self._sink(ack, lambda: _received(session, raw))


def _received(session: AgentSession, raw: DispatchAck, refused: str = "") -> None:
    """Tell the agent this ack was taken (or refused): it stops re-sending it.
    A closed session is no matter: the agent re-sends it on its next one."""
    with contextlib.suppress(SessionClosed):
        session.send_nowait(wire_dispatch.ack_received(raw, refused))


def late_ack_recorder(store: DispatchStore) -> Callable[[AgentAck], Awaitable[None]]:
    """Keeps an ack that came after its dispatch ended: it changes nothing, but
    belongs in the record (lost, and logged, only while the database is down)."""

    async def record(ack: AgentAck) -> None:
        log.info(
            "late_dispatch_ack",
            dispatch_id=ack.dispatch_id,
            state=ack.state,
            reason=ack.reason,
            gateway=ack.gateway_id,
        )
        try:
            await store.record_late_ack(ack)
        except DATABASE_UNAVAILABLE:
            log.warning("late_dispatch_ack_not_kept", dispatch_id=ack.dispatch_id)

    return record


def retry_delay(attempt: int, max_s: float, rng: random.Random | None = None) -> float:
    """Seconds before the waiting head is signalled again: jittered, doubling
    from 0.5 s to ``max_s``. The exponent is capped: ``attempt`` counts every
    failure of an outage, and past ~1000 (an hour or so with the 10 s cap)
    ``2**attempt`` no longer fits a float, which would end the ack task and
    with it the headend."""
    return (rng or random).uniform(0.5, min(max_s, 0.5 * 2 ** min(attempt, 16)))


class TemporalAckSink:
    def __init__(
        self,
        client: Client,
        on_late: Callable[[AgentAck], Awaitable[None]],
        *,
        max_waiting: int = MAX_WAITING,
        retry_max_s: float = RETRY_MAX_S,
        give_up_s: float = NOT_FOUND_GIVE_UP_S,
    ) -> None:
        self._client = client
        self._on_late = on_late
        self._max = max_waiting
        self._retry_max_s = retry_max_s
        self._give_up_s = give_up_s
        # Each with the trace context it came in: signalled later, still its trace.
        self._waiting: deque[tuple[AgentAck, Done, otel_context.Context]] = deque()
        self._wake = asyncio.Event()
        self.dropped = 0  # acks dropped because the queue was full (oldest first)
        self.temporal_available = True

    @property
    def waiting(self) -> int:
        return len(self._waiting)

    async def __call__(self, ack: AgentAck, done: Done = lambda: None) -> None:
        """Signal now if nothing waits (the usual case); otherwise, or when
        Temporal does not answer, queue it behind what waits. ``done()`` is
        called once the ack is delivered (or kept as late, or refused for
        good); never for one dropped from a full queue."""
        if not self._waiting:
            try:
                await self._deliver(ack)
            except RPCError as exc:
                self._unavailable(exc)
            else:
                done()
                return
        self._queue(ack, done)

    async def run(self) -> None:
        """Signal what waits, oldest first, until it is all delivered; forever."""
        attempt = 0
        not_found_since: float | None = None  # the head's first "not found"
        last_head: tuple[AgentAck, Done, otel_context.Context] | None = None
        while True:
            await self._wake.wait()
            while self._waiting:
                head = self._waiting[0]
                if head is not last_head:  # (a full queue may drop the head meanwhile)
                    last_head, not_found_since = head, None
                ack, done, trace_context = head
                give_up = (
                    not_found_since is not None
                    and time.monotonic() - not_found_since > self._give_up_s
                )
                token = otel_context.attach(trace_context)
                try:
                    await self._deliver(ack, give_up=give_up)
                    done()
                except RPCError as exc:
                    if exc.status == RPCStatusCode.NOT_FOUND and not_found_since is None:
                        not_found_since = time.monotonic()
                    self._unavailable(exc)
                    attempt += 1
                    await asyncio.sleep(retry_delay(attempt, self._retry_max_s))
                    continue
                except Exception:  # a bug (e.g. the ack cannot be encoded): show it, go on
                    log.exception("dispatch_ack_not_delivered", dispatch_id=ack.dispatch_id)
                finally:
                    otel_context.detach(token)
                if self._waiting and self._waiting[0] is head:
                    self._waiting.popleft()
                if not self.temporal_available:
                    self.temporal_available = True
                    log.info("temporal_reachable_again", acks_waiting=len(self._waiting))
                attempt = 0
            self._wake.clear()

    async def _deliver(self, ack: AgentAck, give_up: bool = False) -> None:
        """Signal the ack; raises RPCError only when worth trying again.

        NOT_FOUND means a closed workflow (a late ack) only when Temporal says
        so: a Temporal that has just restarted answers NOT_FOUND for its
        namespace, or even the workflow, for a while. Those are tried again,
        until ``give_up`` (the workflow is really gone: kept as late)."""
        handle = self._client.get_workflow_handle_for(DispatchWorkflow.run, ack.dispatch_id)
        try:
            await handle.signal(DispatchWorkflow.agent_ack, ack)
        except RPCError as exc:
            if exc.status in TRANSIENT:
                raise
            if exc.status == RPCStatusCode.NOT_FOUND:
                if not give_up and "already completed" not in exc.message:
                    log.info(
                        "dispatch_ack_workflow_not_found_yet",
                        dispatch_id=ack.dispatch_id,
                        error=exc.message,
                        note="e.g. Temporal just restarted; tried again",
                    )
                    raise
                log.info(
                    "dispatch_ack_workflow_closed", dispatch_id=ack.dispatch_id, error=exc.message
                )
                await self._on_late(ack)  # closed: the agent spoke after the end
                return
            log.error(
                "dispatch_ack_refused_by_temporal",
                dispatch_id=ack.dispatch_id,
                state=ack.state,
                status=exc.status.name,
                error=exc.message,
            )

    def _queue(self, ack: AgentAck, done: Done) -> None:
        if len(self._waiting) >= self._max:
            lost, _, _ = self._waiting.popleft()
            self.dropped += 1
            log.error(
                "dispatch_ack_dropped",
                dispatch_id=lost.dispatch_id,
                state=lost.state,
                reason="too many acks waiting for Temporal",
                max_waiting=self._max,
            )
        self._waiting.append((ack, done, otel_context.get_current()))
        self._wake.set()

    def _unavailable(self, exc: RPCError) -> None:
        if self.temporal_available:
            self.temporal_available = False
            log.warning(
                "temporal_unreachable_acks_wait",
                error=exc.message,
                note="acks wait in order and are signalled again when Temporal answers",
            )
