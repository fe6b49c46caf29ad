"""The app runs as a database role that cannot rewrite the audit log: it
owns nothing, is no superuser, may only SELECT and INSERT audit rows, cannot
switch the triggers off or set session_replication_role; the triggers fire
even in replica mode; and a whole headend works as that role."""

from __future__ import annotations

from collections.abc import AsyncIterator
from urllib.parse import urlsplit, urlunsplit

import psycopg
import pytest
import pytest_asyncio
from gp_testing import ScriptedAgent, TestPki, demo_assets, now_pb, running_headend, wait_for

from gridpilot.schema import db
from gridpilot.schema.pb import agent_pb2 as pb
from gridpilot.schema.roles import APP_ROLE
from gridpilot.security.audit import Actor, AuditEvent, AuditLog

pytestmark = pytest.mark.integration
PASSWORD = "app-role-test"  # the test server trusts local logins; set for completeness


def _as_app(owner_url: str) -> str:
    parts = urlsplit(owner_url)
    host = parts.netloc.rpartition("@")[2]
    return urlunsplit(parts._replace(netloc=f"{APP_ROLE}:{PASSWORD}@{host}"))


@pytest.fixture
def app_url(database_url: str) -> str:
    db.upgrade(database_url)  # as the owner
    with psycopg.connect(database_url, autocommit=True) as conn:
        conn.execute(f"ALTER ROLE {APP_ROLE} LOGIN PASSWORD '{PASSWORD}'")
    return _as_app(database_url)


@pytest_asyncio.fixture(loop_scope="session")
async def app_audit(app_url: str) -> AsyncIterator[AuditLog]:
    engine = db.async_engine(app_url)
    try:
        yield AuditLog(engine)
    finally:
        await engine.dispose()


async def test_the_app_role_appends_but_cannot_rewrite_or_switch_the_triggers_off(
    app_url: str, app_audit: AuditLog
) -> None:
    for i in range(3):
        await app_audit.append(AuditEvent(Actor("token:x"), "dispatch.submit", f"d{i}", "ok"))
    assert db.audit_bypass(app_url) is None
    with psycopg.connect(app_url, autocommit=True) as conn:
        assert conn.execute("SELECT current_user").fetchone() == (APP_ROLE,)
        for sql in (
            "SET session_replication_role = replica",
            "UPDATE audit_log SET outcome = 'refused' WHERE id = 2",
            "DELETE FROM audit_log WHERE id = 3",
            "TRUNCATE audit_log",
            "ALTER TABLE audit_log DISABLE TRIGGER audit_log_no_update_delete",
            "ALTER TABLE audit_log DISABLE TRIGGER USER",
            "DROP TRIGGER audit_log_no_update_delete ON audit_log",
            "DROP TABLE audit_log",
            "SET ROLE postgres",
        ):
            with pytest.raises(psycopg.errors.InsufficientPrivilege):
                conn.execute(sql)
    result = await app_audit.verify()
    assert result.ok and result.count == 3


def test_the_triggers_fire_even_in_replica_mode(app_url: str, database_url: str) -> None:
    with psycopg.connect(app_url, autocommit=True) as conn:
        conn.execute(
            "INSERT INTO audit_log (id, tenant_id, at, actor, actor_role, auth_method, action, "
            "target, outcome, request_id, detail, prev_hash, hash) VALUES (1, 'default', now(), "
            "'a', '', '', 'x', 't', 'ok', '', '{}', repeat('0', 64), repeat('1', 64))"
        )
    # Even a role that may set session_replication_role (the superuser owner here)
    # does not slip past the triggers that way.
    with psycopg.connect(database_url, autocommit=True) as conn:
        conn.execute("SET session_replication_role = replica")
        with pytest.raises(psycopg.errors.InsufficientPrivilege, match="append-only"):
            conn.execute("DELETE FROM audit_log")


def test_the_owner_is_flagged_and_a_privileged_app_role_is_refused(database_url: str) -> None:
    db.upgrade(database_url)
    assert db.audit_bypass(database_url) == "postgres is a superuser"
    with pytest.raises(ValueError, match="can bypass the audit"):
        db.upgrade(database_url, app_role="postgres")


async def test_a_headend_runs_as_the_app_role(
    app_url: str, temporal_env: object, task_queue: str, test_pki: TestPki
) -> None:
    address = temporal_env.client.service_client.config.target_host  # type: ignore[attr-defined]
    async with running_headend(app_url, address, task_queue, test_pki) as headend:
        agent: ScriptedAgent = headend.agent()
        try:
            await agent.connect(demo_assets())
            sample = pb.TelemetrySample(asset_id="bess-1", ts=now_pb(), p_kw=3.0)
            await agent.send(
                pb.AgentMessage(telemetry=pb.TelemetryBatch(batch_seq=1, samples=[sample]))
            )
            ack = await wait_for(lambda: agent.first("telemetry_ack"))
            assert ack.batch_seq == 1 and ack.rejected == 0
            r = await headend.api.post(
                "/api/v1/dispatches", json={"asset_id": "bess-1", "p_kw": 10, "duration_s": 30}
            )
            assert r.status_code == 201, r.text
            await wait_for(lambda: agent.first("setpoint"))
            c = await headend.api.post(f"/api/v1/dispatches/{r.json()['id']}/cancel", json={})
            assert c.status_code == 202, c.text
        finally:
            await agent.close()
        rows = await headend.headend.audit.query(target=r.json()["id"])
        assert [x["outcome"] for x in rows] == ["attempt", "ok", "attempt", "ok"]
        assert (await headend.headend.audit.verify()).ok


def test_partitions_the_app_role_may_not_create_fall_back_to_default(
    app_url: str, database_url: str
) -> None:
    with psycopg.connect(database_url, autocommit=True) as conn:
        conn.execute("DROP TABLE telemetry_p" + _day(3))
    assert db.maintain_partitions(app_url) is None  # not the owner: no partition, no error
    with psycopg.connect(app_url, autocommit=True) as conn:
        conn.execute(
            "INSERT INTO telemetry (asset_id, ts, p_kw) VALUES ('a', now() + interval '3 days', 1)"
        )
        assert conn.execute("SELECT count(*) FROM telemetry_pdefault").fetchone() == (1,)
    assert db.maintain_partitions(database_url) == []  # that day now lives in DEFAULT


def _day(offset: int) -> str:
    from datetime import UTC, datetime, timedelta

    return f"{datetime.now(UTC).date() + timedelta(days=offset):%Y%m%d}"


def test_migration_0008_downgrades_and_upgrades_again(app_url: str, database_url: str) -> None:
    from alembic import command

    cfg = db._alembic_config(database_url)
    command.downgrade(cfg, "0007")
    with psycopg.connect(app_url, autocommit=True) as conn:
        with pytest.raises(psycopg.errors.InsufficientPrivilege):
            conn.execute("SELECT count(*) FROM audit_log")
    db.upgrade(database_url)
    with psycopg.connect(app_url, autocommit=True) as conn:
        assert conn.execute("SELECT count(*) FROM audit_log").fetchone() == (0,)
        with pytest.raises(psycopg.errors.InsufficientPrivilege):
            conn.execute("DELETE FROM audit_log")


def test_db_upgrade_as_the_app_role_says_to_run_it_as_the_owner(app_url: str) -> None:
    import os
    import subprocess
    import sys

    r = subprocess.run(
        [sys.executable, "-m", "gridpilot", "db", "upgrade"],
        env={**os.environ, "GRIDPILOT_DATABASE_URL": app_url},
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert r.returncode == 1
    assert r.stderr.strip().splitlines() == [
        f"gridpilot: database role {APP_ROLE} does not own the tables; run `gridpilot db "
        "upgrade` as their owner (GRIDPILOT_DATABASE_URL of the owner)"
    ]
