"""AckIntake.take_soon: a stream's acks are taken in the background, those of
different dispatches at once, those of one dispatch in the order they came,
and at most ACKS_IN_FLIGHT at a time. The store and the sink are faked at
their boundaries (a lookup, a signal)."""

from __future__ import annotations

import asyncio
from typing import Any, cast

from gp_testing import wait_for

from gridpilot.core.lifecycle import DispatchState
from gridpilot.ingest import acks
from gridpilot.ingest.acks import AckIntake
from gridpilot.ingest.sessions import AgentSession
from gridpilot.schema.pb import agent_pb2 as pb
from gridpilot.store.dispatches import DispatchStore, DispatchTarget
from gridpilot.workflows.models import AgentAck


class Store:
    async def dispatch_target(self, dispatch_id: str) -> DispatchTarget:
        return DispatchTarget(f"bess-{dispatch_id.split('-')[1]}", DispatchState.SENT)


class Sink:
    """Holds each signal until released; notes what was signalled, in order."""

    def __init__(self) -> None:
        self.signalled: list[tuple[str, str]] = []
        self.holding: dict[str, asyncio.Event] = {}

    async def __call__(self, ack: AgentAck, done: Any) -> None:
        gate = self.holding.setdefault(f"{ack.dispatch_id}/{ack.state}", asyncio.Event())
        await gate.wait()
        self.signalled.append((ack.dispatch_id, str(ack.state)))
        done()

    def release(self, dispatch_id: str, state: str) -> None:
        self.holding.setdefault(f"{dispatch_id}/{state}", asyncio.Event()).set()


def _session(n: int) -> AgentSession:
    assets = frozenset(f"bess-{i}" for i in range(n))
    return AgentSession("s-1", "gw-1", "site-1", "peer", assets)


def _ack(i: int, state: int) -> pb.DispatchAck:
    return pb.DispatchAck(dispatch_id=f"dsp-{i}", asset_id=f"bess-{i}", state=state)


async def test_acks_of_different_dispatches_are_taken_at_once_each_dispatchs_in_order() -> None:
    sink = Sink()
    intake = AckIntake(cast(DispatchStore, Store()), sink)
    session = _session(3)
    for i in range(3):
        await intake.take_soon(session, _ack(i, pb.ACK_STATE_ACCEPTED))
        await intake.take_soon(session, _ack(i, pb.ACK_STATE_APPLIED))
    # The stream went on reading while nothing was signalled yet.
    await wait_for(lambda: len(sink.holding) == 3, 5, "the first ack of each dispatch at the sink")
    assert all(key.endswith("/accepted") for key in sink.holding)  # not an APPLIED first
    sink.release("dsp-2", "applied")  # its ACCEPTED is still held: APPLIED must wait
    sink.release("dsp-2", "accepted")
    sink.release("dsp-1", "accepted")
    await wait_for(lambda: len(sink.signalled) == 3, 5, "dsp-2's two acks and dsp-1's first")
    assert [s for d, s in sink.signalled if d == "dsp-2"] == ["accepted", "applied"]
    assert ("dsp-1", "accepted") in sink.signalled
    for i in range(3):
        for state in ("accepted", "applied"):
            sink.release(f"dsp-{i}", state)
    await wait_for(lambda: len(sink.signalled) == 6, 5, "every ack signalled")
    for i in range(3):
        mine = [s for d, s in sink.signalled if d == f"dsp-{i}"]
        assert mine == ["accepted", "applied"]
    # Each one confirmed to the agent, and no lane left behind.
    received = [session.outbox.get_nowait() for _ in range(6)]
    assert all(m is not None and m.WhichOneof("body") == "dispatch_ack_received" for m in received)
    await wait_for(lambda: not intake._lanes and not intake._tasks, 5, "lanes emptied")


async def test_past_the_bound_the_stream_waits_for_a_slot(monkeypatch: Any) -> None:
    monkeypatch.setattr(acks, "ACKS_IN_FLIGHT", 2)
    sink = Sink()
    intake = AckIntake(cast(DispatchStore, Store()), sink)
    session = _session(3)
    await intake.take_soon(session, _ack(0, pb.ACK_STATE_ACCEPTED))
    await intake.take_soon(session, _ack(1, pb.ACK_STATE_ACCEPTED))
    third = asyncio.create_task(intake.take_soon(session, _ack(2, pb.ACK_STATE_ACCEPTED)))
    await asyncio.sleep(0.1)
    assert not third.done()  # the read loop is held: back-pressure on the agent
    sink.release("dsp-0", "accepted")
    await asyncio.wait_for(third, 5)
    for i in (1, 2):
        sink.release(f"dsp-{i}", "accepted")
    await wait_for(lambda: len(sink.signalled) == 3, 5, "every ack signalled")
