"""`gridpilot tenant create|list|suspend|resume` and `token create --tenant`,
run as the app role (row-level security applies: the CLI works in the system
scope), audited like the REST routes."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import psycopg
import pytest

from gridpilot.ops.up_security import ensure_app_login
from gridpilot.schema import db
from gridpilot.schema.roles import APP_ROLE

pytestmark = pytest.mark.integration


def gridpilot(url: str, *args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "gridpilot", *args],
        env={**os.environ, "GRIDPILOT_DATABASE_URL": url},
        capture_output=True,
        text=True,
        timeout=120,
    )


def test_tenant_commands_as_the_app_role(database_url: str, tmp_path: Path) -> None:
    db.upgrade(database_url)
    url = ensure_app_login(database_url, APP_ROLE, tmp_path / "pw")
    made = gridpilot(url, "tenant", "create", "acme", "--name", "Acme Energy")
    assert made.returncode == 0, made.stderr
    assert made.stdout.split()[:3] == ["acme", "Acme", "Energy"] and "active" in made.stdout
    token = gridpilot(
        url, "token", "create", "--name", "ops", "--role", "admin", "--tenant", "acme"
    )
    assert token.returncode == 0 and token.stdout.startswith("gp_"), token.stderr
    assert "tenant acme" in token.stderr
    listed = gridpilot(url, "token", "list")
    assert any(line.split()[1:4] == ["ops", "admin", "acme"] for line in listed.stdout.splitlines())

    suspended = gridpilot(url, "tenant", "suspend", "acme")
    assert suspended.returncode == 0 and "SUSPENDED" in suspended.stdout, suspended.stderr
    rows = gridpilot(url, "tenant", "list").stdout.splitlines()
    assert [r.split()[0] for r in rows] == ["acme", "default"]
    assert "SUSPENDED" in rows[0] and "active" in rows[1]
    assert gridpilot(url, "tenant", "resume", "acme").returncode == 0

    bad = gridpilot(url, "tenant", "create", "Not An Id", "--name", "x")
    assert bad.returncode == 1 and "id:" in bad.stderr
    dup = gridpilot(url, "tenant", "create", "acme", "--name", "again")
    assert dup.returncode == 1 and "tenant acme exists" in dup.stderr
    unknown = gridpilot(
        url, "token", "create", "--name", "x", "--role", "viewer", "--tenant", "nope"
    )
    assert unknown.returncode == 1 and "tenant_id: no tenant 'nope'" in unknown.stderr
    with psycopg.connect(database_url) as conn:
        actions = conn.execute(
            "SELECT action FROM audit_log WHERE action LIKE 'tenant.%' ORDER BY id"
        ).fetchall()
    assert [a for (a,) in actions] == ["tenant.create", "tenant.suspend", "tenant.resume"]
