"""Agent DispatchAcks → signals to the dispatch workflows.

A signal only needs the Temporal server, not a running worker, so the stream
never blocks on workers that are deploying or down. When the Temporal server
itself is unreachable, an ack is not lost and the agent's stream (its
telemetry) does not wait for Temporal: the ack waits in a bounded queue, in
the order it came, and one task signals the queue again with backoff until
Temporal answers. An ack for a workflow that has closed is a late ack: it
goes to ``on_late`` (kept for the record). Once an ack is delivered the
caller's ``done`` runs: the servicer then confirms it to the agent, which
keeps every ack until then (the queue lives in memory; a headend that dies
leaves the agent to send it again).
"""

from __future__ import annotations

import asyncio
import random
import time
from collections import deque
from collections.abc import Awaitable, Callable

import structlog
from temporalio.client import Client
from temporalio.service import RPCError, RPCStatusCode

from gridpilot.workflows.constants import SIGNAL_AGENT_ACK
from gridpilot.workflows.models import AgentAck

log = structlog.get_logger(__name__)

Done = Callable[[], None]
MAX_WAITING = 10_000
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
        self._waiting: deque[tuple[AgentAck, Done]] = deque()
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
        last_head: tuple[AgentAck, Done] | None = None
        while True:
            await self._wake.wait()
            while self._waiting:
                head = self._waiting[0]
                if head is not last_head:  # (a full queue may drop the head meanwhile)
                    last_head, not_found_since = head, None
                ack, done = head
                give_up = (
                    not_found_since is not None
                    and time.monotonic() - not_found_since > self._give_up_s
                )
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
        handle = self._client.get_workflow_handle(ack.dispatch_id)
        try:
            await handle.signal(SIGNAL_AGENT_ACK, ack)
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
            lost, _ = self._waiting.popleft()
            self.dropped += 1
            log.error(
                "dispatch_ack_dropped",
                dispatch_id=lost.dispatch_id,
                state=lost.state,
                reason="too many acks waiting for Temporal",
                max_waiting=self._max,
            )
        self._waiting.append((ack, done))
        self._wake.set()

    def _unavailable(self, exc: RPCError) -> None:
        if self.temporal_available:
            self.temporal_available = False
            log.warning(
                "temporal_unreachable_acks_wait",
                error=exc.message,
                note="acks wait in order and are signalled again when Temporal answers",
            )
