"""kill -9 of an edge agent holding a cloud dispatch, with real processes: the
agent's control journal (in its buffer file) brings the lease back at the next
start, or, if the lease ended while the agent was dead, says so to the headend
instead of leaving the dispatch to look as if it ran to its end."""

from __future__ import annotations

import sqlite3
import time
from collections.abc import Iterator
from datetime import datetime
from pathlib import Path
from typing import TYPE_CHECKING, Any

import httpx
import psycopg
import pytest
from gp_testing import wait_for_sync
from gp_testing.procs import AgentProcess, HeadendProcess

if TYPE_CHECKING:
    from temporalio.testing import WorkflowEnvironment

pytestmark = pytest.mark.integration

INTERVAL_S = 0.1
SETPOINT_KW = 40.0
DEFAULT_KW = 0.0  # AgentProcess's default_p_kw
TERMINAL = ("complete", "expired", "failed", "cancelled")


def _temporal(env: WorkflowEnvironment) -> str:
    return str(env.client.service_client.config.target_host)


@pytest.fixture
def headend(
    database_url: str, temporal_env: WorkflowEnvironment, tmp_path: Path
) -> Iterator[HeadendProcess]:
    h = HeadendProcess(database_url, _temporal(temporal_env), tmp_path)
    h.start()
    yield h
    if h.proc is not None:
        h.proc.stop()


@pytest.fixture
def api(headend: HeadendProcess) -> Iterator[httpx.Client]:
    token = headend.token("operator")
    with httpx.Client(
        base_url=f"{headend.api}/api/v1",
        headers={"Authorization": f"Bearer {token}"},
        timeout=10,
    ) as client:
        yield client


@pytest.fixture
def agent(headend: HeadendProcess, tmp_path: Path) -> Iterator[AgentProcess]:
    a = AgentProcess("gwr", headend.grpc_address, tmp_path / "agent", assets=3, interval_s=0.1)
    yield a
    if a.proc is not None:
        a.proc.stop()


def _dispatch(api: httpx.Client, dispatch_id: str) -> dict[str, Any]:
    r = api.get(f"/dispatches/{dispatch_id}")
    assert r.status_code == 200, r.text
    body: dict[str, Any] = r.json()
    return body


def _in_state(api: httpx.Client, dispatch_id: str, *states: str) -> dict[str, Any] | None:
    body = _dispatch(api, dispatch_id)
    return body if body["state"] in states else None


def _submit(api: httpx.Client, asset_id: str, duration_s: int) -> dict[str, Any]:
    r = api.post(
        "/dispatches", json={"asset_id": asset_id, "p_kw": SETPOINT_KW, "duration_s": duration_s}
    )
    assert r.status_code == 201, r.text
    body: dict[str, Any] = r.json()
    return body


def _transitions(body: dict[str, Any]) -> list[tuple[str, str | None]]:
    return [(t["to_state"], t["reason"]) for t in body["transitions"]]


def _p_kw_since(database_url: str, asset_id: str, since: float) -> list[tuple[datetime, float]]:
    """(ts, p_kw) of the asset's samples in the headend's table after an epoch time."""
    with psycopg.connect(database_url) as conn:
        rows = conn.execute(
            "SELECT ts, p_kw FROM telemetry WHERE asset_id = %s AND ts > to_timestamp(%s) "
            "ORDER BY ts",
            (asset_id, since),
        ).fetchall()
    return [(ts, float(p)) for ts, p in rows]


def _journaled(agent: AgentProcess) -> set[str]:
    """The dispatch ids of the leases in the agent's control journal."""
    db = sqlite3.connect(f"file:{agent.buffer_path}?mode=ro", uri=True, timeout=10)
    try:
        return {r[0] for r in db.execute("SELECT dispatch_id FROM control_leases")}
    finally:
        db.close()


def _known(api: httpx.Client, asset_id: str) -> bool:
    return api.get(f"/assets/{asset_id}").status_code == 200


def _connected(api: httpx.Client, gateway_id: str, not_session: str | None = None) -> str | None:
    """The gateway's session id while it is connected (and it is not ``not_session``)."""
    for a in api.get("/agents").json():
        if a["gateway_id"] == gateway_id and a["connected"] and a["session_id"] != not_session:
            return str(a["session_id"])
    return None


def _start_dispatch(
    api: httpx.Client, agent: AgentProcess, database_url: str, duration_s: int
) -> tuple[dict[str, Any], str]:
    """Start the agent, dispatch SETPOINT_KW on its first asset, wait until the
    dispatch is active and the table shows the asset at it. (dispatch, session)"""
    agent.start()
    asset_id = agent.asset_id(0)
    wait_for_sync(lambda: _known(api, asset_id), 30, "the agent's assets at the headend")
    session = wait_for_sync(lambda: _connected(api, agent.gateway_id), 30, "the agent connected")
    submitted = time.time()
    d = _submit(api, asset_id, duration_s)
    wait_for_sync(lambda: _in_state(api, d["id"], "active"), 15, "the dispatch active")
    wait_for_sync(
        lambda: any(p == SETPOINT_KW for _, p in _p_kw_since(database_url, asset_id, submitted)),
        15,
        "the asset at the setpoint in the table",
    )
    assert d["id"] in _journaled(agent)  # on disk before it was acked
    return d, session


def test_a_kill_9_of_the_agent_resumes_its_active_dispatch(
    headend: HeadendProcess, api: httpx.Client, agent: AgentProcess, database_url: str
) -> None:
    d, session = _start_dispatch(api, agent, database_url, duration_s=40)
    asset_id = agent.asset_id(0)

    assert agent.proc is not None
    agent.proc.kill9()
    restarted = time.time()
    agent.start()  # same config, same state dir: same buffer file, same journal
    wait_for_sync(lambda: _connected(api, agent.gateway_id, session), 30, "the agent reconnected")

    # The table shows the asset back at the setpoint, from samples taken after
    # the restart (the new process's simulator starts at 0 kW, so any 40 here
    # was written by the restarted agent).
    def resumed() -> float | None:
        for ts, p in _p_kw_since(database_url, asset_id, restarted):
            if p == SETPOINT_KW:
                return ts.timestamp()
        return None

    back_at = wait_for_sync(resumed, 20, "the asset back at the setpoint after the restart")
    assert back_at - restarted < 15, back_at - restarted
    # The start-up return to the default must not undo it: wait for samples the
    # restarted agent took 2 s after it was back (its own clock, not ours).
    wait_for_sync(
        lambda: _p_kw_since(database_url, asset_id, back_at + 2),
        30,
        "samples from 2 s after the asset was back at the setpoint",
    )
    after = _p_kw_since(database_url, asset_id, restarted)
    since_back = [p for ts, p in after if ts.timestamp() >= back_at]
    assert len(since_back) >= 10, after
    assert set(since_back) == {SETPOINT_KW}, after
    # Before the resume was written, the fresh simulator read its own 0 kW.
    assert {p for ts, p in after if ts.timestamp() < back_at} <= {DEFAULT_KW}, after
    # The agent's other assets were not dispatched and stay at their default.
    for i in (1, 2):
        other = _p_kw_since(database_url, agent.asset_id(i), restarted)
        assert other and {p for _, p in other} == {DEFAULT_KW}, (i, other)
    assert d["id"] in _journaled(agent)  # still held: it has not ended
    assert agent.proc is not None
    log = agent.proc.tail(200_000)
    assert "resuming the leases held before the agent restarted" in log, log[-4000:]
    assert 'state=ACCEPTED reason= detail="resumed after an agent restart"' in log, log[-4000:]

    # The headend ignored the repeated ACCEPTED / APPLIED: still active, no failure.
    body = _dispatch(api, d["id"])
    assert body["state"] == "active", _transitions(body)
    assert _transitions(body) == [
        ("submitted", None),
        ("sent", None),
        ("acked", None),
        ("active", None),
    ]
    assert body["applied_p_kw"] == SETPOINT_KW

    # Cancel to end it quickly: the restarted agent releases the asset.
    c = api.post(f"/dispatches/{d['id']}/cancel", json={})
    assert c.status_code == 202, c.text
    body = wait_for_sync(lambda: _in_state(api, d["id"], *TERMINAL), 15, "the dispatch ended")
    assert body["state"] == "cancelled", _transitions(body)
    assert _transitions(body)[-1] == ("cancelled", "CANCELLED_BY_OPERATOR")
    released = time.time()
    wait_for_sync(
        lambda: (
            (rows := _p_kw_since(database_url, asset_id, released + 0.5))
            and rows[-1][1] == DEFAULT_KW
        ),
        10,
        "the asset back at its default after the cancel",
    )
    wait_for_sync(lambda: d["id"] not in _journaled(agent), 10, "the lease out of the journal")


def test_a_dispatch_that_ended_while_the_agent_was_dead_is_reported_not_resumed(
    headend: HeadendProcess, api: httpx.Client, agent: AgentProcess, database_url: str
) -> None:
    d, session = _start_dispatch(api, agent, database_url, duration_s=6)
    asset_id = agent.asset_id(0)
    end_at = datetime.fromisoformat(d["end_at"]).timestamp()

    assert agent.proc is not None
    agent.proc.kill9()
    # The new process imports while the old one is dead and runs once the lease
    # has ended: past end_at, but well inside the workflow's END_GRACE (10 s after
    # end_at), during which an active dispatch waits for the agent's word. (A
    # cold start's imports alone can take most of that on a busy machine.)
    agent.start(held=True)
    time.sleep(max(0.0, end_at + 0.5 - time.time()))
    assert _dispatch(api, d["id"])["state"] == "active"  # nobody has ended it yet
    restarted = time.time()
    agent.release()
    wait_for_sync(lambda: _connected(api, agent.gateway_id, session), 30, "the agent reconnected")

    # The workflow (src/gridpilot/workflows/dispatch.py, _follow_acks) keeps an
    # active dispatch open until end_at + END_GRACE (10 s) for the agent's
    # COMPLETED ack; only then would it end it itself as complete ("ended by
    # the headend at end_at"). The restarted agent acks first, RELEASED /
    # AGENT_OFFLINE, which _apply_ack records as failed with that reason.
    body = wait_for_sync(lambda: _in_state(api, d["id"], *TERMINAL), 15, "the dispatch ended")
    assert body["state"] == "failed", _transitions(body)
    assert _transitions(body) == [
        ("submitted", None),
        ("sent", None),
        ("acked", None),
        ("active", None),
        ("failed", "AGENT_OFFLINE"),
    ]
    last = body["transitions"][-1]
    assert last["actor"] == "agent"
    assert last["detail"].startswith(
        "not resumed after an agent restart: the agent was not running when the lease ended"
    ), last
    ended = datetime.fromisoformat(last["at"]).timestamp()
    assert ended < end_at + 10, ended - end_at  # the agent's word, not the headend's timeout

    # Not resumed: the asset stays at its default after the restart, in samples
    # taken after the agent had said so (a resume would be applied before that).
    wait_for_sync(
        lambda: len(_p_kw_since(database_url, asset_id, ended)) >= 10,
        30,
        "10 samples taken after the agent reported the lease not resumed",
    )
    after = _p_kw_since(database_url, asset_id, restarted)
    assert len(after) >= 10, after
    assert {p for _, p in after} == {DEFAULT_KW}, after
    assert d["id"] not in _journaled(agent)
    assert agent.proc is not None
    assert "resuming the leases held" not in agent.proc.tail(200_000)
