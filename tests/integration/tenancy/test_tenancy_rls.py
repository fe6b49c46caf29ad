"""Row-level security, the second wall: as the app role, a deliberately
unfiltered SELECT in tenant A's scope returns none of tenant B's rows; with no
scope it returns nothing; only the system scope sees both. Writes of another
tenant's rows are refused. Every table with a tenant_id is guarded, but for
the documented exceptions. On every backend (telemetry may be a hypertable)."""

from __future__ import annotations

from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import psycopg
import pytest
import pytest_asyncio
from sqlalchemy import text
from sqlalchemy.exc import ProgrammingError
from sqlalchemy.ext.asyncio import AsyncEngine

from gridpilot.ops.up_security import ensure_app_login
from gridpilot.schema import db, tenancy
from gridpilot.schema.roles import APP_ROLE

pytestmark = pytest.mark.integration

GUARDED = (
    "sites",
    "gateways",
    "assets",
    "gateway_enrollments",
    "agent_sessions",
    "dispatches",
    "dispatch_transitions",
    "dispatch_late_acks",
    "ingest_watermarks",
    "api_tokens",
    "gateway_certificates",
    "enrollment_tokens",
    # metering and retention (migration 0016; their row security: 0017)
    "usage_hourly",
    "usage_active_assets",
    "usage_pushes",
    "retention_policies",
)
# With a tenant_id but no row security, by necessity (docs/security.md, Tenancy):
# COPY FROM and TimescaleDB's columnstore refuse it, and the audit log is one chain.
UNGUARDED = ("telemetry", "telemetry_latest", "audit_log")

SEED = """
INSERT INTO tenants (id, name) VALUES ('{t}', '{t}') ON CONFLICT DO NOTHING;
INSERT INTO sites (id, tenant_id, name) VALUES ('site-{t}', '{t}', 'S');
INSERT INTO gateways (id, tenant_id, site_id) VALUES ('gw-{t}', '{t}', 'site-{t}');
INSERT INTO assets (id, tenant_id, site_id, gateway_id, asset_type, p_min_kw, p_max_kw)
    VALUES ('bess-{t}', '{t}', 'site-{t}', 'gw-{t}', 'bess', -10, 10);
INSERT INTO gateway_enrollments (site_id, gateway_id, tenant_id, enrolled_by)
    VALUES ('site-{t}', 'gw-{t}', '{t}', 'test');
INSERT INTO agent_sessions (id, tenant_id, gateway_id, site_id, headend_id, task_queue)
    VALUES ('ses-{t}', '{t}', 'gw-{t}', 'site-{t}', 'h', 'q');
INSERT INTO dispatches (id, tenant_id, kind, asset_id, p_kw, duration_s, start_at, end_at,
    deliver_by, state) VALUES ('dsp-{t}', '{t}', 'asset', 'bess-{t}', 1, 60, now(), now(),
    now(), 'submitted');
INSERT INTO dispatch_transitions (dispatch_id, seq, tenant_id, to_state, at)
    VALUES ('dsp-{t}', 1, '{t}', 'submitted', now());
INSERT INTO dispatch_late_acks (dispatch_id, tenant_id, state, at)
    VALUES ('dsp-{t}', '{t}', 'acked', now());
INSERT INTO ingest_watermarks (gateway_id, tenant_id, last_batch_seq) VALUES ('gw-{t}', '{t}', 1);
INSERT INTO api_tokens (id, tenant_id, name, role, token_hash, prefix, created_by)
    VALUES ('tok-{t}', '{t}', 'admin', 'admin', 'hash-{t}', 'gp_x', 'test');
INSERT INTO gateway_certificates (fingerprint, tenant_id, gateway_id, serial, not_before,
    not_after) VALUES ('fp-{t}', '{t}', 'gw-{t}', '1', now(), now());
INSERT INTO enrollment_tokens (id, tenant_id, token_hash, prefix, gateway_id, site_id,
    created_by, expires_at) VALUES ('enr-{t}', '{t}', 'hash-{t}', 'gpe_x', 'gw-{t}', 'site-{t}',
    'test', now());
INSERT INTO usage_hourly (tenant_id, hour, metric, value)
    VALUES ('{t}', date_trunc('hour', now()), 'api_calls', 1);
INSERT INTO usage_active_assets (tenant_id, hour, asset_id)
    VALUES ('{t}', date_trunc('hour', now()), 'bess-{t}');
INSERT INTO usage_pushes (tenant_id, hour) VALUES ('{t}', date_trunc('hour', now()));
INSERT INTO retention_policies (tenant_id, updated_by) VALUES ('{t}', 'test');
"""


@pytest.fixture
def app_url(database_url: str, tmp_path: Path) -> str:
    """Tenants a and b seeded as the owner; the URL of the app role (no
    superuser, no BYPASSRLS, owns nothing)."""
    db.upgrade(database_url)
    with psycopg.connect(database_url, autocommit=True) as conn:
        for tenant in ("a", "b"):
            conn.execute(SEED.format(t=tenant))
    return ensure_app_login(database_url, APP_ROLE, tmp_path / "app-password")


@pytest_asyncio.fixture(loop_scope="session")
async def app_engine(app_url: str) -> AsyncIterator[AsyncEngine]:
    engine = db.async_engine(app_url)
    try:
        yield engine
    finally:
        await engine.dispose()


async def _tenants_seen(engine: AsyncEngine, table: str) -> set[str]:
    async with engine.connect() as conn:
        # Deliberately unfiltered: what a forgotten WHERE tenant_id = ... would read.
        rows = await conn.execute(text(f"SELECT tenant_id FROM {table}"))
        return {r[0] for r in rows}


async def test_an_unfiltered_select_in_tenant_a_scope_returns_none_of_b_rows(
    app_engine: AsyncEngine,
) -> None:
    for table in GUARDED:
        with tenancy.scope("a"):
            assert await _tenants_seen(app_engine, table) == {"a"}, table
        with tenancy.scope("b"):
            assert await _tenants_seen(app_engine, table) == {"b"}, table


async def test_no_scope_reads_nothing_and_the_system_scope_reads_every_tenant(
    app_engine: AsyncEngine,
) -> None:
    for table in GUARDED:
        with tenancy.scope(tenancy.NOBODY):
            assert await _tenants_seen(app_engine, table) == set(), table
        assert await _tenants_seen(app_engine, table) == set(), f"{table}: a forgotten scope"
        with tenancy.scope(tenancy.SYSTEM):
            assert {"a", "b"} <= await _tenants_seen(app_engine, table), table


async def test_writes_of_another_tenants_rows_are_refused(app_engine: AsyncEngine) -> None:
    with tenancy.scope("a"), pytest.raises(ProgrammingError, match="row-level security"):
        async with app_engine.begin() as conn:
            await conn.execute(
                text("INSERT INTO sites (id, tenant_id, name) VALUES ('x', 'b', 'x')")
            )
    with tenancy.scope("a"):
        async with app_engine.begin() as conn:
            moved = await conn.execute(text("UPDATE assets SET name = 'mine' WHERE true"))
            deleted = await conn.execute(text("DELETE FROM ingest_watermarks WHERE true"))
        assert moved.rowcount == 1 and deleted.rowcount == 1  # a's only
    with tenancy.scope(tenancy.SYSTEM):
        async with app_engine.connect() as conn:
            names = dict((await conn.execute(text("SELECT tenant_id, name FROM assets"))).all())
            marks = (await conn.execute(text("SELECT tenant_id FROM ingest_watermarks"))).all()
    assert names == {"a": "mine", "b": ""} and marks == [("b",)]


def test_every_tenant_table_is_guarded_but_the_documented_ones(database_url: str) -> None:
    """A new table with a tenant_id and no row security fails here."""
    db.upgrade(database_url)
    with psycopg.connect(database_url, autocommit=True) as conn:
        rows = conn.execute(
            "SELECT c.relname, c.relrowsecurity, c.relforcerowsecurity FROM pg_class c "
            "JOIN pg_attribute a ON a.attrelid = c.oid AND a.attname = 'tenant_id' "
            "WHERE c.relnamespace = 'public'::regnamespace AND c.relkind IN ('r', 'p') "
            "AND NOT c.relispartition"
        ).fetchall()
    flags = {name: (on, forced) for name, on, forced in rows}
    assert set(flags) == set(GUARDED) | set(UNGUARDED)
    assert {n for n, f in flags.items() if f == (True, True)} == set(GUARDED)


def test_the_migration_downgrades_and_upgrades_again(database_url: str) -> None:
    from alembic import command

    db.upgrade(database_url)
    command.downgrade(db._alembic_config(database_url), "0014")
    with psycopg.connect(database_url, autocommit=True) as conn:
        on = conn.execute("SELECT relrowsecurity FROM pg_class WHERE relname = 'assets'")
        assert on.fetchone() == (False,)
    db.upgrade(database_url)
    with psycopg.connect(database_url, autocommit=True) as conn:
        on = conn.execute("SELECT relrowsecurity FROM pg_class WHERE relname = 'assets'")
        assert on.fetchone() == (True,)


async def test_a_tenant_changing_its_retention_still_sees_another_tenants_legal_hold(
    app_url: str, app_engine: AsyncEngine, database_url: str
) -> None:
    """TimescaleDB's chunk-dropping jobs stay paused while any tenant holds:
    the check must see every tenant's policy, not only the caller's."""
    from gridpilot.store import retention

    with psycopg.connect(database_url, autocommit=True) as conn:
        conn.execute("UPDATE retention_policies SET legal_hold = true WHERE tenant_id = 'a'")
    with tenancy.scope("b"):
        async with app_engine.begin() as conn:
            assert await _tenants_seen_in(conn, "retention_policies") == {"b"}
            assert await retention.any_hold(conn) is True


async def _tenants_seen_in(conn: Any, table: str) -> set[str]:
    return {r[0] for r in await conn.execute(text(f"SELECT tenant_id FROM {table}"))}
