"""kill -9 of the headend process during an active dispatch: a new headend
finishes it at its end time, with exactly one final state."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import psycopg
import pytest
from gp_testing import (
    ScriptedAgent,
    TestPki,
    agent_ack,
    create_token,
    db_enroller,
    demo_assets,
    tls_env,
    wait_for,
)

from gridpilot.ops.processes import free_port
from gridpilot.schema.pb import agent_pb2 as pb

pytestmark = pytest.mark.e2e


class HeadendProcess:
    def __init__(self, env: dict[str, str], log: Path) -> None:
        self.env, self.log = env, log
        self.proc: subprocess.Popen[bytes] | None = None

    def start(self) -> None:
        self.proc = subprocess.Popen(
            [sys.executable, "-m", "gridpilot", "headend"],
            env=self.env,
            stdout=self.log.open("ab"),
            stderr=subprocess.STDOUT,
        )

    def kill9(self) -> None:
        assert self.proc is not None
        os.kill(self.proc.pid, signal.SIGKILL)
        self.proc.wait(10)

    def stop(self) -> None:
        if self.proc is not None and self.proc.poll() is None:
            self.proc.terminate()
            try:
                self.proc.wait(20)
            except subprocess.TimeoutExpired:
                self.proc.kill()


@pytest.fixture
def headend_env(
    database_url: str, temporal_env: Any, task_queue: str, test_pki: TestPki
) -> Iterator[dict[str, str]]:
    yield {
        **os.environ,
        **tls_env(test_pki),
        "GRIDPILOT_DATABASE_URL": database_url,
        "GRIDPILOT_TEMPORAL_ADDRESS": temporal_env.client.service_client.config.target_host,
        "GRIDPILOT_TASK_QUEUE": task_queue,
        "GRIDPILOT_HEADEND_ID": "crash-test",
        "GRIDPILOT_AGENT_SILENCE_S": "3600",  # its scripted agents send no heartbeats
        "GRIDPILOT_API_PORT": str(free_port()),
        "GRIDPILOT_GRPC_LISTEN": f"127.0.0.1:{free_port()}",
    }


async def _ready(api: str) -> bool:
    try:
        async with httpx.AsyncClient() as c:
            return (await c.get(f"{api}/readyz")).status_code == 200
    except httpx.HTTPError:
        return False


async def _connect(address: str, pki: TestPki, database_url: str) -> ScriptedAgent | None:
    agent = ScriptedAgent(address, pki=pki, enroll=db_enroller(database_url))
    await agent.connect(demo_assets())
    if agent.error is None:
        return agent
    await agent.close()
    return None


def _transitions(url: str, dispatch_id: str) -> list[tuple[str, str | None]]:
    with psycopg.connect(url) as conn:
        return conn.execute(
            "SELECT to_state, reason FROM dispatch_transitions WHERE dispatch_id = %s ORDER BY seq",
            (dispatch_id,),
        ).fetchall()


async def test_killed_headend_dispatch_still_completes_at_its_end(
    headend_env: dict[str, str], tmp_path: Path, test_pki: TestPki
) -> None:
    api = f"http://127.0.0.1:{headend_env['GRIDPILOT_API_PORT']}"
    grpc_address = headend_env["GRIDPILOT_GRPC_LISTEN"]
    headend = HeadendProcess(headend_env, tmp_path / "headend.log")
    headend.start()
    agents: list[ScriptedAgent] = []
    try:
        await wait_for(lambda: _ready(api), timeout=60)
        agent = await wait_for(
            lambda: _connect(grpc_address, test_pki, headend_env["GRIDPILOT_DATABASE_URL"]),
            timeout=20,
        )
        agents.append(agent)
        token = await create_token(headend_env["GRIDPILOT_DATABASE_URL"])
        auth = {"Authorization": f"Bearer {token}"}
        async with httpx.AsyncClient(base_url=api, headers=auth) as c:
            r = await c.post(
                "/api/v1/dispatches", json={"asset_id": "bess-1", "p_kw": 15, "duration_s": 15}
            )
            dispatch_id = r.json()["id"]
        sp = await wait_for(lambda: agent.first("setpoint"))
        await agent.send(agent_ack(sp, pb.ACK_STATE_ACCEPTED))
        await agent.send(agent_ack(sp, pb.ACK_STATE_APPLIED, applied_p_kw=15))
        url = headend_env["GRIDPILOT_DATABASE_URL"]
        await wait_for(lambda: [s for s, _ in _transitions(url, dispatch_id)][-1] == "active")

        headend.kill9()
        await wait_for(lambda: agent.ended, timeout=15)

        headend.start()
        await wait_for(lambda: _ready(api), timeout=60)
        again = await wait_for(
            lambda: _connect(grpc_address, test_pki, headend_env["GRIDPILOT_DATABASE_URL"]),
            timeout=20,
        )
        agents.append(again)
        # The agent never confirms the end: the workflow ends it at end_at and
        # tells the agent (on its new stream) to release.
        release = await wait_for(lambda: again.first("release"), timeout=60)
        assert release.dispatch_id == dispatch_id
        assert release.reason == pb.REASON_CODE_LEASE_ENDED
        await wait_for(lambda: _transitions(url, dispatch_id)[-1][0] == "complete", timeout=30)
        states = [s for s, _ in _transitions(url, dispatch_id)]
        assert states == ["submitted", "sent", "acked", "active", "complete"]
    finally:
        for a in agents:
            await a.close()
        headend.stop()
