"""Faults injected for real: Temporal down at submit, a headend restart mid-dispatch."""

from __future__ import annotations

import asyncio
import contextlib
import socket
from datetime import UTC, datetime
from pathlib import Path
from typing import TYPE_CHECKING, Any

import psycopg
import pytest
from gp_testing import (
    RunningHeadend,
    ScriptedAgent,
    TestPki,
    agent_ack,
    demo_assets,
    dispatch_up_to,
    now_pb,
    own_temporal,
    running_headend,
    wait_for,
)
from temporalio.client import WorkflowExecutionStatus

from gridpilot.api.dispatch_service import DispatchOptions, DispatchService
from gridpilot.api.errors import Unavailable
from gridpilot.api.schemas import DispatchCreate
from gridpilot.core.lifecycle import DispatchState
from gridpilot.ops.embedded import EmbeddedPostgres, TemporalDevServer
from gridpilot.ops.headend import Headend
from gridpilot.ops.processes import free_port
from gridpilot.ops.temporal import connect
from gridpilot.schema import db
from gridpilot.schema.pb import agent_pb2 as pb
from gridpilot.workflows.dispatch import DispatchWorkflow

if TYPE_CHECKING:
    from temporalio.testing import WorkflowEnvironment

pytestmark = pytest.mark.integration


async def test_submit_while_temporal_is_down_is_503_and_writes_nothing(
    headend: RunningHeadend, scripted_agent: ScriptedAgent
) -> None:
    await scripted_agent.connect(demo_assets())
    server = TemporalDevServer(port=free_port(), ui_port=None)
    server.start()
    try:
        client = await connect(server.address, "default", wait_s=20)
    finally:
        server.stop()
    service = DispatchService(headend.headend.engine, client, DispatchOptions(task_queue="unused"))
    body = DispatchCreate(asset_id="bess-1", p_kw=10, duration_s=60)
    with pytest.raises(Unavailable) as err:
        await service.submit(body, None, "tester")
    assert err.value.what == "temporal"
    with psycopg.connect(headend.settings.database_url) as conn:
        assert conn.execute("SELECT count(*) FROM dispatches").fetchone() == (0,)


async def test_dispatch_survives_a_headend_restart(
    headend: RunningHeadend, scripted_agent: ScriptedAgent
) -> None:
    await scripted_agent.connect(demo_assets())
    dispatch_id, sp = await dispatch_up_to(headend.api, scripted_agent, p_kw=30, duration_s=60)

    # Stop the whole headend (gRPC, API, workers) while the dispatch is active.
    headend.headend.stop()
    await wait_for(lambda: scripted_agent.ended, timeout=15)
    await scripted_agent.close()
    ports = (headend.settings.api_port, int(headend.settings.grpc_listen.rsplit(":", 1)[1]))
    await wait_for(lambda: not any(map(_listening, ports)), what="the old headend's ports closed")

    # A new headend process takes over the same database and queues.
    second = Headend(headend.settings)
    task = asyncio.create_task(second.run())
    try:
        agent = await wait_for(lambda: _reconnected(headend), timeout=30)
        await agent.send(agent_ack(sp, pb.ACK_STATE_COMPLETED, reason=pb.REASON_CODE_LEASE_ENDED))
        await wait_for(lambda: _db_state(headend, dispatch_id) == "complete", timeout=30)
        await agent.close()
    finally:
        second.stop()
        await asyncio.wait_for(task, 30)
    rows = _db_transitions(headend, dispatch_id)
    assert rows == ["submitted", "sent", "acked", "active", "complete"]


async def _reconnected(headend: RunningHeadend) -> ScriptedAgent | None:
    agent = headend.agent()
    await agent.connect(demo_assets())
    if agent.error is None:
        return agent
    await agent.close()
    return None


def _listening(port: int) -> bool:
    with contextlib.suppress(OSError), socket.create_connection(("127.0.0.1", port), timeout=1):
        return True
    return False


def _db_state(headend: RunningHeadend, dispatch_id: str) -> str | None:
    with psycopg.connect(headend.settings.database_url) as conn:
        row = conn.execute("SELECT state FROM dispatches WHERE id = %s", (dispatch_id,)).fetchone()
    return None if row is None else row[0]


def _db_transitions(headend: RunningHeadend, dispatch_id: str) -> list[str]:
    with psycopg.connect(headend.settings.database_url) as conn:
        rows = conn.execute(
            "SELECT to_state FROM dispatch_transitions WHERE dispatch_id = %s ORDER BY seq",
            (dispatch_id,),
        ).fetchall()
    return [r[0] for r in rows]


def test_reset_db_is_refused_in_production(database_url: str) -> None:
    from gridpilot.ops.headend import HeadendError, prepare_database
    from gridpilot.ops.settings import Environment, Settings

    db.upgrade(database_url)
    with psycopg.connect(database_url, autocommit=True) as conn:
        conn.execute("INSERT INTO sites (id, name) VALUES ('keep', 'Keep me')")
    settings = Settings(
        _env_file=None,  # type: ignore[call-arg]
        database_url=database_url,
        reset_db=True,
        environment=Environment.PRODUCTION,
    )
    with pytest.raises(HeadendError, match="refused in production"):
        prepare_database(settings)
    with psycopg.connect(database_url) as conn:
        assert conn.execute("SELECT count(*) FROM sites").fetchone() == (1,)
    dev = Settings(_env_file=None, database_url=database_url, reset_db=True)  # type: ignore[call-arg]
    prepare_database(dev)
    with psycopg.connect(database_url) as conn:
        assert conn.execute("SELECT count(*) FROM sites").fetchone() == (0,)


async def test_acks_sent_while_temporal_is_down_wait_and_reach_the_workflow(
    database_url: str, task_queue: str, test_pki: TestPki, tmp_path: Path
) -> None:
    """Temporal stopped while the agent acks: the ack is not lost, and the
    agent's telemetry keeps landing meanwhile; once Temporal is back (its own
    database kept) the ack reaches the workflow and the dispatch goes on."""
    async with own_temporal(tmp_path / "temporal.db") as temporal:
        # The dispatch's ack window is longer than the outage: an ack that Temporal
        # only gets after the window would end it expired (and be kept as late).
        async with running_headend(
            database_url, temporal.address, task_queue, test_pki, ack_timeout_s=300
        ) as h:
            agent = h.agent()
            await agent.connect(demo_assets())
            dispatch_id, sp = await dispatch_up_to(h.api, agent, "acked", duration_s=300)

            temporal.stop()
            await agent.send(agent_ack(sp, pb.ACK_STATE_APPLIED, applied_p_kw=20))
            sample = pb.TelemetrySample(asset_id="bess-1", ts=now_pb(), p_kw=20.0)
            await agent.send(
                pb.AgentMessage(telemetry=pb.TelemetryBatch(batch_seq=11, samples=[sample]))
            )
            # The stream does not wait for Temporal: the batch behind the ack is stored.
            ack = await wait_for(lambda: agent.first("telemetry_ack"), timeout=30)
            assert (ack.batch_seq, ack.accepted) == (11, 1)

            async def degraded() -> Any:
                body = (await h.api.get("/readyz")).json()
                return body if "1 agent acks waiting" in body["checks"]["temporal"] else None

            body = await wait_for(degraded, timeout=30)
            assert body["status"] == "degraded"
            metrics = (await h.api.get("/metrics")).text
            assert "gridpilot_dispatch_acks_waiting 1.0" in metrics
            assert _db_state(h, dispatch_id) == "acked"  # nothing recorded yet

            temporal.start(timeout=60)
            await temporal.wait_ready(timeout=60)  # serving, not only listening
            await wait_for(lambda: _db_state(h, dispatch_id) == "active", timeout=60)
            assert _db_transitions(h, dispatch_id) == ["submitted", "sent", "acked", "active"]
            await wait_for(lambda: _ready(h), timeout=30)  # the waiting queue is empty again
            assert agent.error is None and not agent.ended  # one stream throughout
            await agent.close()


async def _ready(headend: RunningHeadend) -> bool:
    return (await headend.api.get("/readyz")).status_code == 200


async def test_acks_waiting_for_temporal_are_bounded_and_a_vanished_workflow_ends_late(
    tmp_path: Path,
) -> None:
    """The waiting queue keeps its bound (the oldest dropped, counted) while
    Temporal is down; once it is back, an ack whose workflow Temporal does not
    know is tried again for the give-up time, then kept as late."""
    from gridpilot.ingest.acks import TemporalAckSink
    from gridpilot.workflows.models import AgentAck

    async with own_temporal(tmp_path / "temporal.db") as temporal:
        client = await connect(temporal.address, "default", wait_s=20)
        late: list[str] = []
        done: list[str] = []

        async def on_late(ack: AgentAck) -> None:
            late.append(ack.dispatch_id)

        sink = TemporalAckSink(client, on_late, max_waiting=2, retry_max_s=1, give_up_s=2)
        runner = asyncio.create_task(sink.run())
        temporal.stop()
        now = datetime.now(UTC)
        for i in range(4):
            ack = AgentAck(dispatch_id=f"gone-{i}", state="applied", at=now)
            await sink(ack, lambda i=i: done.append(f"gone-{i}"))  # type: ignore[misc]
        assert (sink.waiting, sink.dropped, sink.temporal_available) == (2, 2, False)

        temporal.start(timeout=60)
        # The restarted server's own start (slow on a busy machine) is not the
        # drain's deadline: start() returns once the port is open, not serving.
        await temporal.wait_ready(timeout=60)
        await wait_for(lambda: not sink.waiting, timeout=60)
        assert late == done == ["gone-2", "gone-3"]  # the two newest, in order
        assert sink.temporal_available
        runner.cancel()


async def test_a_dispatch_rides_out_a_database_outage_and_each_transition_lands_once(
    tmp_path: Path, temporal_env: WorkflowEnvironment, test_pki: TestPki, task_queue: str
) -> None:
    """The fault: the headend's PostgreSQL stops while a dispatch is active and
    stays down past its end, longer than a database call's 10 s timeout. The
    workflow's record of its end (a local activity) is retried until the
    database answers; the headend stays up; the record then says the dispatch
    ended, each transition once and in order."""
    pg = EmbeddedPostgres(tmp_path / "pg", free_port())
    pg.start()
    with psycopg.connect(pg.url(), autocommit=True) as conn:
        conn.execute("CREATE DATABASE gridpilot")
    url = pg.url("gridpilot")
    db.upgrade(url)
    address = temporal_env.client.service_client.config.target_host
    try:
        async with running_headend(url, address, task_queue, test_pki) as h:
            agent = h.agent()
            await agent.connect(demo_assets())
            dispatch_id, _ = await dispatch_up_to(h.api, agent, p_kw=30, duration_s=6)

            pg.stop()  # its end (at 6 s, then the 5 s ack timeout) falls in the outage
            await asyncio.sleep(20)
            handle = temporal_env.client.get_workflow_handle_for(DispatchWorkflow.run, dispatch_id)
            assert (await handle.describe()).status == WorkflowExecutionStatus.RUNNING
            pg.start()

            result = await asyncio.wait_for(handle.result(), 90)
            with psycopg.connect(url) as conn:
                rows = conn.execute(
                    "SELECT to_state FROM dispatch_transitions WHERE dispatch_id = %s ORDER BY seq",
                    (dispatch_id,),
                ).fetchall()
                state = conn.execute(
                    "SELECT state FROM dispatches WHERE id = %s", (dispatch_id,)
                ).fetchone()
            assert [r[0] for r in rows] == ["submitted", "sent", "acked", "active", "complete"]
            assert state == ("complete",)
            assert result.state is DispatchState.COMPLETE
            # The headend rode it out: it is ready again, not restarted.
            await wait_for(lambda: _ready(h), timeout=30, what="the headend ready again")
            await agent.close()
    finally:
        pg.stop()


async def _ready(h: RunningHeadend) -> bool:
    return (await h.api.get("/readyz")).status_code == 200
