"""Time partitioning of the telemetry table.

With the ``timescaledb`` extension (installed *and* preloaded by the server)
the table is a hypertable of 1-day chunks (:data:`CHUNK_INTERVAL`), compressed
by a policy segmented by asset and ordered by time, with a retention policy
(:func:`apply_policies`, from the settings). On plain PostgreSQL
it is natively partitioned by day: the app creates partitions ahead of time
(:func:`ensure_partitions`, at start-up and daily) and a DEFAULT partition
catches anything outside them, so an insert never fails for want of one.
The same queries work on both.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import UTC, date, datetime, timedelta

from sqlalchemy import Connection, text

DAYS_AHEAD = 7
DAYS_BEHIND = 2
# A site sends ~1 sample/s per asset: 86 400 rows (~19 MB with the key index,
# bench/ingest.py) per asset and day. One day per chunk keeps a 100-asset
# fleet's open chunk (~2 GB) well inside a 16 GB server's 25 %-of-memory rule, lets retention
# drop whole days, and compression works on days that are complete.
CHUNK_INTERVAL = "1 day"


@dataclass(frozen=True)
class TelemetryPolicy:
    """Compression and retention of a hypertable (0 days: no such policy)."""

    compress_after_days: int = 7
    retention_days: int = 365


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
    """Whether this database has TimescaleDB, or may create it: the server has
    it installed and preloads it (CREATE EXTENSION fails otherwise)."""
    row = conn.execute(
        text(
            "SELECT e.extname IS NOT NULL OR (a.name IS NOT NULL AND "
            "'timescaledb' = ANY(string_to_array(replace("
            "current_setting('shared_preload_libraries'), ' ', ''), ','))) "
            "FROM (SELECT 1) one "
            "LEFT JOIN pg_extension e ON e.extname = 'timescaledb' "
            "LEFT JOIN pg_available_extensions a ON a.name = 'timescaledb'"
        )
    ).scalar()
    return bool(row)


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


def create_telemetry_table(conn: Connection, *, plain: bool = False) -> str:
    """Create the table; returns ``"hypertable"`` or ``"partitioned"``
    (``plain``: partitioned even where TimescaleDB could be used)."""
    if timescale_available(conn) and not plain:
        conn.execute(text("CREATE EXTENSION IF NOT EXISTS timescaledb"))
        conn.execute(text(f"CREATE TABLE telemetry ({COLUMNS_SQL})"))
        conn.execute(
            text(
                "SELECT create_hypertable('telemetry', 'ts', "
                f"chunk_time_interval => interval '{CHUNK_INTERVAL}', if_not_exists => true)"
            )
        )
        if compression_licensed(conn):
            conn.execute(
                text(
                    "ALTER TABLE telemetry SET (timescaledb.compress, "
                    "timescaledb.compress_segmentby = 'asset_id', "
                    "timescaledb.compress_orderby = 'ts DESC')"
                )
            )
        apply_policies(conn, TelemetryPolicy())
        return "hypertable"
    conn.execute(text(f"CREATE TABLE telemetry ({COLUMNS_SQL}) PARTITION BY RANGE (ts)"))
    conn.execute(text("CREATE TABLE telemetry_pdefault PARTITION OF telemetry DEFAULT"))
    ensure_partitions(conn, datetime.now(UTC).date())
    return "partitioned"


def convert_to_hypertable(conn: Connection) -> int:
    """Move a plain-PostgreSQL deployment's telemetry into a hypertable (same
    name, columns, key and rows), with the default policies and, where
    licensed, the rollups; returns the rows moved. One transaction: on any
    error nothing changed. Writers must be stopped (agents buffer meanwhile)."""
    from .rollups import create_rollups, has_rollups

    if is_hypertable(conn):
        return 0
    if not timescale_available(conn):
        raise ValueError(
            "TimescaleDB is not available in this database: install the extension and add "
            "timescaledb to shared_preload_libraries, then restart the server"
        )
    conn.execute(text("LOCK TABLE telemetry IN ACCESS EXCLUSIVE MODE"))
    conn.execute(text("ALTER TABLE telemetry RENAME TO telemetry_plain"))
    conn.execute(text("ALTER TABLE telemetry_plain RENAME CONSTRAINT pk_telemetry TO pk_plain"))
    create_telemetry_table(conn)
    moved = conn.execute(text("INSERT INTO telemetry SELECT * FROM telemetry_plain")).rowcount
    conn.execute(text("DROP TABLE telemetry_plain CASCADE"))  # its partitions with it
    if compression_licensed(conn) and not has_rollups(conn):
        create_rollups(conn)
    return moved


def compression_licensed(conn: Connection) -> bool:
    """Compression and continuous aggregates are Timescale License parts."""
    licence = conn.execute(text("SELECT current_setting('timescaledb.license', true)"))
    return licence.scalar() != "apache"


def apply_policies(conn: Connection, policy: TelemetryPolicy) -> list[str]:
    """Make the hypertable's compression and retention jobs say what
    ``policy`` says; returns what changed (nothing when they already do, so
    a role that does not own the table passes when there is nothing to do)."""
    wanted = {
        "policy_compression": (
            "compress_after",
            policy.compress_after_days if compression_licensed(conn) else 0,
        ),
        "policy_retention": ("drop_after", policy.retention_days),
    }
    jobs = {
        r.proc_name: r.config.get(wanted[r.proc_name][0])
        for r in conn.execute(
            text(
                "SELECT proc_name, config FROM timescaledb_information.jobs "
                "WHERE hypertable_name = 'telemetry' AND proc_name IN "
                "('policy_compression', 'policy_retention')"
            )
        )
    }
    changed = []
    for proc, (_key, days) in wanted.items():
        want = f"{days} days" if days else None
        if jobs.get(proc) == want:
            continue
        kind = proc.removeprefix("policy_")
        conn.execute(text(f"SELECT remove_{kind}_policy('telemetry', if_exists => true)"))
        if want is not None:
            conn.execute(text(f"SELECT add_{kind}_policy('telemetry', interval '{want}')"))
        changed.append(f"{kind}={want or 'off'}")
    return changed


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
