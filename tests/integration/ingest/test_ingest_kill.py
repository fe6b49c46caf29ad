"""kill -9 of an agent or of the headend mid-stream, and a full agent buffer,
with real processes: what the agent buffered reaches the table exactly once,
and what its drop policy discarded is exactly what is missing, counted."""

from __future__ import annotations

import os
import signal
import sqlite3
import time
from pathlib import Path
from typing import TYPE_CHECKING

import pytest
from gp_testing import wait_for_sync
from gp_testing.procs import (
    AgentProcess,
    HeadendProcess,
    count_rows,
    longest_gap_s,
    stored_samples,
)

from gridpilot.ops.processes import free_port

if TYPE_CHECKING:
    from temporalio.testing import WorkflowEnvironment

pytestmark = pytest.mark.integration

INTERVAL_S = 0.05  # 20 batches/s of 10 samples per agent


def _temporal(env: WorkflowEnvironment) -> str:
    return str(env.client.service_client.config.target_host)


def _everything_once(agent: AgentProcess, database_url: str) -> set[tuple[str, object]]:
    """Stop the agent; every sample it ever buffered is in the table once, or
    still in its buffer (unacked at the stop, replayed at its next start)."""
    assert agent.proc is not None and agent.proc.stop() == 0, agent.proc and agent.proc.tail()
    c = agent.counters()
    table = stored_samples(database_url, agent.gateway_id + "-")
    rows, distinct = count_rows(database_url)
    assert rows == distinct
    delivered = len(table | agent.buffered_samples())
    if agent.buffer.get("policy", "drop_oldest") == "drop_oldest":
        # A batch dropped to make room may have been on the wire already and
        # still land: the drop count bounds the loss from above.
        assert c["stored_samples"] - c["dropped_samples"] <= delivered <= c["stored_samples"]
    else:  # drop_newest refuses a batch before it is ever stored or sent
        assert delivered == c["stored_samples"]
    return table  # type: ignore[return-value]


@pytest.fixture
def headend(database_url: str, temporal_env: WorkflowEnvironment, tmp_path: Path) -> HeadendProcess:
    h = HeadendProcess(database_url, _temporal(temporal_env), tmp_path)
    yield h  # type: ignore[misc]
    if h.proc is not None:
        h.proc.stop()


def test_agent_kill_9_mid_stream_loses_nothing_it_buffered(
    headend: HeadendProcess, database_url: str, tmp_path: Path
) -> None:
    headend.start()
    agent = AgentProcess("gwa", headend.grpc_address, tmp_path / "agent", interval_s=INTERVAL_S)
    agent.start()
    try:
        wait_for_sync(lambda: len(stored_samples(database_url)) >= 200, 30, "telemetry flowing")
        # Freeze the headend so acks stop and batches pile up unacked, then kill.
        assert headend.proc is not None
        os.kill(headend.proc.pid, signal.SIGSTOP)
        wait_for_sync(lambda: agent.counters()["samples"] >= 150, 30, "15 batches unacked")
        assert agent.proc is not None
        agent.proc.kill9()
        os.kill(headend.proc.pid, signal.SIGCONT)
        at_kill = agent.buffered_samples()
        assert len(at_kill) >= 100, len(at_kill)  # >= 10 batches were unacked

        agent.start()  # same config, same buffer file
        wait_for_sync(lambda: at_kill <= stored_samples(database_url), 30, "the replay")
        wait_for_sync(lambda: not at_kill & agent.buffered_samples(), 30, "the replay acked")
        table = _everything_once(agent, database_url)
        assert at_kill <= table
        assert agent.counters()["dropped_batches"] == 0
    finally:
        if agent.proc is not None:
            agent.proc.stop()


def test_headend_kill_9_agents_buffer_and_replay_without_loss(
    headend: HeadendProcess, database_url: str, tmp_path: Path
) -> None:
    headend.start()
    agent = AgentProcess("gwh", headend.grpc_address, tmp_path / "agent", interval_s=INTERVAL_S)
    agent.start()
    try:
        wait_for_sync(lambda: len(stored_samples(database_url)) >= 200, 30, "telemetry flowing")
        assert headend.proc is not None
        headend.proc.kill9()
        down_at = time.time()
        wait_for_sync(lambda: agent.counters()["batches"] >= 60, 15, "the agent to buffer 3 s")
        while_down = agent.buffered_samples()

        headend.start()  # a new process: same ports, same database
        wait_for_sync(lambda: while_down <= stored_samples(database_url), 45, "the replay")
        up_at = time.time()
        wait_for_sync(
            lambda: all(ts.timestamp() > up_at for _, ts in agent.buffered_samples()),
            30,
            "the backlog from before the headend was back acked",
        )
        table = _everything_once(agent, database_url)
        for i in range(agent.assets):  # nothing missing across the outage
            assert longest_gap_s(table, agent.asset_id(i), down_at - 1, up_at) < 1.0
    finally:
        if agent.proc is not None:
            agent.proc.stop()


@pytest.mark.parametrize("policy", ["drop_oldest", "drop_newest"])
def test_full_buffer_drops_by_its_policy_counts_and_reports_it(
    database_url: str, temporal_env: WorkflowEnvironment, tmp_path: Path, policy: str
) -> None:
    port = free_port()
    agent = AgentProcess(
        "gwf",
        f"127.0.0.1:{port}",  # no headend there yet: everything stays in the buffer
        tmp_path / "agent",
        interval_s=INTERVAL_S,
        buffer={"max_bytes": 64 * 1024, "policy": policy},
    )
    headend = HeadendProcess(database_url, _temporal(temporal_env), tmp_path, grpc_port=port)
    started = time.time()
    agent.start()
    try:
        # The first samples the agent took, by its own clock: a busy machine may
        # take seconds to start it, so "the start" is this, not when we asked.
        held = wait_for_sync(agent.buffered_samples, 30, "the first batch", ignore=(sqlite3.Error,))
        first_taken = min(ts.timestamp() for _, ts in held)
        wait_for_sync(
            lambda: agent.counters()["dropped_batches"] >= 40, 30, "the buffer to overflow"
        )
        full_since = time.time()
        assert 48 * 1024 < agent.counters()["bytes"] <= 64 * 1024  # full, within its bytes
        headend.start()
        wait_for_sync(lambda: agent.counters()["batches"] < 10, 30, "the drain")
        drained_at = time.time()
        dropped = agent.counters()["dropped_batches"]
        wait_for_sync(
            lambda: (
                headend.metric(
                    "gridpilot_edge_dropped_batches_total", gateway_id="gwf", site="site-gwf"
                )
                == dropped
            ),
            10,
            "the headend to hear of the drops",
        )
        table = _everything_once(agent, database_url)
        c = agent.counters()
        assert c["dropped_batches"] == dropped
        # A batch holds the samples new since the last one: one per asset (10),
        # unless a poll landed late and its sample went into the next batch.
        assert 9 * dropped <= c["dropped_samples"] <= 10 * dropped
        first = min(ts.timestamp() for _, ts in table)
        for i in range(agent.assets):
            gap = longest_gap_s(table, agent.asset_id(i), first, time.time() - 2)
            if policy == "drop_oldest":
                # The oldest went: the table starts late. (While the backlog
                # drains, new batches may still push out unsent old ones, so
                # holes are possible until then; after it, none.)
                assert first > started + 2, first - started
                since = longest_gap_s(table, agent.asset_id(i), drained_at, time.time() - 2)
                assert since < 1.0
            else:
                # The newest were refused: the table starts at the start, then
                # has a hole from when the buffer filled until the headend came.
                assert abs(first - first_taken) < 1.0, first - first_taken
                assert gap > full_since - first_taken - 3
    finally:
        if agent.proc is not None:
            agent.proc.stop()
        if headend.proc is not None:
            headend.proc.stop()
