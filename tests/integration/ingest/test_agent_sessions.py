"""Agent sessions end for their true reason, and bad streams get a clean status.

A hung agent is ended `unresponsive` within GRIDPILOT_AGENT_SILENCE_S, an agent
ending its stream is `closed`, a cut connection `network`; concurrent Hellos
of one gateway leave the newest live and the others `superseded`; bytes that
are no AgentMessage are INVALID_ARGUMENT; and no exception text reaches a
client (real headend, PostgreSQL, Temporal and mTLS gRPC)."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from datetime import datetime
from pathlib import Path
from typing import Any

import grpc
import psycopg
import pytest
from gp_testing import (
    RunningHeadend,
    ScriptedAgent,
    TestPki,
    agent_ack,
    demo_assets,
    dispatch_in_state,
    running_headend,
    wait_for,
)

from gridpilot.edge_agent import EdgeAgent, SiteConfig
from gridpilot.schema.pb import agent_pb2 as pb

pytestmark = pytest.mark.integration

SILENCE_S = 2.0


@pytest.fixture
async def quick(
    database_url: str, temporal_env: Any, task_queue: str, test_pki: TestPki
) -> AsyncIterator[RunningHeadend]:
    """A headend that ends a silent agent after SILENCE_S."""
    address = temporal_env.client.service_client.config.target_host
    async with running_headend(
        database_url, address, task_queue, test_pki, agent_silence_s=SILENCE_S
    ) as running:
        yield running


async def _agent_view(h: RunningHeadend, gateway_id: str = "gw-1") -> dict[str, Any]:
    agents = (await h.api.get("/api/v1/agents")).json()
    return next(a for a in agents if a["gateway_id"] == gateway_id)


async def _ended(h: RunningHeadend, reason: str, gateway_id: str = "gw-1") -> dict[str, Any] | None:
    view = await _agent_view(h, gateway_id)
    return view if not view["connected"] and view["last_end_reason"] == reason else None


def _sessions(h: RunningHeadend) -> list[tuple[str, str | None]]:
    with psycopg.connect(h.settings.database_url) as conn:
        rows = conn.execute(
            "SELECT id, end_reason FROM agent_sessions ORDER BY connected_at"
        ).fetchall()
    return [(r[0], r[1]) for r in rows]


async def _disconnected(h: RunningHeadend) -> bool:
    return not (await _agent_view(h))["connected"]


async def test_a_hung_agent_is_ended_unresponsive_within_the_silence_setting(
    quick: RunningHeadend,
) -> None:
    agent = quick.agent()  # says Hello, then nothing: alive, but silent
    try:
        welcome = await agent.connect(demo_assets())
        connected = await _agent_view(quick)
        assert connected["connected"] is True
        view = await wait_for(lambda: _ended(quick, "unresponsive"), timeout=15)
        await wait_for(lambda: agent.ended, timeout=5)
    finally:
        await agent.close()
    assert view["session_id"] is None
    silent = datetime.fromisoformat(view["last_ended_at"]) - datetime.fromisoformat(
        connected["connected_at"]
    )
    assert silent.total_seconds() >= SILENCE_S  # not before the setting
    assert _sessions(quick) == [(welcome.session_id, "unresponsive")]
    assert agent.error is not None and agent.error.code() == grpc.StatusCode.UNAVAILABLE


async def test_an_agent_that_heartbeats_stays_and_ending_its_stream_is_closed(
    quick: RunningHeadend,
) -> None:
    agent = quick.agent()
    try:
        welcome = await agent.connect(demo_assets())

        # Heartbeats every 0.3 s until the headend has heard them for 3x the silence
        # setting (its own record of the session): never unresponsive.
        async def heard_for_3x_silence() -> bool:
            await agent.send(pb.AgentMessage(heartbeat=pb.Heartbeat()))
            view = await _agent_view(quick)
            assert view["connected"], view  # not ended meanwhile
            seen, since = (datetime.fromisoformat(view[k]) for k in ("last_seen", "connected_at"))
            return (seen - since).total_seconds() > 3 * SILENCE_S

        await wait_for(heard_for_3x_silence, interval=0.3)
        view = await _agent_view(quick)
        assert view["connected"] is True and view["session_id"] == welcome.session_id
        await agent.send(None)  # the agent ends its stream (half-close)
        await wait_for(lambda: _ended(quick, "closed"))
        await wait_for(lambda: agent.ended, timeout=5)
        assert agent.error is None  # ended with OK
    finally:
        await agent.close()
    assert _sessions(quick) == [(welcome.session_id, "closed")]


async def test_a_cut_connection_is_recorded_as_network(headend: RunningHeadend) -> None:
    agent = headend.agent()
    try:
        welcome = await agent.connect(demo_assets())
        await agent.cut()
        await wait_for(lambda: _ended(headend, "network"))
    finally:
        await agent.close()
    assert _sessions(headend) == [(welcome.session_id, "network")]


async def test_concurrent_hellos_of_one_gateway_leave_the_newest_live_the_others_superseded(
    headend: RunningHeadend,
) -> None:
    await _register(headend)
    for _ in range(3):
        # Connections ready (TLS done) first, so the Hellos arrive together.
        calls = [_raw_call(headend) for _ in range(8)]
        try:
            await asyncio.gather(*(channel.channel_ready() for channel, _ in calls))
            hello = pb.AgentMessage(
                hello=pb.Hello(gateway_id="gw-1", site_id="site-1", assets=demo_assets())
            ).SerializeToString()
            await asyncio.gather(*(call.write(hello) for _, call in calls))
            welcomes = await asyncio.gather(*(_welcome(call) for _, call in calls))
            assert all(isinstance(w, pb.Welcome) for w in welcomes), welcomes  # no UNKNOWN
            ids = {w.session_id for w in welcomes}
            sessions = {sid: reason for sid, reason in _sessions(headend) if sid in ids}
            live = [sid for sid, reason in sessions.items() if reason is None]
            assert len(sessions) == 8 and len(live) == 1, sessions
            assert set(sessions.values()) == {None, "superseded"}
            # The live one in the database is the one the headend routes to,
            # and the only stream left open.
            view = await _agent_view(headend)
            assert view["connected"] and view["session_id"] == live[0]
            ends = [
                await _status(call)
                for (_, call), w in zip(calls, welcomes, strict=True)
                if w.session_id != live[0]
            ]
            assert ends == [(grpc.StatusCode.OK, "")] * 7
        finally:
            await asyncio.gather(*(channel.close() for channel, _ in calls))
        await wait_for(lambda: _disconnected(headend))


async def _welcome(call: Any) -> pb.Welcome | tuple[grpc.StatusCode, str]:
    """The Welcome, or the status the call ended with instead."""
    try:
        first = await call.read()
    except grpc.aio.AioRpcError as exc:
        return exc.code(), exc.details() or ""
    return first.welcome


async def _register(h: RunningHeadend) -> None:
    """A first session, so the gateway and site rows exist (the usual case)."""
    first = h.agent()
    try:
        await first.connect(demo_assets())
    finally:
        await first.close()
    await wait_for(lambda: _disconnected(h))


def _raw_call(h: RunningHeadend) -> tuple[grpc.aio.Channel, Any]:
    """A Connect call that writes bytes as given (a non-Python or broken client)."""
    assert h.pki is not None
    channel = grpc.aio.secure_channel(h.grpc_address, h.pki.credentials("gw-1"))
    call = channel.stream_stream(
        "/gridpilot.v1.AgentGateway/Connect",
        request_serializer=lambda b: b,
        response_deserializer=pb.HeadendMessage.FromString,
    )()
    return channel, call


async def _status(call: Any) -> tuple[grpc.StatusCode, str]:
    """How the headend ended the call (after any messages it still sent)."""
    try:
        while await call.read() is not grpc.aio.EOF:
            pass
    except grpc.aio.AioRpcError as exc:
        return exc.code(), exc.details() or ""
    return await call.code(), await call.details()


async def test_garbage_as_the_first_message_is_invalid_argument(headend: RunningHeadend) -> None:
    channel, call = _raw_call(headend)
    try:
        await call.write(b"\xff\xff\xff\xff not a protobuf")
        code, details = await _status(call)
    finally:
        await channel.close()
    assert code == grpc.StatusCode.INVALID_ARGUMENT
    assert details.startswith("hello:") and "Error parsing" not in details
    assert _sessions(headend) == []


async def test_garbage_after_hello_ends_the_session_invalid_message(
    headend: RunningHeadend,
) -> None:
    await headend.enroll("gw-1", "site-1")
    channel, call = _raw_call(headend)
    try:
        hello = pb.Hello(gateway_id="gw-1", site_id="site-1", assets=demo_assets())
        await call.write(pb.AgentMessage(hello=hello).SerializeToString())
        assert (await call.read()).WhichOneof("body") == "welcome"
        await call.write(b"\xff\xff\xff\xff not a protobuf")
        code, details = await _status(call)
    finally:
        await channel.close()
    assert code == grpc.StatusCode.INVALID_ARGUMENT and "AgentMessage" in details
    await wait_for(lambda: _ended(headend, "invalid_message"))


@pytest.mark.parametrize("step", ["register", "last_batch_seq"])  # in the handshake, after it
async def test_an_unexpected_error_is_internal_with_a_plain_message(
    headend: RunningHeadend,
    scripted_agent: ScriptedAgent,
    monkeypatch: pytest.MonkeyPatch,
    step: str,
) -> None:
    async def broken(*_: Any, **__: Any) -> None:
        raise RuntimeError('SELECT secret FROM "gateways" -- internal detail')

    monkeypatch.setattr(headend.headend.store, step, broken)
    await scripted_agent.connect(demo_assets())
    assert scripted_agent.error is not None
    assert scripted_agent.error.code() == grpc.StatusCode.INTERNAL
    details = scripted_agent.error.details() or ""
    assert "SELECT" not in details and "RuntimeError" not in details and "log" in details


async def test_a_real_agent_heartbeats_through_and_its_stop_is_recorded_closed(
    quick: RunningHeadend, tmp_path: Path
) -> None:
    assert quick.pki is not None
    await quick.enroll("gw-real", "site-real")
    agent = EdgeAgent(_site(quick.grpc_address, quick.pki, tmp_path))
    running = asyncio.create_task(agent.run())
    try:
        await wait_for(lambda: agent.connected, timeout=30)
        first = await _agent_view(quick, "gw-real")
        # Its session lives past 3x the silence setting, on its heartbeats.
        view = await wait_for(lambda: _lived(quick, "gw-real", 3 * SILENCE_S), timeout=30)
        assert view["session_id"] == first["session_id"]
    finally:
        agent.stop()
        await asyncio.wait_for(running, 20)
    view = await wait_for(lambda: _ended(quick, "closed", "gw-real"))
    assert view["last_ended_at"]


async def _lived(h: RunningHeadend, gateway_id: str, seconds: float) -> dict[str, Any] | None:
    """The agent's view once its live session was last heard ``seconds`` after it began."""
    view = await _agent_view(h, gateway_id)
    if not view["connected"]:
        return None
    lived = datetime.fromisoformat(view["last_seen"]) - datetime.fromisoformat(view["connected_at"])
    return view if lived.total_seconds() >= seconds else None


def _site(address: str, pki: TestPki, tmp_path: Path) -> SiteConfig:
    """A real agent with one simulated battery, heartbeating every 0.3 s."""
    issued = pki.gateway("gw-real")
    return SiteConfig.model_validate(
        {
            "version": 1,
            "gateway_id": "gw-real",
            "site": {"id": "site-real", "timezone": "UTC"},
            "headend": {
                "address": address,
                "ca_file": str(pki.pki.ca_file),
                "cert_file": str(issued.cert_file),
                "key_file": str(issued.key_file),
            },
            "telemetry_interval_s": 5,
            "heartbeat_interval_s": 0.3,
            "buffer": {"path": str(tmp_path / "buffer.sqlite3")},
            "assets": [
                {
                    "id": "real-bess",
                    "type": "bess",
                    "limits": {"p_min_kw": -10, "p_max_kw": 10},
                    "capacity_kwh": 20,
                    "default_p_kw": 0,
                    "device": {"kind": "simulated"},
                }
            ],
        }
    )


async def test_a_hello_the_database_cannot_store_is_invalid_argument_naming_the_field(
    headend: RunningHeadend,
) -> None:
    agent = headend.agent(enroll=False, site_id="site\x00one")  # no enrollment names it
    try:
        await agent.connect(demo_assets())
    finally:
        await agent.close()
    assert agent.error is not None and agent.error.code() == grpc.StatusCode.INVALID_ARGUMENT
    assert agent.error.details() == "hello.site_id contains a NUL character"


async def test_an_ack_that_is_no_value_is_refused_and_the_stream_goes_on(
    headend: RunningHeadend, scripted_agent: ScriptedAgent
) -> None:
    welcome = await scripted_agent.connect(demo_assets())
    r = await headend.api.post(
        "/api/v1/dispatches", json={"asset_id": "bess-1", "p_kw": 10, "duration_s": 600}
    )
    assert r.status_code == 201, r.text
    dispatch_id = r.json()["id"]
    sp = await wait_for(lambda: scripted_agent.first("setpoint"))
    # An unknown reason code (a newer or broken agent): refused, not re-sent forever.
    await scripted_agent.send(agent_ack(sp, pb.ACK_STATE_REJECTED, reason=999))
    refused = await wait_for(lambda: scripted_agent.first("dispatch_ack_received"))
    assert refused.refused == "dispatch_ack.reason 999 is not a known reason code"
    # A detail the database cannot store as it is: stored with the NUL replaced.
    await scripted_agent.send(
        agent_ack(sp, pb.ACK_STATE_REJECTED, reason=pb.REASON_CODE_OUT_OF_LIMITS, detail="p\x00x")
    )
    await wait_for(lambda: dispatch_in_state(headend.api, dispatch_id, "failed"))
    d = (await headend.api.get(f"/api/v1/dispatches/{dispatch_id}")).json()
    assert d["reason"] == "OUT_OF_LIMITS" and d["detail"] == "p\ufffdx"
    view = await _agent_view(headend)  # the same session all along
    assert view["connected"] and view["session_id"] == welcome.session_id
