"""An agent that says nothing for GRIDPILOT_AGENT_SILENCE_S is ended as
unresponsive; only the wait for the agent counts, not the headend's own
backpressure; and a session's recorded end reason is the true one."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from typing import Any

from gridpilot.core.sessions import EndReason
from gridpilot.ingest.servicer import AgentGatewayServicer
from gridpilot.ingest.sessions import AgentSession, SessionRegistry
from gridpilot.ingest.touches import TouchBatcher
from gridpilot.schema.pb import agent_pb2 as pb

SILENCE_S = 0.4


class Store:
    def __init__(self) -> None:
        self.touched = 0

    async def touch_many(self, touches: list[Any]) -> set[str]:
        self.touched += len(touches)
        return {t.session_id for t in touches}


class SlowPipeline:
    """The ingest queue full for longer than the silence setting."""

    def __init__(self) -> None:
        self.waited: list[AgentSession] = []
        self.closed_while_waiting: list[bool] = []

    async def put(self, batch: Any) -> None:
        await asyncio.sleep(SILENCE_S * 3)
        self.closed_while_waiting += [s.closed for s in self.waited]


def _servicer(store: Store, pipeline: SlowPipeline | None = None) -> AgentGatewayServicer:
    async def no_acks(*_: Any) -> None:
        return None

    servicer = AgentGatewayServicer(
        store,  # type: ignore[arg-type]
        store,  # type: ignore[arg-type]
        SessionRegistry(),
        pipeline or SlowPipeline(),  # type: ignore[arg-type]
        no_acks,
        "headend-1",
        "queue-1",
        silence_s=SILENCE_S,
    )
    # Each heartbeat its own write, so the store counts them (batching: test_ingest_touches).
    servicer._touches = TouchBatcher(store, window_s=0)  # type: ignore[arg-type]
    return servicer


def _session() -> AgentSession:
    return AgentSession("s-1", "gw-1", "site-1", "peer", frozenset({"bess-1"}))


async def _agent(messages: list[pb.AgentMessage], every_s: float) -> AsyncIterator[Any]:
    """Sends these messages, then hangs (alive, silent)."""
    for msg in messages:
        await asyncio.sleep(every_s)
        yield msg
    await asyncio.Event().wait()


def _heartbeat() -> pb.AgentMessage:
    return pb.AgentMessage(heartbeat=pb.Heartbeat())


async def test_an_agent_that_stops_sending_is_ended_unresponsive() -> None:
    store, session = Store(), _session()
    servicer = _servicer(store)
    # Heartbeats at a quarter of the setting: never silent long enough.
    beats = [_heartbeat() for _ in range(4)]
    await asyncio.wait_for(servicer._read(_agent(beats, SILENCE_S / 4), session), 5)
    assert store.touched == 4  # it heard every heartbeat, then the silence
    assert session.close_reason is EndReason.UNRESPONSIVE
    assert session.end_reason is EndReason.UNRESPONSIVE


async def test_time_spent_waiting_for_the_ingest_queue_is_not_the_agents_silence() -> None:
    session = _session()
    batch = pb.AgentMessage(
        telemetry=pb.TelemetryBatch(batch_seq=1, samples=[pb.TelemetrySample(asset_id="bess-1")])
    )
    pipeline = SlowPipeline()
    pipeline.waited.append(session)
    # The batch waits 3x the setting in the queue: the session outlives it,
    # then the agent's own silence ends it.
    await asyncio.wait_for(_servicer(Store(), pipeline)._read(_agent([batch], 0), session), 5)
    assert pipeline.closed_while_waiting == [False]
    assert session.close_reason is EndReason.UNRESPONSIVE


async def test_an_agent_ending_its_stream_is_closed_and_a_cut_one_is_network() -> None:
    async def ends() -> AsyncIterator[Any]:
        yield _heartbeat()

    closed = _session()
    await _servicer(Store())._read(ends(), closed)
    assert closed.end_reason is EndReason.CLOSED

    # gRPC shows a cut connection to the reader as an end of stream too; the
    # handler being cancelled after it tells them apart.
    cut = _session()
    await _servicer(Store())._read(ends(), cut)
    cut.cut = True
    assert cut.end_reason is EndReason.NETWORK


async def test_an_end_the_headend_decided_is_kept_when_the_call_is_then_cut() -> None:
    session = _session()
    session.close(EndReason.SUPERSEDED)
    session.cut = True
    assert session.end_reason is EndReason.SUPERSEDED
    session.close(EndReason.UNRESPONSIVE)  # the first reason stands
    assert session.end_reason is EndReason.SUPERSEDED
