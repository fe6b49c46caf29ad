"""Two headend replicas on one PostgreSQL and one Temporal, agents spread over
both: a dispatch submitted through replica A's REST reaches an agent streaming
to replica B; kill -9 of B moves its agent to A (its failover address) within
the fail-safe window, and the dispatches in flight end in one final state each,
every setpoint applied once.

The figures (kill → agent's session on A; kill → the in-flight dispatch
active; the active one's final state after its end) are printed: run with -s.
"""

from __future__ import annotations

import time
from collections.abc import Iterator
from datetime import datetime
from pathlib import Path
from typing import TYPE_CHECKING, Any
from uuid import uuid4

import httpx
import psycopg
import pytest
from gp_testing.procs import AgentProcess, HeadendProcess, running

from gridpilot.core.lifecycle import DispatchState

if TYPE_CHECKING:
    from temporalio.testing import WorkflowEnvironment

pytestmark = pytest.mark.e2e

FAILSAFE_S = 30.0  # the agents' fail-safe timeout: B's agent must be on A well before
ACTIVE_S = 45  # the dispatch that is active at the kill still runs after the failover
IN_FLIGHT_S = 30  # the one submitted just before the kill
TERMINAL = {s.value for s in DispatchState if s.terminal}


@pytest.fixture
def replicas(
    database_url: str, temporal_env: WorkflowEnvironment, tmp_path: Path
) -> Iterator[tuple[HeadendProcess, HeadendProcess]]:
    temporal = str(temporal_env.client.service_client.config.target_host)
    queue = f"tq-{uuid4().hex}"  # the workflows' queue, shared; delivery queues are per replica
    a, b = (
        HeadendProcess(database_url, temporal, tmp_path / n, headend_id=n, task_queue=queue)
        for n in ("replica-a", "replica-b")
    )
    with running(a, b):  # A migrates the database; B then starts on it at head
        yield a, b


@pytest.fixture
def agents(
    replicas: tuple[HeadendProcess, HeadendProcess], tmp_path: Path
) -> Iterator[tuple[AgentProcess, AgentProcess]]:
    a, b = replicas
    on_a, on_b = (
        AgentProcess(
            f"gw-{name}",
            first.grpc_address,
            tmp_path / f"agent-{name}",
            assets=2,
            interval_s=0.5,
            failover_addresses=[other.grpc_address],
            failsafe_timeout_s=FAILSAFE_S,
        )
        for name, first, other in (("on-a", a, b), ("on-b", b, a))
    )
    with running(on_a, on_b):
        yield on_a, on_b


def _live_sessions(url: str) -> dict[str, tuple[str, str, datetime]]:
    """gateway → (session id, replica, connected_at) of its live session."""
    with psycopg.connect(url) as conn:
        rows = conn.execute(
            "SELECT gateway_id, id, headend_id, connected_at FROM agent_sessions"
            " WHERE ended_at IS NULL"
        ).fetchall()
    return {g: (s, h, at) for g, s, h, at in rows}


def _transitions(url: str, dispatch_id: str) -> list[tuple[str, datetime]]:
    with psycopg.connect(url) as conn:
        return conn.execute(
            "SELECT to_state, at FROM dispatch_transitions WHERE dispatch_id = %s ORDER BY seq",
            (dispatch_id,),
        ).fetchall()


def _ended(url: str, dispatch_id: str) -> list[tuple[str, datetime]] | None:
    steps = _transitions(url, dispatch_id)
    return steps if steps and steps[-1][0] in TERMINAL else None


def test_killed_replica_moves_its_agents_to_the_other_and_dispatches_end_once(
    replicas: tuple[HeadendProcess, HeadendProcess],
    agents: tuple[AgentProcess, AgentProcess],
    database_url: str,
) -> None:
    a, b = replicas
    on_a, on_b = agents
    url = database_url

    def placed() -> dict[str, Any] | None:
        live = _live_sessions(url)
        want = {on_a.gateway_id: a.headend_id, on_b.gateway_id: b.headend_id}
        ok = all(g in live and live[g][1] == h for g, h in want.items())
        return live if ok else None

    before = a.wait(placed, 60, "each agent streaming to its own replica")
    token = a.token("operator")
    api = httpx.Client(
        base_url=f"{a.api}/api/v1", headers={"Authorization": f"Bearer {token}"}, timeout=10
    )

    def submit(asset_id: str, duration_s: int) -> str:
        r = api.post(
            "/dispatches", json={"asset_id": asset_id, "p_kw": 20, "duration_s": duration_s}
        )
        assert r.status_code == 201, r.text
        return str(r.json()["id"])

    # Through A's REST, to an asset whose agent streams to B.
    active = submit(on_b.asset_id(0), ACTIVE_S)
    a.wait(
        lambda: [s for s, _ in _transitions(url, active)][-1:] == ["active"],
        60,
        "the dispatch active at the agent on B",
    )
    in_flight = submit(on_b.asset_id(1), IN_FLIGHT_S)

    assert b.proc is not None
    killed_at = time.time()
    b.proc.kill9()

    def moved() -> dict[str, Any] | None:
        live = _live_sessions(url)
        ok = live.get(on_b.gateway_id, ("", "", None))[1] == a.headend_id
        return live if ok else None

    after = a.wait(moved, FAILSAFE_S * 2, "B's agent streaming to A")
    reconnect_s = after[on_b.gateway_id][2].timestamp() - killed_at
    assert reconnect_s < FAILSAFE_S, f"reconnected {reconnect_s:.1f} s after the kill"
    assert after[on_a.gateway_id][0] == before[on_a.gateway_id][0]  # A's own agent never moved

    ends = {
        d: a.wait(lambda d=d: _ended(url, d), ACTIVE_S + 120, f"{d} ended")
        for d in (active, in_flight)
    }
    for d, steps in ends.items():
        states = [s for s, _ in steps]
        assert len(set(states)) == len(states), (d, states)
        assert [s for s in states if s in TERMINAL] == [states[-1]], (d, states)
    assert [s for s, _ in ends[active]] == ["submitted", "sent", "acked", "active", "complete"]
    # Nothing applied twice: the agent took each setpoint once; the one that was
    # active when B died was never sent again.
    for d in (active, in_flight):
        assert len(on_b.log_lines("setpoint received", f"dispatch_id={d}")) == 1, d
    assert on_b.log_lines("setpoint redelivered", f"dispatch_id={active}") == []
    assert on_b.log_lines("longer than the fail-safe timeout") == []

    reached = dict(ends[in_flight])
    since_kill = {k: at.timestamp() - killed_at for k, at in reached.items()}
    past_end = ends[active][-1][1] - _end_at(url, active)
    print(
        f"\nreplica failover: B's agent streaming to A {reconnect_s:.2f} s after kill -9 "
        f"(fail-safe {FAILSAFE_S:g} s); the dispatch in flight: "
        + ", ".join(f"{k} +{v:.2f} s" for k, v in since_kill.items() if v > 0)
        + f" after the kill; the active one {ends[active][-1][0]} "
        f"{past_end.total_seconds():.2f} s after its end_at; in-flight redeliveries: "
        f"{len(on_b.log_lines('setpoint redelivered', f'dispatch_id={in_flight}'))}"
    )


def _end_at(url: str, dispatch_id: str) -> datetime:
    with psycopg.connect(url) as conn:
        row = conn.execute("SELECT end_at FROM dispatches WHERE id = %s", (dispatch_id,)).fetchone()
    assert row is not None
    end_at: datetime = row[0]
    return end_at
