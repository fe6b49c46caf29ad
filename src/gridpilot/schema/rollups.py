"""Telemetry rollups: TimescaleDB continuous aggregates per asset, 1 minute and 1 hour.

Each bucket holds, for p_kw, q_kvar and soc_pct, the average, minimum,
maximum, last value (at the bucket's newest ``ts``) and the count of values
(to combine averages exactly into coarser buckets), plus the sample count.
Real-time aggregation is on (``materialized_only = false``): a query sees the
materialized buckets plus, past the refresh watermark, the raw rows. A late
or replayed batch invalidates the buckets it touches; the refresh policy
(start offset NULL: every invalidated bucket, however old) re-materializes
them at its next run. Plain PostgreSQL has no rollups: the history query
computes the same buckets from the raw rows with ``date_bin``
(:mod:`gridpilot.store.history`).
"""

from __future__ import annotations

from sqlalchemy import Connection, text

FIELDS = ("p_kw", "q_kvar", "soc_pct")
# view -> (bucket width, refresh every, end offset: the newest buckets stay real-time)
ROLLUPS = {
    "telemetry_1m": ("1 minute", "1 minute", "1 minute"),
    "telemetry_1h": ("1 hour", "10 minutes", "1 hour"),
}


def _select(width: str) -> str:
    cols = ", ".join(
        f"avg({f}) AS {f}_avg, min({f}) AS {f}_min, max({f}) AS {f}_max, "
        f"last({f}, ts) AS {f}_last, count({f}) AS {f}_n"
        for f in FIELDS
    )
    return (
        f"SELECT asset_id, time_bucket(interval '{width}', ts) AS bucket, "
        f"count(*) AS samples, {cols} FROM telemetry GROUP BY asset_id, bucket"
    )


def create_rollups(conn: Connection) -> None:
    """The continuous aggregates and their refresh policies (a hypertable only)."""
    for view, (width, every, end_offset) in ROLLUPS.items():
        conn.execute(
            text(
                f"CREATE MATERIALIZED VIEW {view} WITH (timescaledb.continuous, "
                f"timescaledb.materialized_only = false) AS {_select(width)} WITH NO DATA"
            )
        )
        conn.execute(
            text(
                f"SELECT add_continuous_aggregate_policy('{view}', start_offset => NULL, "
                f"end_offset => interval '{end_offset}', schedule_interval => interval '{every}')"
            )
        )


def drop_rollups(conn: Connection) -> None:
    for view in reversed(ROLLUPS):
        conn.execute(text(f"DROP MATERIALIZED VIEW IF EXISTS {view}"))


def has_rollups(conn: Connection) -> bool:
    return conn.execute(text("SELECT to_regclass('telemetry_1m') IS NOT NULL")).scalar() is True


def refresh_rollups(conn: Connection) -> None:
    """Materialize every invalidated bucket now (what the policies do on their schedule).
    Needs an autocommit connection: a refresh cannot run inside a transaction."""
    for view in ROLLUPS:
        conn.execute(text(f"CALL refresh_continuous_aggregate('{view}', NULL, NULL)"))
