"""The real EdgeAgent against a real grpc.aio server on 127.0.0.1.

The server is a small fake AgentGateway: it records what the agent sends,
answers Hello with Welcome, and lets a test push Setpoint/Release/TelemetryAck
or drop the connection.
"""

from __future__ import annotations

import asyncio
import random
from collections.abc import AsyncIterator, Callable
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import grpc
import pytest
from gp_testing import wait_for as eventually

from gridpilot import __version__
from gridpilot.core.lifecycle import ReasonCode
from gridpilot.edge_agent import EdgeAgent, SiteConfig
from gridpilot.edge_agent.adapters import DeviceAdapter, DeviceWriteFailed, build_adapter
from gridpilot.edge_agent.adapters.simulated import SimulatedBattery
from gridpilot.edge_agent.clock import SystemClock
from gridpilot.edge_agent.control.acks import Ack, AckState, LocalReport
from gridpilot.edge_agent.control.commands import Lease
from gridpilot.edge_agent.control.journal import ControlJournal
from gridpilot.edge_agent.control.local_control import Source
from gridpilot.edge_agent.runtime import buffer_path
from gridpilot.schema.pb import agent_pb2 as pb
from gridpilot.schema.pb import agent_pb2_grpc

pytestmark = pytest.mark.integration

_DROP = object()


class FakeGateway(agent_pb2_grpc.AgentGatewayServicer):
    def __init__(self) -> None:
        self.received: list[tuple[int, pb.AgentMessage]] = []  # (session, message)
        self.sessions = 0
        self.refuse = False
        self.auto_ack = False
        self.confirm_acks = True  # answer each DispatchAck, as the headend does
        self.last_acked_batch_seq = 0
        self.acked: list[int] = []  # batch_seqs acked, in order
        self._queue: asyncio.Queue[Any] = asyncio.Queue()

    async def Connect(
        self, request_iterator: AsyncIterator[pb.AgentMessage], context: Any
    ) -> AsyncIterator[pb.HeadendMessage]:
        if self.refuse:
            await context.abort(grpc.StatusCode.UNAVAILABLE, "refusing connections")
        first = await anext(aiter(request_iterator))
        self.sessions += 1
        session = self.sessions
        self.received.append((session, first))
        queue: asyncio.Queue[Any] = asyncio.Queue()
        self._queue = queue

        async def read() -> None:
            async for message in request_iterator:
                self.received.append((session, message))
                if self.confirm_acks and message.WhichOneof("body") == "dispatch_ack":
                    ack = message.dispatch_ack
                    received = pb.DispatchAckReceived(
                        dispatch_id=ack.dispatch_id, state=ack.state, time=ack.time
                    )
                    queue.put_nowait(pb.HeadendMessage(dispatch_ack_received=received))
                if self.auto_ack and message.WhichOneof("body") == "telemetry":
                    seq = message.telemetry.batch_seq
                    self.acked.append(seq)
                    queue.put_nowait(
                        pb.HeadendMessage(telemetry_ack=pb.TelemetryAck(batch_seq=seq))
                    )

        reader = asyncio.create_task(read())
        try:
            yield pb.HeadendMessage(
                welcome=pb.Welcome(
                    session_id=f"s{session}",
                    server_time=datetime.now(UTC),
                    last_acked_batch_seq=self.last_acked_batch_seq,
                )
            )
            while (item := await queue.get()) is not _DROP:
                yield item
        finally:
            reader.cancel()

    # -- what tests use

    def send(self, **body: Any) -> None:
        self._queue.put_nowait(pb.HeadendMessage(**body))

    def drop(self) -> None:
        self._queue.put_nowait(_DROP)

    def of(self, body: str, session: int | None = None) -> list[Any]:
        return [
            getattr(m, body)
            for s, m in self.received
            if m.WhichOneof("body") == body and (session is None or s == session)
        ]

    def acks(self, dispatch_id: str) -> list[tuple[str, str]]:
        return [
            (pb.AckState.Name(a.state).removeprefix("ACK_STATE_"), pb.ReasonCode.Name(a.reason))
            for a in self.of("dispatch_ack")
            if a.dispatch_id == dispatch_id
        ]

    def samples(self, asset_id: str) -> list[pb.TelemetrySample]:
        return [s for b in self.of("telemetry") for s in b.samples if s.asset_id == asset_id]


@pytest.fixture
async def gateway() -> AsyncIterator[tuple[FakeGateway, int]]:
    servicer = FakeGateway()
    server = grpc.aio.server()
    agent_pb2_grpc.add_AgentGatewayServicer_to_server(servicer, server)
    port = server.add_insecure_port("127.0.0.1:0")
    await server.start()
    yield servicer, port
    await server.stop(grace=None)


def site_config(port: int, **overrides: Any) -> SiteConfig:
    data: dict[str, Any] = {
        "version": 1,
        "gateway_id": "test-gw",
        "site": {"id": "test-site", "name": "Test Site", "timezone": "UTC"},
        "headend": {"address": f"127.0.0.1:{port}", "insecure": True},
        "telemetry_interval_s": 0.1,
        "heartbeat_interval_s": 0.5,
        "failsafe_timeout_s": 30,
        "assets": [
            {
                "id": "bess",
                "name": "Battery",
                "type": "bess",
                "limits": {"p_min_kw": -250, "p_max_kw": 250},
                "default_p_kw": 0,
                "capacity_kwh": 500,
                "device": {"kind": "simulated", "initial_soc_pct": 50},
            },
            {
                "id": "pv",
                "type": "pv",
                "limits": {"p_min_kw": 0, "p_max_kw": 300},
                "default_p_kw": 300,
                "device": {"kind": "simulated", "min_fraction": 0.5},
            },
            {
                "id": "ev",
                "type": "ev_charger",
                "limits": {"p_min_kw": -22, "p_max_kw": 0},
                "default_p_kw": -22,
                "device": {"kind": "simulated"},
            },
        ],
    }
    data.update(overrides)
    return SiteConfig.model_validate(data)


class Running:
    def __init__(self, agent: EdgeAgent) -> None:
        self.agent = agent
        self.task = asyncio.create_task(agent.run())

    async def stop(self) -> None:
        self.agent.stop()
        await asyncio.wait_for(self.task, 10)


@pytest.fixture
async def start_agent() -> AsyncIterator[Callable[..., Running]]:
    running: list[Running] = []

    def start(config: SiteConfig, **kwargs: Any) -> Running:
        kwargs.setdefault("rng", random.Random(7))
        r = Running(EdgeAgent(config, **kwargs))
        running.append(r)
        return r

    yield start
    for r in running:
        if not r.task.done():
            await r.stop()


Gateway = tuple[FakeGateway, int]
StartAgent = Callable[..., Running]


def setpoint(dispatch_id: str, asset_id: str, p_kw: float, seconds: float, **extra: Any) -> dict:
    now = datetime.now(UTC)
    return {
        "setpoint": pb.Setpoint(
            dispatch_id=dispatch_id,
            asset_id=asset_id,
            p_kw=p_kw,
            start=extra.pop("start", now),
            end=now + timedelta(seconds=seconds),
            **extra,
        )
    }


def battery(run: Running) -> SimulatedBattery:
    adapter = run.agent.adapters["bess"]
    assert isinstance(adapter, SimulatedBattery)
    return adapter


# --------------------------------------------------------------------- tests


async def test_hello_carries_the_three_assets(gateway: Gateway, start_agent: StartAgent) -> None:
    server, port = gateway
    start_agent(site_config(port))
    hello = (await eventually(lambda: server.of("hello")))[0]
    assert (hello.gateway_id, hello.site_id, hello.site_name) == (
        "test-gw",
        "test-site",
        "Test Site",
    )
    assert hello.agent_version == __version__
    assets = {a.asset_id: a for a in hello.assets}
    assert set(assets) == {"bess", "pv", "ev"}
    bess = assets["bess"]
    assert bess.asset_type == pb.ASSET_TYPE_BESS and bess.name == "Battery"
    assert (bess.p_min_kw, bess.p_max_kw, bess.capacity_kwh, bess.default_p_kw) == (
        -250,
        250,
        500,
        0,
    )
    assert assets["pv"].asset_type == pb.ASSET_TYPE_PV and assets["pv"].default_p_kw == 300
    assert assets["ev"].asset_type == pb.ASSET_TYPE_EV_CHARGER and assets["ev"].p_min_kw == -22
    # heartbeats flow too
    await eventually(lambda: server.of("heartbeat"), timeout=3)


async def test_telemetry_is_resent_oldest_first_until_acked(
    gateway: Gateway, start_agent: StartAgent
) -> None:
    server, port = gateway
    run = start_agent(site_config(port))
    await eventually(lambda: len(server.of("telemetry", session=1)) >= 3)
    first = [b.batch_seq for b in server.of("telemetry", session=1)]
    assert first == sorted(set(first))  # strictly increasing
    batch = server.of("telemetry", session=1)[0]
    assert {s.asset_id for s in batch.samples} == {"bess", "pv", "ev"}
    assert batch.samples[0].HasField("ts") and batch.samples[0].details.fields

    server.drop()  # nothing acked: all must come again on the next session
    await eventually(lambda: len(server.of("telemetry", session=2)) >= len(first) + 1)
    second = [b.batch_seq for b in server.of("telemetry", session=2)]
    # the backlog again, oldest first (live batches may take turns with it)
    assert [s for s in second if s <= max(first)] == first
    assert len(second) == len(set(second))

    server.auto_ack = True  # session 3: the backlog comes again and is acked as it arrives
    server.drop()
    await eventually(lambda: set(server.acked) >= set(second))
    await eventually(lambda: len(run.agent.buffer) <= 3)
    acked = set(server.acked)  # all queued before the drop, so the agent saw each ack
    server.drop()
    await eventually(lambda: len(server.of("telemetry", session=4)) >= 2)
    fourth = [b.batch_seq for b in server.of("telemetry", session=4)]
    assert acked.isdisjoint(fourth)  # an acked batch is never sent again


async def test_welcome_last_acked_does_not_free_unacked_batches(
    gateway: Gateway, start_agent: StartAgent
) -> None:
    # Backlog and live batches are interleaved after a reconnect, so a higher
    # stored seq says nothing about lower ones: only TelemetryAck frees a batch.
    server, port = gateway
    start_agent(site_config(port))
    await eventually(lambda: len(server.of("telemetry", session=1)) >= 3)
    first = [b.batch_seq for b in server.of("telemetry", session=1)]
    server.last_acked_batch_seq = max(first)
    server.drop()
    await eventually(lambda: len(server.of("telemetry", session=2)) >= len(first))
    assert set(first) <= {b.batch_seq for b in server.of("telemetry", session=2)}


async def test_batch_seq_keeps_increasing_across_agent_restarts(
    gateway: Gateway, start_agent: StartAgent
) -> None:
    server, port = gateway
    first = start_agent(site_config(port))
    await eventually(lambda: server.of("telemetry"))
    await first.stop()
    last = max(b.batch_seq for b in server.of("telemetry"))
    start_agent(site_config(port))
    await eventually(lambda: server.of("telemetry", session=2))
    assert min(b.batch_seq for b in server.of("telemetry", session=2)) > last


async def test_setpoint_is_accepted_then_applied_and_telemetry_follows(
    gateway: Gateway, start_agent: StartAgent
) -> None:
    server, port = gateway
    run = start_agent(site_config(port))
    await eventually(lambda: server.of("welcome") or server.sessions)
    server.send(**setpoint("d-1", "bess", 100, 30, trace_context={"traceparent": "00-abc-01"}))
    await eventually(lambda: len(server.acks("d-1")) >= 2)
    assert server.acks("d-1") == [
        ("ACCEPTED", "REASON_CODE_UNSPECIFIED"),
        ("APPLIED", "REASON_CODE_UNSPECIFIED"),
    ]
    applied = [a for a in server.of("dispatch_ack") if a.dispatch_id == "d-1"][1]
    assert applied.applied_p_kw == 100 and applied.HasField("applied_p_kw")
    assert applied.asset_id == "bess" and applied.HasField("time")
    assert dict(applied.trace_context) == {"traceparent": "00-abc-01"}
    applied_at = applied.time.ToDatetime(tzinfo=UTC)

    def fresh_bess() -> list[pb.TelemetrySample]:
        return [s for s in server.samples("bess") if s.ts.ToDatetime(tzinfo=UTC) > applied_at]

    sample = (await eventually(fresh_bess))[0]
    assert sample.p_kw == 100 and sample.state == "discharging"
    assert run.agent.controllers["bess"].active_dispatch_id == "d-1"


async def test_lease_end_completes_and_returns_to_default(
    gateway: Gateway, start_agent: StartAgent
) -> None:
    server, port = gateway
    run = start_agent(site_config(port))
    await eventually(lambda: server.sessions)
    server.send(**setpoint("d-lease", "bess", -50, 0.6))
    await eventually(lambda: len(server.acks("d-lease")) >= 3)
    assert server.acks("d-lease") == [
        ("ACCEPTED", "REASON_CODE_UNSPECIFIED"),
        ("APPLIED", "REASON_CODE_UNSPECIFIED"),
        ("COMPLETED", "REASON_CODE_LEASE_ENDED"),
    ]
    completed = server.of("dispatch_ack")[-1]
    assert "back to default 0 kW" in completed.detail
    done_at = completed.time.ToDatetime(tzinfo=UTC)
    assert battery(run).setpoint_kw == 0
    after = await eventually(
        lambda: [s for s in server.samples("bess") if s.ts.ToDatetime(tzinfo=UTC) > done_at]
    )
    assert after[0].p_kw == 0 and after[0].state == "idle"
    assert run.agent.controllers["bess"].active_dispatch_id is None


async def test_out_of_limits_setpoint_is_rejected_and_nothing_applied(
    gateway: Gateway, start_agent: StartAgent
) -> None:
    server, port = gateway
    run = start_agent(site_config(port))
    await eventually(lambda: server.sessions)
    server.send(**setpoint("d-big", "bess", 400, 30))
    await eventually(lambda: server.acks("d-big"))
    # Acks go up before telemetry: once samples taken well after the rejection are
    # in, so is any later ack, and any setpoint applied would show in them.
    later = server.of("dispatch_ack")[-1].time.ToDatetime(tzinfo=UTC) + timedelta(seconds=0.3)
    await eventually(
        lambda: [s for s in server.samples("bess") if s.ts.ToDatetime(tzinfo=UTC) > later]
    )
    assert server.acks("d-big") == [("REJECTED", "REASON_CODE_OUT_OF_LIMITS")]
    assert "[-250, 250]" in server.of("dispatch_ack")[-1].detail
    assert battery(run).setpoint_kw == 0
    assert all(s.p_kw == 0 for s in server.samples("bess"))


async def test_unknown_asset_is_rejected(gateway: Gateway, start_agent: StartAgent) -> None:
    server, port = gateway
    start_agent(site_config(port))
    await eventually(lambda: server.sessions)
    server.send(**setpoint("d-x", "nope", 10, 30))
    await eventually(lambda: server.acks("d-x"))
    assert server.acks("d-x") == [("REJECTED", "REASON_CODE_UNKNOWN_ASSET")]
    assert server.of("dispatch_ack")[-1].asset_id == "nope"


async def test_release_returns_the_asset_to_default(
    gateway: Gateway, start_agent: StartAgent
) -> None:
    server, port = gateway
    run = start_agent(site_config(port))
    await eventually(lambda: server.sessions)
    server.send(**setpoint("d-rel", "pv", 100, 30))
    await eventually(lambda: len(server.acks("d-rel")) >= 2)
    assert run.agent.adapters["pv"].setpoint_kw == 100  # type: ignore[attr-defined]
    server.send(
        release=pb.Release(
            dispatch_id="d-rel", asset_id="pv", reason=pb.REASON_CODE_CANCELLED_BY_OPERATOR
        )
    )
    await eventually(lambda: len(server.acks("d-rel")) >= 3)
    assert server.acks("d-rel")[2] == ("RELEASED", "REASON_CODE_CANCELLED_BY_OPERATOR")
    assert run.agent.adapters["pv"].setpoint_kw == 300  # type: ignore[attr-defined]
    # a second Release of the same dispatch is answered, not acted on
    server.send(release=pb.Release(dispatch_id="d-rel", asset_id="pv"))
    await eventually(lambda: len(server.acks("d-rel")) >= 4)
    assert server.acks("d-rel")[3] == ("RELEASED", "REASON_CODE_CANCELLED_BY_OPERATOR")


async def test_redelivered_setpoint_gets_the_latest_ack_and_is_not_reapplied(
    gateway: Gateway, start_agent: StartAgent
) -> None:
    server, port = gateway
    run = start_agent(site_config(port))
    await eventually(lambda: server.sessions)
    message = setpoint("d-dup", "bess", 80, 30)
    server.send(**message)
    await eventually(lambda: len(server.acks("d-dup")) >= 2)
    await battery(run).write(5)  # someone moved it: a re-apply would write 80 again
    server.send(**message)
    await eventually(lambda: len(server.acks("d-dup")) >= 3)
    assert server.acks("d-dup")[2][0] == "APPLIED"
    assert battery(run).setpoint_kw == 5


async def test_newer_setpoint_supersedes_the_running_one(
    gateway: Gateway, start_agent: StartAgent
) -> None:
    server, port = gateway
    run = start_agent(site_config(port))
    await eventually(lambda: server.sessions)
    server.send(**setpoint("d-old", "bess", 50, 30))
    await eventually(lambda: len(server.acks("d-old")) >= 2)
    server.send(**setpoint("d-new", "bess", -70, 30))
    await eventually(lambda: len(server.acks("d-new")) >= 2)
    assert server.acks("d-old")[2] == ("RELEASED", "REASON_CODE_SUPERSEDED")
    order = [(a.dispatch_id, a.state) for a in server.of("dispatch_ack")][-3:]
    assert order == [
        ("d-new", pb.ACK_STATE_ACCEPTED),
        ("d-old", pb.ACK_STATE_RELEASED),
        ("d-new", pb.ACK_STATE_APPLIED),
    ]
    assert battery(run).setpoint_kw == -70


async def test_a_later_start_is_applied_at_its_start(
    gateway: Gateway, start_agent: StartAgent
) -> None:
    server, port = gateway
    run = start_agent(site_config(port))
    await eventually(lambda: server.sessions)
    start = datetime.now(UTC) + timedelta(seconds=0.5)
    server.send(**setpoint("d-later", "bess", 30, 30, start=start))
    await eventually(lambda: server.acks("d-later"))
    assert battery(run).setpoint_kw == 0
    await eventually(lambda: len(server.acks("d-later")) >= 2)
    assert server.acks("d-later")[1][0] == "APPLIED"
    assert datetime.now(UTC) >= start and battery(run).setpoint_kw == 30


class BrokenWrites:
    """A battery whose setpoint writes fail (defaults still go through)."""

    def __init__(self, inner: DeviceAdapter) -> None:
        self.inner = inner

    async def connect(self) -> None:
        await self.inner.connect()

    async def read(self) -> Any:
        return await self.inner.read()

    async def write(self, p_kw: float) -> float:
        if p_kw != 0:
            raise DeviceWriteFailed("register 40100 refused the value")
        return await self.inner.write(p_kw)

    async def close(self) -> None:
        await self.inner.close()


async def test_device_write_failure_fails_the_dispatch(
    gateway: Gateway, start_agent: StartAgent
) -> None:
    server, port = gateway
    cfg = site_config(port)
    plain = build_adapter(cfg.assets[0], clock=SystemClock(), tz=UTC)
    start_agent(cfg, adapters={"bess": BrokenWrites(plain)})
    await eventually(lambda: server.sessions)
    server.send(**setpoint("d-fail", "bess", 10, 30))
    await eventually(lambda: len(server.acks("d-fail")) >= 2)
    assert server.acks("d-fail") == [
        ("ACCEPTED", "REASON_CODE_UNSPECIFIED"),
        ("FAILED", "REASON_CODE_DEVICE_WRITE_FAILED"),
    ]
    assert "register 40100" in server.of("dispatch_ack")[-1].detail


async def test_link_loss_beyond_failsafe_reverts_and_acks_after_reconnect(
    gateway: Gateway, start_agent: StartAgent
) -> None:
    server, port = gateway
    run = start_agent(site_config(port, failsafe_timeout_s=0.5))
    await eventually(lambda: server.sessions)
    server.send(**setpoint("d-fs", "bess", 120, 30))
    server.send(**setpoint("d-short", "ev", -11, 0.3))  # ends while offline
    await eventually(lambda: len(server.acks("d-fs")) >= 2 and len(server.acks("d-short")) >= 2)
    server.refuse = True
    server.drop()
    await eventually(lambda: not run.agent.connected)
    await eventually(lambda: battery(run).setpoint_kw == 0, timeout=3)
    assert len(server.acks("d-fs")) == 2  # the revert is not reported while offline
    server.refuse = False
    await eventually(lambda: len(server.acks("d-fs")) >= 3, timeout=8)
    assert server.acks("d-fs")[2] == ("RELEASED", "REASON_CODE_LINK_LOST_REVERTED")
    assert server.acks("d-short")[2] == ("COMPLETED", "REASON_CODE_LEASE_ENDED")


async def test_stop_releases_leases_reverts_and_closes(
    gateway: Gateway, start_agent: StartAgent
) -> None:
    server, port = gateway
    run = start_agent(site_config(port))
    await eventually(lambda: server.sessions)
    server.send(**setpoint("d-stop", "bess", 60, 30))
    await eventually(lambda: len(server.acks("d-stop")) >= 2)
    await run.stop()
    assert server.acks("d-stop")[2] == ("RELEASED", "REASON_CODE_AGENT_OFFLINE")
    assert battery(run).setpoint_kw == 0
    assert not run.agent.connected


async def test_a_local_setpoint_is_reported_before_its_acks_and_resent_until_recorded(
    gateway: Gateway, start_agent: StartAgent
) -> None:
    gw, port = gateway
    gw.confirm_acks = False  # a headend that could not record the report reads no acks
    r = start_agent(site_config(port))
    await eventually(lambda: r.agent.connected)
    result = await r.agent.local.setpoint("bess", 40.0, "opcua:op1")
    assert result.outcome == "applied" and result.dispatch_id is not None
    dispatch_id = result.dispatch_id
    await eventually(lambda: len(gw.acks(dispatch_id)) == 2)
    kinds = [
        m.WhichOneof("body")
        for _, m in gw.received
        if m.WhichOneof("body") in ("local_dispatch", "dispatch_ack")
    ]
    assert kinds == ["local_dispatch", "dispatch_ack", "dispatch_ack"]  # the report first
    report = gw.of("local_dispatch")[0]
    assert (report.dispatch_id, report.asset_id, report.p_kw, report.actor) == (
        dispatch_id,
        "bess",
        40.0,
        "opcua:op1",
    )
    assert report.channel == "opcua" and report.end.ToDatetime() > report.start.ToDatetime()

    # Not confirmed: the next session sends it again, its unconfirmed acks behind it.
    gw.drop()
    await eventually(lambda: len(gw.of("local_dispatch", session=2)) == 1)
    await eventually(lambda: len(gw.of("dispatch_ack", session=2)) == 2)
    again = [
        (m.WhichOneof("body"), getattr(m, m.WhichOneof("body")).dispatch_id)
        for s, m in gw.received
        if s == 2 and m.WhichOneof("body") in ("local_dispatch", "dispatch_ack")
    ]
    assert again == [("local_dispatch", dispatch_id)] + [("dispatch_ack", dispatch_id)] * 2
    assert [a.state for a in gw.of("dispatch_ack", session=2)] == [
        pb.ACK_STATE_ACCEPTED,
        pb.ACK_STATE_APPLIED,
    ]

    # Confirmed: not sent again.
    gw.send(local_dispatch_recorded=pb.LocalDispatchRecorded(dispatch_id=dispatch_id))
    await eventually(lambda: len(r.agent.local_reports) == 0)
    gw.drop()
    await eventually(lambda: gw.sessions == 3 and gw.of("heartbeat", session=3))
    assert gw.of("local_dispatch", session=3) == []


async def test_acks_are_written_again_on_each_session_until_the_headend_confirms_them(
    gateway: Gateway, start_agent: StartAgent
) -> None:
    server, port = gateway
    server.confirm_acks = False  # e.g. the stream broke right after the writes
    run = start_agent(site_config(port))
    await eventually(lambda: server.sessions)
    server.send(**setpoint("d-u", "bess", 30, 30))
    await eventually(lambda: len(server.acks("d-u")) == 2)
    assert len(run.agent.unconfirmed) == 2

    server.drop()  # session 2: both again, in order
    await eventually(lambda: len(server.of("dispatch_ack", session=2)) == 2)
    first, second = server.of("dispatch_ack", session=2)
    assert (first.state, second.state) == (pb.ACK_STATE_ACCEPTED, pb.ACK_STATE_APPLIED)
    originals = server.of("dispatch_ack", session=1)
    assert [a.time for a in (first, second)] == [a.time for a in originals]  # the same acks

    # the headend confirms the first (by dispatch, state and time): only the second is left
    received = pb.DispatchAckReceived(dispatch_id="d-u", state=first.state, time=first.time)
    server.send(dispatch_ack_received=received)
    await eventually(lambda: len(run.agent.unconfirmed) == 1)
    server.confirm_acks = True
    server.drop()  # session 3: the unconfirmed one only, which is then confirmed
    await eventually(lambda: server.of("dispatch_ack", session=3))
    assert [a.state for a in server.of("dispatch_ack", session=3)] == [pb.ACK_STATE_APPLIED]
    await eventually(lambda: len(run.agent.unconfirmed) == 0)


async def test_a_local_setpoint_out_of_limits_is_refused_and_never_reported(
    gateway: Gateway, start_agent: StartAgent
) -> None:
    gw, port = gateway
    r = start_agent(site_config(port))
    await eventually(lambda: r.agent.connected)
    result = await r.agent.local.setpoint("bess", 400.0, "opcua:op1")
    assert (result.outcome, result.reason, result.dispatch_id) == (
        "rejected",
        ReasonCode.OUT_OF_LIMITS,
        None,
    )
    assert "-250..250" in result.detail
    nan = await r.agent.local.setpoint("bess", float("nan"), "opcua:op1")
    assert nan.reason is ReasonCode.OUT_OF_LIMITS
    # Reports go up before telemetry: once samples taken after the refusals are in,
    # so would a report of them be.
    later = datetime.now(UTC) + timedelta(seconds=0.3)
    await eventually(lambda: [s for s in gw.samples("bess") if s.ts.ToDatetime(tzinfo=UTC) > later])
    assert gw.of("local_dispatch") == [] and len(r.agent.local_reports) == 0


# ------------------------------------------------- the control journal (restart)


def _journal(config: SiteConfig, state_dir: Path) -> ControlJournal:
    """The agent's journal file, opened beside the agent (WAL: both may use it)."""
    return ControlJournal(str(buffer_path(config, state_dir)))


def _held(
    dispatch_id: str,
    p_kw: float,
    now: datetime,
    start_s: float,
    end_s: float,
    local_actor: str | None = None,
) -> Lease:
    """A lease from ``now + start_s`` to ``now + end_s`` (a local one if it has an actor)."""
    return Lease(
        dispatch_id, p_kw, now + timedelta(seconds=start_s), now + timedelta(seconds=end_s),
        source=Source.LOCAL if local_actor else Source.CLOUD, actor=local_actor or "",
    )  # fmt: skip


async def test_an_accepted_lease_is_journaled_until_its_end(
    gateway: Gateway, start_agent: StartAgent, tmp_path: Path
) -> None:
    server, port = gateway
    config = site_config(port)
    start_agent(config, state_dir=tmp_path)
    await eventually(lambda: server.sessions)
    server.send(**setpoint("d-j", "bess", 90, 30, ramp_kw_per_s=50.0))
    await eventually(lambda: len(server.acks("d-j")) >= 2)
    journal = _journal(config, tmp_path)
    try:
        [held] = journal.leases()
        assert held.asset_id == "bess"
        assert (held.lease.dispatch_id, held.lease.p_kw, held.lease.ramp_kw_per_s) == (
            "d-j",
            90,
            50.0,
        )
        assert journal.link_seen() is not None  # marked when the link came up
        server.send(release=pb.Release(dispatch_id="d-j", asset_id="bess"))
        await eventually(lambda: len(server.acks("d-j")) >= 3)
        assert journal.leases() == []
    finally:
        journal.close()


async def test_after_a_crash_held_leases_are_applied_again_and_reports_resent(
    gateway: Gateway, start_agent: StartAgent, tmp_path: Path
) -> None:
    # What an agent killed with kill -9 leaves in its journal: an active
    # cloud lease, an active local one with its unconfirmed report, and a
    # cloud lease that ended while the agent was dead.
    server, port = gateway
    config = site_config(port)
    now = datetime.now(UTC)
    journal = _journal(config, tmp_path)
    journal.hold("bess", _held("d-cloud", 120, now, -60, 60))
    local = _held("loc-1", -11, now, -60, 60, local_actor="opcua:op1")
    journal.hold("ev", local)
    journal.report_added(
        LocalReport("loc-1", "ev", -11, local.start, local.end, "opcua:op1", "opcua")
    )
    journal.hold("pv", _held("d-over", 100, now, -60, -5))
    journal.mark_link_seen(now - timedelta(seconds=2))
    journal.close()

    run = start_agent(config, state_dir=tmp_path)
    await eventually(lambda: len(server.acks("d-cloud")) >= 2 and len(server.acks("loc-1")) >= 2)
    assert server.acks("d-cloud") == [
        ("ACCEPTED", "REASON_CODE_UNSPECIFIED"),
        ("APPLIED", "REASON_CODE_UNSPECIFIED"),
    ]
    accepted = next(a for a in server.of("dispatch_ack") if a.dispatch_id == "d-cloud")
    assert accepted.detail.startswith("resumed after an agent restart")
    assert battery(run).setpoint_kw == 120
    assert run.agent.adapters["ev"].setpoint_kw == -11  # type: ignore[attr-defined]
    assert run.agent.local.view("ev").mode == "local"
    # the unconfirmed report goes first, before any of its acks
    kinds = [
        (m.WhichOneof("body"), getattr(m, m.WhichOneof("body")).dispatch_id)
        for _, m in server.received
        if m.WhichOneof("body") in ("local_dispatch", "dispatch_ack")
    ]
    assert kinds.index(("local_dispatch", "loc-1")) < kinds.index(("dispatch_ack", "loc-1"))
    # the one that ended while the agent was dead is reported, not applied
    await eventually(lambda: server.acks("d-over"))
    assert server.acks("d-over") == [("RELEASED", "REASON_CODE_AGENT_OFFLINE")]
    assert run.agent.adapters["pv"].setpoint_kw == 300  # type: ignore[attr-defined]

    after = _journal(config, tmp_path)
    try:
        assert sorted(h.lease.dispatch_id for h in after.leases()) == ["d-cloud", "loc-1"]
        assert [r.dispatch_id for r in after.reports()] == ["loc-1"]
        server.send(local_dispatch_recorded=pb.LocalDispatchRecorded(dispatch_id="loc-1"))
        await eventually(lambda: after.reports() == [])
    finally:
        after.close()


async def test_a_cloud_lease_is_not_resumed_when_the_link_was_lost_past_the_failsafe(
    gateway: Gateway, start_agent: StartAgent, tmp_path: Path
) -> None:
    server, port = gateway
    config = site_config(port, failsafe_timeout_s=30)
    now = datetime.now(UTC)
    journal = _journal(config, tmp_path)
    journal.hold("bess", _held("d-stale", 120, now, -90, 60))
    journal.hold("pv", _held("loc-2", 50, now, -90, 60, local_actor="opcua:op1"))
    journal.mark_link_seen(now - timedelta(seconds=45))  # the fail-safe would have ended it
    journal.close()

    run = start_agent(config, state_dir=tmp_path)
    await eventually(lambda: server.acks("d-stale") and len(server.acks("loc-2")) >= 2)
    assert server.acks("d-stale") == [("RELEASED", "REASON_CODE_LINK_LOST_REVERTED")]
    assert battery(run).setpoint_kw == 0
    # a local operator's setpoint does not depend on the cloud link
    assert run.agent.adapters["pv"].setpoint_kw == 50  # type: ignore[attr-defined]


async def test_acks_never_confirmed_before_a_crash_are_sent_first_after_the_restart(
    gateway: Gateway, start_agent: StartAgent, tmp_path: Path
) -> None:
    server, port = gateway
    config = site_config(port)
    t = datetime.now(UTC) - timedelta(seconds=30)
    journal = _journal(config, tmp_path)
    journal.ack_made(Ack("d-was", "bess", AckState.APPLIED, t, applied_p_kw=42.0))
    journal.ack_made(
        Ack("d-was", "bess", AckState.COMPLETED, t + timedelta(seconds=20), ReasonCode.LEASE_ENDED)
    )
    journal.close()

    start_agent(config, state_dir=tmp_path)
    await eventually(lambda: len(server.acks("d-was")) == 2)
    assert server.acks("d-was") == [
        ("APPLIED", "REASON_CODE_UNSPECIFIED"),
        ("COMPLETED", "REASON_CODE_LEASE_ENDED"),
    ]
    first = server.of("dispatch_ack")[0]
    assert first.applied_p_kw == 42.0 and first.time.ToDatetime(tzinfo=UTC) == t  # as made
    after = _journal(config, tmp_path)
    try:  # the headend confirmed both: the journal lets them go
        await eventually(lambda: after.acks() == [])
    finally:
        after.close()
