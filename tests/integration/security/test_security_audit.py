"""The audit log: append-only for the app, one hash chain under concurrency, tampering
found by `gridpilot audit verify`; dispatches carry their principal (also in Temporal);
the token and pki CLIs."""

from __future__ import annotations

import asyncio
import json
import os
import subprocess
import sys
from collections.abc import AsyncIterator
from pathlib import Path

import psycopg
import pytest
import pytest_asyncio
from gp_testing import RunningHeadend, ScriptedAgent, demo_assets, wait_for

from gridpilot.schema import db
from gridpilot.security.audit import Actor, AuditEvent, AuditLog

pytestmark = pytest.mark.integration


def gridpilot(*args: str, **env: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "gridpilot", *args],
        env={**os.environ, **env},
        capture_output=True,
        text=True,
        timeout=120,
    )


@pytest_asyncio.fixture(loop_scope="session")
async def audit(database_url: str) -> AsyncIterator[AuditLog]:
    db.upgrade(database_url)
    engine = db.async_engine(database_url)
    try:
        yield AuditLog(engine)
    finally:
        await engine.dispose()


def _event(i: int) -> AuditEvent:
    return AuditEvent(
        Actor(f"token:user-{i % 3}", "operator", "token", f"req-{i}"),
        "dispatch.submit",
        f"dsp-{i}",
        "ok",
        {"p_kw": i * 1.5, "n": i},
    )


async def test_concurrent_appends_make_one_chain_that_verifies(
    audit: AuditLog, database_url: str
) -> None:
    await asyncio.gather(*(audit.append(_event(i)) for i in range(50)))
    result = await audit.verify()
    assert result.ok and result.count == 50, result
    r = await asyncio.to_thread(gridpilot, "audit", "verify", GRIDPILOT_DATABASE_URL=database_url)
    assert r.returncode == 0, r.stderr
    assert r.stdout.strip() == f"audit log ok: 50 events, head 50:{result.head_hash}"


async def test_the_app_cannot_update_or_delete_and_tampering_is_detected(
    audit: AuditLog, database_url: str
) -> None:
    for i in range(5):
        await audit.append(_event(i))
    with psycopg.connect(database_url, autocommit=True) as conn:
        for sql in (
            "UPDATE audit_log SET outcome = 'refused' WHERE id = 3",
            "DELETE FROM audit_log WHERE id = 5",
            "TRUNCATE audit_log",
        ):
            with pytest.raises(psycopg.errors.InsufficientPrivilege, match="append-only"):
                conn.execute(sql)
        # Someone who can switch the trigger off changes a row behind its back.
        conn.execute("ALTER TABLE audit_log DISABLE TRIGGER audit_log_no_update_delete")
        conn.execute("UPDATE audit_log SET actor = 'token:someone-else' WHERE id = 3")
        conn.execute("ALTER TABLE audit_log ENABLE TRIGGER audit_log_no_update_delete")
    result = await audit.verify()
    assert not result.ok and result.bad_id == 3 and result.count == 2
    r = await asyncio.to_thread(gridpilot, "audit", "verify", GRIDPILOT_DATABASE_URL=database_url)
    assert r.returncode == 1
    assert "TAMPERED at id 3" in r.stderr


async def test_a_deleted_row_breaks_the_chain(audit: AuditLog, database_url: str) -> None:
    for i in range(4):
        await audit.append(_event(i))
    with psycopg.connect(database_url, autocommit=True) as conn:
        conn.execute("ALTER TABLE audit_log DISABLE TRIGGER USER")
        conn.execute("DELETE FROM audit_log WHERE id = 2")
        conn.execute("ALTER TABLE audit_log ENABLE TRIGGER USER")
    result = await audit.verify()
    assert not result.ok and result.bad_id == 3 and "row 2 is missing" in (result.problem or "")


async def test_dispatch_records_its_principal_in_the_row_the_memo_and_the_audit(
    headend: RunningHeadend, scripted_agent: ScriptedAgent
) -> None:
    await scripted_agent.connect(demo_assets())
    operator = headend.client(await headend.token("operator", name="alice"))
    async with operator:
        r = await operator.post(
            "/api/v1/dispatches",
            json={"asset_id": "bess-1", "p_kw": 20, "duration_s": 60},
            headers={"X-Request-ID": "req-alice-1"},
        )
        assert r.status_code == 201, r.text
        assert r.headers["x-request-id"] == "req-alice-1"
        dispatch_id = r.json()["id"]
        assert r.json()["submitted_by"] == "token:alice"
        await wait_for(lambda: scripted_agent.first("setpoint"))
        c = await operator.post(f"/api/v1/dispatches/{dispatch_id}/cancel", json={})
        assert c.status_code == 202
    assert headend.headend.client is not None
    handle = headend.headend.client.get_workflow_handle(dispatch_id)
    desc = await handle.describe()
    assert await desc.memo_value("submitted_by") == "token:alice"
    auditor = headend.client(await headend.token("auditor"))
    async with auditor:
        rows = (await auditor.get("/api/v1/audit", params={"target": dispatch_id})).json()
        jsonl = await auditor.get("/api/v1/audit", params={"format": "jsonl"})
        csv = await auditor.get("/api/v1/audit", params={"format": "csv"})
    assert [(x["action"], x["actor"], x["actor_role"], x["outcome"]) for x in rows] == [
        ("dispatch.submit", "token:alice", "operator", "attempt"),
        ("dispatch.submit", "token:alice", "operator", "ok"),
        ("dispatch.cancel", "token:alice", "operator", "attempt"),
        ("dispatch.cancel", "token:alice", "operator", "ok"),
    ]
    assert rows[0]["request_id"] == rows[1]["request_id"] == "req-alice-1"
    assert rows[1]["detail"]["asset_id"] == "bess-1"
    lines = [json.loads(x) for x in jsonl.text.splitlines()]
    assert jsonl.headers["content-type"].startswith("application/x-ndjson")
    assert {x["action"] for x in lines} >= {"token.create", "dispatch.submit", "dispatch.cancel"}
    assert csv.text.splitlines()[0].startswith("id,at,actor,")
    assert len(csv.text.splitlines()) == len(lines) + 1
    await wait_for(lambda: scripted_agent.first("release"))


def test_token_and_pki_commands(database_url: str, tmp_path: Path) -> None:
    env = {"GRIDPILOT_DATABASE_URL": database_url, "GRIDPILOT_PKI_DIR": str(tmp_path / "pki")}
    assert gridpilot("db", "upgrade", **env).returncode == 0
    r = gridpilot("token", "create", "--name", "scada", "--role", "viewer", **env)
    assert r.returncode == 0, r.stderr
    token = r.stdout.strip()
    assert token.startswith("gp_") and "shown once" in r.stderr
    listed = gridpilot("token", "list", **env)
    assert "scada" in listed.stdout and token not in listed.stdout + listed.stderr
    bad = gridpilot("token", "create", "--name", "x", "--role", "root", **env)
    assert bad.returncode == 2 and "root" in bad.stderr
    assert gridpilot("token", "revoke", "scada", **env).returncode == 0
    assert "scada" not in gridpilot("token", "list", **env).stdout

    assert gridpilot("pki", "init", **env).returncode == 0
    r = gridpilot("pki", "issue-gateway", "gw-9", **env)
    assert r.returncode == 0 and "spiffe://gridpilot/gateway/gw-9" in r.stdout
    r = gridpilot("pki", "revoke", "gw-9", "--reason", "decommissioned", **env)
    assert r.returncode == 0, r.stderr
    assert "1 certificate(s) revoked" in r.stdout
    with psycopg.connect(database_url) as conn:
        assert conn.execute(
            "SELECT count(*) FROM gateway_certificates WHERE gateway_id = 'gw-9' "
            "AND revoked_at IS NOT NULL"
        ).fetchone() == (1,)
        actions = conn.execute("SELECT action, actor FROM audit_log ORDER BY id").fetchall()
    assert [a for a, _ in actions] == ["token.create", "token.revoke", "gateway.revoke"]
    assert all(actor.startswith("cli:") for _, actor in actions)
    assert gridpilot("audit", "verify", **env).returncode == 0
