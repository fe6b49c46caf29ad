"""GET /api/v1/telemetry in buckets, on both backends: the rollups of
TimescaleDB (materialized, late rows re-materialized, real-time past the
watermark) give the same answers as date_bin over the raw rows of plain
PostgreSQL, both equal to what the samples say; `bucket=auto` keeps each
series within max_points."""

from __future__ import annotations

import asyncio
import math
from collections import defaultdict
from datetime import UTC, datetime, timedelta
from typing import Any

import psycopg
import pytest
from gp_testing import RunningHeadend
from gp_testing.backends import PgServer

pytestmark = pytest.mark.integration

T0 = datetime.now(UTC).replace(minute=0, second=0, microsecond=0) - timedelta(hours=4)
STEP_S = 7
Row = tuple[str, datetime, float | None, float | None, float | None]


def rows(first: int, last: int) -> list[Row]:
    """Samples first..last-1 of two assets, some fields missing (also a bucket's last)."""
    out: list[Row] = []
    for asset, phase in (("bess", 0.0), ("pv", 1.0)):
        for i in range(first, last):
            p = round(100 * math.sin(i / 50 + phase), 3)
            q = None if i % 3 == 0 else float(i % 17)
            soc = None if i % 5 == 0 else 50 + (i % 40) / 4
            out.append((asset, T0 + timedelta(seconds=i * STEP_S), p, q, soc))
    return out


def insert(url: str, batch: list[Row]) -> None:
    """The rows, and their assets (the API reads a tenant's assets' telemetry)."""
    with psycopg.connect(url) as conn, conn.cursor() as cur:
        cur.execute(
            "INSERT INTO sites (id, name) VALUES ('hist-site', 'S') ON CONFLICT DO NOTHING;"
            "INSERT INTO gateways (id, site_id) VALUES ('hist-gw', 'hist-site') "
            "ON CONFLICT DO NOTHING;"
            "INSERT INTO assets (id, site_id, gateway_id, asset_type, p_min_kw, p_max_kw) "
            "VALUES ('bess', 'hist-site', 'hist-gw', 'bess', -10, 10), "
            "('pv', 'hist-site', 'hist-gw', 'pv', 0, 10) ON CONFLICT DO NOTHING"
        )
        with cur.copy("COPY telemetry (asset_id, ts, p_kw, q_kvar, soc_pct) FROM STDIN") as copy:
            for r in batch:
                copy.write_row(r)


def refresh(url: str, until: datetime | None) -> None:
    with psycopg.connect(url, autocommit=True) as conn:
        for view in ("telemetry_1m", "telemetry_1h"):
            conn.execute(f"CALL refresh_continuous_aggregate('{view}', NULL, %s)", (until,))


def expected(samples: list[Row], width: timedelta, asset: str) -> list[dict[str, Any]]:
    groups: dict[datetime, list[Row]] = defaultdict(list)
    for r in samples:
        if r[0] == asset:
            groups[T0 + (r[1] - T0) // width * width].append(r)
    out = []
    for bucket, members in sorted(groups.items()):
        members.sort(key=lambda r: r[1])
        item: dict[str, Any] = {"bucket": bucket, "samples": len(members)}
        for k, name in ((2, "p_kw"), (3, "q_kvar"), (4, "soc_pct")):
            values = [r[k] for r in members if r[k] is not None]
            item[f"{name}_avg"] = sum(values) / len(values) if values else None
            item[f"{name}_min"] = min(values, default=None)
            item[f"{name}_max"] = max(values, default=None)
            item[f"{name}_last"] = members[-1][k]
        out.append(item)
    return out


async def buckets(headend: RunningHeadend, **params: object) -> list[dict[str, Any]]:
    r = await headend.api.get("/api/v1/telemetry", params={"limit": 10_000, **params})
    assert r.status_code == 200, r.text
    got: list[dict[str, Any]] = r.json()
    for item in got:
        item["bucket"] = datetime.fromisoformat(item["bucket"])
    return got


def same(got: list[dict[str, Any]], want: list[dict[str, Any]]) -> None:
    assert [g["bucket"] for g in got] == [w["bucket"] for w in want]
    for g, w in zip(got, want, strict=True):
        for key, value in w.items():
            close = value if value is None or key == "bucket" else pytest.approx(value, rel=1e-9)
            assert g[key] == close, (w["bucket"], key)


async def test_buckets_are_the_same_on_both_backends_and_match_the_samples(
    headend: RunningHeadend, pg_server: PgServer
) -> None:
    url = headend.settings.database_url
    first = rows(0, 1000)  # ~1 h 57 min from T0
    await asyncio.to_thread(insert, url, first)
    stored = list(first)
    if pg_server.timescaledb:
        # Materialize up to T0 + 1 h; later rows are answered in real time.
        await asyncio.to_thread(refresh, url, T0 + timedelta(hours=1))
    # A late batch (an agent replaying) into already materialized buckets,
    # then the policy's next run re-materializes what it invalidated.
    late = [r for r in rows(1000, 1100)]
    late = [(a, ts - timedelta(minutes=110), p, q, s) for a, ts, p, q, s in late]
    await asyncio.to_thread(insert, url, late)
    stored += late
    if pg_server.timescaledb:
        await asyncio.to_thread(refresh, url, T0 + timedelta(hours=1))
    window = {"start": T0.isoformat(), "end": (T0 + timedelta(hours=2)).isoformat()}
    for name, width in (
        ("1m", timedelta(minutes=1)),
        ("15m", timedelta(minutes=15)),
        ("1h", timedelta(hours=1)),
    ):
        got = await buckets(headend, asset_id="bess", bucket=name, **window)
        assert {g["width_s"] for g in got} == {int(width.total_seconds())}
        same(got, expected(stored, width, "bess"))
    both = await buckets(headend, asset_id="pv", bucket="5m", **window)
    same(both, expected(stored, timedelta(minutes=5), "pv"))
    if pg_server.timescaledb:  # the rollups hold the first hour, the rest is real-time
        with psycopg.connect(url) as conn:
            table = conn.execute(
                "SELECT format('%I.%I', materialization_hypertable_schema, "
                "materialization_hypertable_name) "
                "FROM timescaledb_information.continuous_aggregates "
                "WHERE view_name = 'telemetry_1m'"
            ).fetchone()
            assert table is not None
            materialized = conn.execute(f"SELECT count(*) FROM {table[0]}").fetchone()
        assert materialized == (2 * 60,)


async def test_auto_picks_the_finest_bucket_within_max_points(headend: RunningHeadend) -> None:
    url = headend.settings.database_url
    await asyncio.to_thread(insert, url, rows(0, 1500))
    window = {"start": T0.isoformat(), "end": (T0 + timedelta(hours=3)).isoformat()}
    got = await buckets(headend, asset_id="pv", bucket="auto", max_points=20, **window)
    assert {g["width_s"] for g in got} == {900} and len(got) == 12  # 5 min would be 36
    fine = await buckets(headend, asset_id="pv", bucket="auto", max_points=500, **window)
    assert {g["width_s"] for g in fine} == {60} and len(fine) == 175  # 1500 x 7 s
    r = await headend.api.get(
        "/api/v1/telemetry",
        params={
            "asset_id": "pv",
            "bucket": "auto",
            "max_points": 2,
            "start": T0.isoformat(),
            "end": (T0 + timedelta(days=3)).isoformat(),
        },
    )
    assert r.status_code == 422 and r.json()["field"] == "max_points"
