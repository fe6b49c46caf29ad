"""The `gridpilot` command against real servers."""

from __future__ import annotations

import asyncio
import json
import os
import re
import subprocess
import sys
from pathlib import Path

import psycopg
import pytest
from gp_testing import (
    RunningHeadend,
    ScriptedAgent,
    agent_ack,
    demo_assets,
    dispatch_in_state,
    wait_for,
)

from gridpilot.ops.processes import free_port
from gridpilot.schema import db
from gridpilot.schema.pb import agent_pb2 as pb

pytestmark = pytest.mark.integration


def gridpilot(*args: str, **env: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "gridpilot", *args],
        env={**os.environ, **env},
        capture_output=True,
        text=True,
        timeout=120,
    )


def test_db_upgrade_then_reset_needs_yes(database_url: str) -> None:
    r = gridpilot("db", "upgrade", GRIDPILOT_DATABASE_URL=database_url)
    assert r.returncode == 0, r.stderr
    assert r.stdout.strip() == (
        f"database at revision {db.current_revision(database_url)} "
        "(telemetry on plain PostgreSQL)"  # the session's server does not preload TimescaleDB
    )
    with psycopg.connect(database_url, autocommit=True) as conn:
        conn.execute("INSERT INTO sites (id, name) VALUES ('s', 'S')")

    r = gridpilot("db", "reset", GRIDPILOT_DATABASE_URL=database_url)
    assert r.returncode == 2 and "--yes" in r.stderr
    r = gridpilot(
        "db",
        "reset",
        "--yes",
        GRIDPILOT_DATABASE_URL=database_url,
        GRIDPILOT_ENVIRONMENT="production",
    )
    assert r.returncode == 2 and "production" in r.stderr
    with psycopg.connect(database_url) as conn:
        assert conn.execute("SELECT count(*) FROM sites").fetchone() == (1,)

    r = gridpilot("db", "reset", "--yes", GRIDPILOT_DATABASE_URL=database_url)
    assert r.returncode == 0, r.stderr
    with psycopg.connect(database_url) as conn:
        assert conn.execute("SELECT count(*) FROM sites").fetchone() == (0,)


async def test_dispatch_commands_submit_list_show_cancel(
    headend: RunningHeadend, scripted_agent: ScriptedAgent
) -> None:
    await scripted_agent.connect(demo_assets())
    api = f"http://127.0.0.1:{headend.settings.api_port}"

    def run(*args: str) -> subprocess.CompletedProcess[str]:
        return gridpilot(
            "dispatch", *args, GRIDPILOT_API_URL=api, GRIDPILOT_TOKEN=headend.admin_token
        )

    r = await asyncio.to_thread(
        run, "submit", "--asset", "bess-1", "--p-kw", "25", "--duration-s", "300"
    )
    assert r.returncode == 0, r.stderr
    # The same summary as `show`.
    first = r.stdout.splitlines()[0]
    assert first.startswith("dispatch ")
    dispatch_id = first.removeprefix("dispatch ")
    assert "target     asset bess-1  p_kw 25  for 300 s" in r.stdout and "timeline" in r.stdout
    # The agent applies it as a real one would: the cancel below then has a live
    # dispatch to release, however long the CLI calls in between take (an unacked
    # one expires after the test headend's 5 s ack timeout, with nothing to release).
    sp = await wait_for(lambda: scripted_agent.first("setpoint"))
    await scripted_agent.send(agent_ack(sp, pb.ACK_STATE_ACCEPTED))
    await scripted_agent.send(agent_ack(sp, pb.ACK_STATE_APPLIED, applied_p_kw=25))
    await wait_for(lambda: dispatch_in_state(headend.api, dispatch_id, "active"))

    r = await asyncio.to_thread(run, "list")
    assert r.returncode == 0, r.stderr
    header, row = r.stdout.splitlines()[:2]
    assert header.split() == [
        "ID", "STATE", "P_KW", "TARGET", "PRIO", "START", "(UTC)", "END", "(UTC)", "REASON"
    ]  # fmt: skip
    assert row.split()[:5] == [dispatch_id, "active", "25.0", "asset", "bess-1"]
    assert header.index("STATE") == row.index("active")  # aligned columns
    assert re.search(r"\d{4}-\d\d-\d\d \d\d:\d\d:\d\dZ", row)
    r = await asyncio.to_thread(run, "list", "--json")
    assert [d["id"] for d in json.loads(r.stdout)] == [dispatch_id]
    r = await asyncio.to_thread(run, "show", "--json", dispatch_id)
    assert json.loads(r.stdout)["p_kw"] == 25
    r = await asyncio.to_thread(run, "cancel", dispatch_id)
    assert r.returncode == 0, r.stderr
    await wait_for(lambda: scripted_agent.first("release"))

    r = await asyncio.to_thread(
        run, "submit", "--asset", "bess-1", "--p-kw", "9999", "--duration-s", "300"
    )
    assert r.returncode == 1
    assert "422" in r.stderr and "outside" in r.stderr and "Traceback" not in r.stderr
    r = await asyncio.to_thread(
        run, "submit", "--json", "--asset", "bess-1", "--p-kw", "5", "--duration-s", "60"
    )
    assert r.returncode == 0, r.stderr
    assert json.loads(r.stdout)["p_kw"] == 5


def _without_endpoint_env(**env: str) -> dict[str, str]:
    drop = ("GRIDPILOT_API_URL", "GRIDPILOT_TOKEN")
    base = {k: v for k, v in os.environ.items() if k not in drop}
    return {**base, **env}


async def test_dispatch_commands_find_the_local_up_and_its_token(
    headend: RunningHeadend, tmp_path: Path
) -> None:
    # A `gridpilot up` on non-default ports, as its up.json in the default data dir says.
    data = tmp_path / "xdg"
    demo = data / "gridpilot" / "demo"
    demo.mkdir(parents=True)
    token_file = demo / "admin-token"
    token_file.write_text(headend.admin_token + "\n")
    port = headend.settings.api_port
    (demo / "up.json").write_text(
        json.dumps(
            {"api_url": f"http://127.0.0.1:{port}/api/v1", "admin_token_file": str(token_file)}
        )
    )

    def run(*args: str, **env: str) -> subprocess.CompletedProcess[str]:
        return subprocess.run(
            [sys.executable, "-m", "gridpilot", "dispatch", *args],
            env=_without_endpoint_env(XDG_DATA_HOME=str(data), **env),
            capture_output=True,
            text=True,
            timeout=120,
        )

    r = await asyncio.to_thread(run, "list", "--json")
    assert r.returncode == 0, r.stderr
    assert json.loads(r.stdout) == []

    # No up running: the error says where it looked and how to point elsewhere.
    (demo / "up.json").unlink()
    r = await asyncio.to_thread(run, "list", GRIDPILOT_API_URL=f"http://127.0.0.1:{free_port()}")
    assert r.returncode == 1 and "Traceback" not in r.stderr
    assert "cannot reach" in r.stderr and "GRIDPILOT_API_URL" in r.stderr
    r = await asyncio.to_thread(run, "list", GRIDPILOT_API_URL=f"http://127.0.0.1:{port}")
    assert r.returncode == 1 and "401" in r.stderr and "GRIDPILOT_TOKEN" in r.stderr

    r = await asyncio.to_thread(run, "--help")
    assert "GRIDPILOT_API_URL" in r.stdout and "GRIDPILOT_TOKEN" in r.stdout
