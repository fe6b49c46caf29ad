"""Time partitioning of the telemetry table.

With the ``timescaledb`` extension the table is a hypertable (1-day chunks,
compression after 7 days where the licence allows it). On plain PostgreSQL
it is natively partitioned by day: the app creates partitions ahead of time
(:func:`ensure_partitions`, at start-up and daily) and a DEFAULT partition
catches anything outside them, so an insert never fails for want of one.
The same queries work on both.
"""

from __future__ import annotations

from datetime import UTC, date, datetime, timedelta

from sqlalchemy import Connection, text

DAYS_AHEAD = 7
DAYS_BEHIND = 2

COLUMNS_SQL = """
    asset_id text NOT NULL,
    ts timestamptz NOT NULL,
    tenant_id text NOT NULL DEFAULT 'default',
    received_at timestamptz NOT NULL DEFAULT now(),
    p_kw double precision,
    q_kvar double precision,
    soc_pct double precision,
    available_charge_kw double precision,
    available_discharge_kw double precision,
    voltage_v double precision,
    frequency_hz double precision,
    state text,
    details jsonb NOT NULL DEFAULT '{}'::jsonb,
    CONSTRAINT pk_telemetry PRIMARY KEY (asset_id, ts)
"""


def timescale_available(conn: Connection) -> bool:
    row = conn.execute(
        text("SELECT 1 FROM pg_available_extensions WHERE name = 'timescaledb'")
    ).first()
    return row is not None


def is_hypertable(conn: Connection) -> bool:
    row = conn.execute(text("SELECT 1 FROM pg_extension WHERE extname = 'timescaledb'")).first()
    if row is None:
        return False
    return (
        conn.execute(
            text(
                "SELECT 1 FROM timescaledb_information.hypertables "
                "WHERE hypertable_name = 'telemetry'"
            )
        ).first()
        is not None
    )


def create_telemetry_table(conn: Connection) -> str:
    """Create the table; returns ``"hypertable"`` or ``"partitioned"``."""
    if timescale_available(conn):
        conn.execute(text("CREATE EXTENSION IF NOT EXISTS timescaledb"))
        conn.execute(text(f"CREATE TABLE telemetry ({COLUMNS_SQL})"))
        conn.execute(
            text(
                "SELECT create_hypertable('telemetry', 'ts', "
                "chunk_time_interval => interval '1 day', if_not_exists => true)"
            )
        )
        licence = conn.execute(text("SELECT current_setting('timescaledb.license', true)"))
        if licence.scalar() != "apache":
            conn.execute(
                text(
                    "ALTER TABLE telemetry SET (timescaledb.compress, "
                    "timescaledb.compress_segmentby = 'asset_id', "
                    "timescaledb.compress_orderby = 'ts DESC')"
                )
            )
            conn.execute(text("SELECT add_compression_policy('telemetry', interval '7 days')"))
        return "hypertable"
    conn.execute(text(f"CREATE TABLE telemetry ({COLUMNS_SQL}) PARTITION BY RANGE (ts)"))
    conn.execute(text("CREATE TABLE telemetry_pdefault PARTITION OF telemetry DEFAULT"))
    ensure_partitions(conn, datetime.now(UTC).date())
    return "partitioned"


def partition_name(day: date) -> str:
    return f"telemetry_p{day:%Y%m%d}"


def ensure_partitions(conn: Connection, today: date) -> list[str]:
    """Create the daily partitions from DAYS_BEHIND before to DAYS_AHEAD after
    ``today`` that do not exist yet; returns the names created. A no-op on a
    hypertable. A day whose rows already sit in the DEFAULT partition is
    skipped (PostgreSQL would refuse it) and stays served from there."""
    if is_hypertable(conn):
        return []
    existing = {
        r[0]
        for r in conn.execute(
            text(
                "SELECT c.relname FROM pg_inherits i JOIN pg_class c ON c.oid = i.inhrelid "
                "JOIN pg_class p ON p.oid = i.inhparent WHERE p.relname = 'telemetry'"
            )
        )
    }
    created = []
    for offset in range(-DAYS_BEHIND, DAYS_AHEAD + 1):
        day = today + timedelta(days=offset)
        name = partition_name(day)
        if name in existing:
            continue
        lo, hi = day.isoformat(), (day + timedelta(days=1)).isoformat()
        with conn.begin_nested():
            clash = conn.execute(
                text("SELECT 1 FROM telemetry_pdefault WHERE ts >= :lo AND ts < :hi LIMIT 1"),
                {"lo": lo, "hi": hi},
            ).first()
            if clash is not None:
                continue
            conn.execute(
                text(
                    f"CREATE TABLE {name} PARTITION OF telemetry "
                    f"FOR VALUES FROM ('{lo} 00:00+00') TO ('{hi} 00:00+00')"
                )
            )
        created.append(name)
    return created
