"""The `gridpilot` command against real servers."""

from __future__ import annotations

import asyncio
import json
import os
import subprocess
import sys

import psycopg
import pytest
from gp_testing import RunningHeadend, ScriptedAgent, demo_assets, wait_for

from gridpilot.schema import db

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
    assert r.stdout.strip() == f"database at revision {db.current_revision(database_url)}"
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
    dispatch_id = json.loads(r.stdout)["id"]
    await wait_for(lambda: scripted_agent.first("setpoint"))

    r = await asyncio.to_thread(run, "list")
    assert dispatch_id in r.stdout
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
