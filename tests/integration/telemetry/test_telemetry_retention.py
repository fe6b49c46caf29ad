"""Per-tenant telemetry retention on both backends: each tenant's rows older
than its retention go (a tenant without a policy keeps its own), a tenant on
legal hold keeps everything (and, on
TimescaleDB, the chunk-dropping retention job is paused while any hold lasts)."""

from __future__ import annotations

import asyncio
from datetime import UTC, datetime, timedelta

import psycopg
import pytest

from gridpilot.schema import db
from gridpilot.security.audit import Actor, AuditLog
from gridpilot.store import retention
from gridpilot.store.retention import RetentionPolicy

pytestmark = pytest.mark.integration
NOW = datetime.now(UTC).replace(microsecond=0)


def query(url: str, sql: str) -> list[tuple[object, ...]]:
    with psycopg.connect(url) as conn:
        return conn.execute(sql).fetchall()  # type: ignore[arg-type]


def _seed(url: str) -> None:
    """Each tenant's asset, and telemetry rows as the ingest COPY writes them:
    every one with tenant_id 'default' (the owner is the asset's tenant)."""
    with psycopg.connect(url, autocommit=True) as conn:
        conn.execute(
            "INSERT INTO tenants (id, name) VALUES ('acme', 'Acme') ON CONFLICT DO NOTHING"
        )
        for tenant, asset in (("default", "a-1"), ("acme", "b-1")):
            conn.execute(
                "INSERT INTO sites (id, tenant_id, name) VALUES (%s, %s, 'S')",
                (f"site-{asset}", tenant),
            )
            conn.execute(
                "INSERT INTO gateways (id, tenant_id, site_id) VALUES (%s, %s, %s)",
                (f"gw-{asset}", tenant, f"site-{asset}"),
            )
            conn.execute(
                "INSERT INTO assets (id, tenant_id, site_id, gateway_id, asset_type, p_min_kw, "
                "p_max_kw) VALUES (%s, %s, %s, %s, 'bess', -10, 10)",
                (asset, tenant, f"site-{asset}", f"gw-{asset}"),
            )
        for asset, days in (("a-1", 10), ("a-1", 1), ("b-1", 10), ("b-1", 3)):
            conn.execute(
                "INSERT INTO telemetry (asset_id, ts, p_kw) VALUES (%s, %s, 1)",
                (asset, NOW - timedelta(days=days)),
            )


def _left(url: str) -> list[tuple[object, ...]]:
    """(the owning tenant, age in days) of every telemetry row left."""
    return query(
        url,
        "SELECT a.tenant_id, (extract(epoch FROM now() - t.ts) / 86400)::int FROM telemetry t "
        "JOIN assets a ON a.id = t.asset_id ORDER BY a.tenant_id, t.ts",
    )


def _retention_jobs_scheduled(url: str) -> list[object]:
    if not query(url, "SELECT 1 FROM pg_extension WHERE extname = 'timescaledb'"):
        return []
    return [
        r[0]
        for r in query(
            url,
            "SELECT scheduled FROM timescaledb_information.jobs "
            "WHERE proc_name = 'policy_retention'",
        )
    ]


async def test_old_telemetry_goes_per_tenant_except_under_legal_hold(database_url: str) -> None:
    await asyncio.to_thread(db.upgrade, database_url)
    await asyncio.to_thread(_seed, database_url)
    engine = db.async_engine(database_url)
    audit = AuditLog(engine)
    ext = "SELECT 1 FROM pg_extension WHERE extname = 'timescaledb'"
    timescale = bool(await asyncio.to_thread(query, database_url, ext))
    if timescale:  # the hypertable's retention job (GRIDPILOT_TELEMETRY_RETENTION_DAYS)
        assert await asyncio.to_thread(_retention_jobs_scheduled, database_url) == [True]
    try:
        hold = RetentionPolicy("default", telemetry_days=5, legal_hold=True, hold_reason="case 42")
        saved = await retention.put(engine, hold, Actor("token:admin"), audit)
        assert saved.legal_hold and saved.updated_by == "token:admin"
        if timescale:  # a dropped chunk would take the held tenant's rows too
            assert await asyncio.to_thread(_retention_jobs_scheduled, database_url) == [False]

        # acme has no policy: nothing of it goes; default is on hold: nothing either
        assert await retention.enforce_telemetry(engine, NOW) == {}
        assert len(await asyncio.to_thread(_left, database_url)) == 4
        acme = RetentionPolicy("acme", telemetry_days=7)
        await retention.put(engine, acme, Actor("token:admin"), audit)
        assert await retention.enforce_telemetry(engine, NOW) == {"acme": 1}
        assert await asyncio.to_thread(_left, database_url) == [
            ("acme", 3),
            ("default", 10),
            ("default", 1),
        ]

        lifted = RetentionPolicy("default", telemetry_days=5)
        await retention.put(engine, lifted, Actor("token:admin"), audit)
        if timescale:
            assert await asyncio.to_thread(_retention_jobs_scheduled, database_url) == [True]
        assert await retention.enforce_telemetry(engine, NOW) == {"default": 1, "acme": 0}
        assert await asyncio.to_thread(_left, database_url) == [("acme", 3), ("default", 1)]
        rows = await audit.query(action="retention.update")
        assert [(r["target"], r["detail"]["legal_hold"]) for r in rows] == [
            ("default", True),
            ("acme", False),
            ("default", False),
        ]
        assert (await audit.verify()).ok
    finally:
        await engine.dispose()
