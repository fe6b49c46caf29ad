"""Telemetry history in buckets: the same answers on both backends.

On TimescaleDB the buckets are combined from the continuous aggregates
(``telemetry_1m`` below an hour, ``telemetry_1h`` from an hour up); on plain
PostgreSQL they are computed from the raw rows with ``date_bin``. Either way a
bucket covers whole widths (the window is widened to bucket edges), its
averages weigh every value once, and ``*_last`` is the value of the bucket's
newest sample.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import Any

from sqlalchemy import text
from sqlalchemy.ext.asyncio import AsyncConnection

from gridpilot.schema.rollups import FIELDS
from gridpilot.schema.tenancy import scoped_tenant

# Bucket names the API accepts, and their widths.
WIDTHS = {
    "1m": timedelta(minutes=1),
    "5m": timedelta(minutes=5),
    "15m": timedelta(minutes=15),
    "1h": timedelta(hours=1),
    "6h": timedelta(hours=6),
    "1d": timedelta(days=1),
}
ORIGIN = datetime(2000, 1, 1, tzinfo=UTC)  # date_bin's origin; time_bucket aligns the same


@dataclass(frozen=True)
class HistoryQuery:
    start: datetime
    end: datetime
    width: str
    asset_id: str | None = None
    site_id: str | None = None
    limit: int = 1000


def pick_width(start: datetime, end: datetime, max_points: int) -> str | None:
    """The finest bucket that keeps a series within ``max_points``; None if none does."""
    for name, width in WIDTHS.items():
        if (end - start) / width <= max_points:
            return name
    return None


def bucket_edges(start: datetime, end: datetime, width: timedelta) -> tuple[datetime, datetime]:
    """[start, end) widened to whole buckets."""
    lo = ORIGIN + (start - ORIGIN) // width * width
    last = ORIGIN + (end - timedelta(microseconds=1) - ORIGIN) // width * width
    return lo, last + width


def _raw_sql() -> str:
    cols = ", ".join(
        f"avg({f}) AS {f}_avg, min({f}) AS {f}_min, max({f}) AS {f}_max, "
        f"(array_agg({f} ORDER BY ts DESC))[1] AS {f}_last"
        for f in FIELDS
    )
    return (
        "SELECT asset_id, date_bin(:width, ts, :origin) AS bucket, count(*) AS samples, "
        f"{cols} FROM telemetry WHERE ts >= :lo AND ts < :hi"
    )


def _rollup_sql(view: str) -> str:
    cols = ", ".join(
        f"sum({f}_avg * {f}_n) / nullif(sum({f}_n), 0) AS {f}_avg, "
        f"min({f}_min) AS {f}_min, max({f}_max) AS {f}_max, "
        f"(array_agg({f}_last ORDER BY bucket DESC))[1] AS {f}_last"
        for f in FIELDS
    )
    return (
        "SELECT asset_id, date_bin(:width, bucket, :origin) AS bucket, "
        f"sum(samples)::bigint AS samples, {cols} FROM {view} "
        "WHERE bucket >= :lo AND bucket < :hi"
    )


async def history(conn: AsyncConnection, q: HistoryQuery, rollups: bool) -> list[Mapping[str, Any]]:
    """Buckets of ``q``, ordered by time then asset, at most ``q.limit``."""
    width = WIDTHS[q.width]
    lo, hi = bucket_edges(q.start, q.end, width)
    if rollups:
        sql = _rollup_sql("telemetry_1h" if width >= timedelta(hours=1) else "telemetry_1m")
    else:
        sql = _raw_sql()
    params: dict[str, Any] = {"width": width, "origin": ORIGIN, "lo": lo, "hi": hi}
    if q.asset_id:
        sql += " AND asset_id = :asset_id"
        params["asset_id"] = q.asset_id
    if q.site_id:
        sql += " AND asset_id IN (SELECT id FROM assets WHERE site_id = :site_id)"
        params["site_id"] = q.site_id
    tenant = scoped_tenant()
    if tenant is not None:  # telemetry has no row security: its tenant's assets only
        sql += " AND asset_id IN (SELECT id FROM assets WHERE tenant_id = :tenant)"
        params["tenant"] = tenant
    sql += " GROUP BY 1, 2 ORDER BY 2, 1 LIMIT :limit"
    params["limit"] = q.limit
    rows = (await conn.execute(text(sql), params)).mappings().all()
    return [{**r, "width_s": int(width.total_seconds())} for r in rows]
