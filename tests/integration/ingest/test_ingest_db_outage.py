"""A 30 s database outage under a telemetry stream, with real processes.

A dedicated PostgreSQL (not the session's shared one) is stopped while two
edge agents stream into a headend whose ingest queue is kept small, so the
queue fills, the headend stops reading, and the agents buffer on disk.
"""

from __future__ import annotations

import time
from pathlib import Path
from typing import TYPE_CHECKING

import httpx
import psycopg
import pytest
from gp_testing.backends import PgServer
from gp_testing.procs import (
    AgentProcess,
    HeadendProcess,
    RssSampler,
    count_rows,
    longest_gap_s,
    stored_samples,
)

from gridpilot.ops.embedded import EmbeddedPostgres
from gridpilot.ops.processes import free_port

if TYPE_CHECKING:
    from temporalio.testing import WorkflowEnvironment

pytestmark = pytest.mark.integration

OUTAGE_S = 30.0
QUEUE_BYTES = 64 * 1024  # the smallest bound: fills in a second or two here
# The headend's RSS may not grow by more than this while the database is
# down (a stream it does not read costs it nothing but the bounded queue).
MAX_RSS_GROWTH_MB = 40.0
MAX_RSS_MB = 400.0


def test_headend_rides_out_a_30s_database_outage_and_every_sample_lands_once(
    tmp_path: Path, temporal_env: WorkflowEnvironment, pg_server: PgServer
) -> None:
    if pg_server.container:
        pytest.skip(
            "the outage stops a server of its own: an embedded one, so on TimescaleDB that is "
            "the [timescaledb] run, not the container's"
        )
    # Its own server of the backend under test (plain PostgreSQL or TimescaleDB).
    pg = EmbeddedPostgres(tmp_path / "pg", free_port(), timescaledb=pg_server.timescaledb)
    pg.start()
    try:
        with psycopg.connect(pg.url(), autocommit=True) as conn:
            conn.execute("CREATE DATABASE gridpilot")
        url = pg.url("gridpilot")
        _run_outage(pg, url, tmp_path, temporal_env.client.service_client.config.target_host)
    finally:
        pg.stop()


def _run_outage(pg: EmbeddedPostgres, url: str, tmp_path: Path, temporal: str) -> None:
    headend = HeadendProcess(
        url,
        temporal,
        tmp_path,
        extra_env={"GRIDPILOT_TELEMETRY_QUEUE_BYTES": str(QUEUE_BYTES)},
    )
    headend.start()
    agents = [
        AgentProcess(f"gw{i}", headend.grpc_address, tmp_path / f"agent{i}") for i in range(2)
    ]
    assert headend.proc is not None
    try:
        with RssSampler(headend.proc) as rss:
            for a in agents:
                a.start()
            token = headend.token("viewer")
            headend.wait(lambda: _acked(headend) >= 2 * 10 * 20, 30, "telemetry flowing")
            time.sleep(2)
            before = rss.peak_mb()

            pg.stop()
            down_at, down_wall = time.monotonic(), time.time()
            api = httpx.Client(
                base_url=headend.api, timeout=10, headers={"Authorization": f"Bearer {token}"}
            )
            degraded = headend.wait(lambda: _readyz(api, 503), 15, "/readyz degraded")
            assert degraded["status"] == "degraded"
            assert degraded["checks"]["database"].startswith("unavailable")
            headend.wait(
                lambda: _readyz(api, 503).get("checks", {}).get("telemetry_writer") == "retrying",
                15,
                "the writer to notice",
            )
            r = api.get("/api/v1/assets")
            assert r.status_code == 503, r.text
            assert r.json()["code"] == "database_unavailable"
            assert r.headers["retry-after"]
            # Backpressure: the queue is full and stays at its bound; agents buffer on disk.
            headend.wait(
                lambda: (headend.metric("gridpilot_ingest_queue_bytes") or 0) > QUEUE_BYTES / 2,
                15,
                "the ingest queue to fill",
            )
            while time.monotonic() - down_at < OUTAGE_S:
                assert (headend.metric("gridpilot_ingest_queue_bytes") or 0) <= QUEUE_BYTES
                time.sleep(1)
            assert all(a.counters()["batches"] > 50 for a in agents)  # several s of data each
            during = rss.peak_mb(since=down_at)

            pg.start()
            up_wall = time.time()
            headend.wait(lambda: _readyz(api, 200), 30, "/readyz ok again")
            # Everything buffered drains: the backlog goes down to the live trickle.
            headend.wait(lambda: all(a.counters()["batches"] < 10 for a in agents), 60, "drain")
            assert api.get("/api/v1/assets").status_code == 200
            for a in agents:
                assert a.proc is not None and a.proc.stop() == 0, a.proc.tail()
            assert rss.died_at is None, headend.proc.tail()
            peak = rss.hwm_mb()
        print(
            f"\nheadend RSS: before outage {before:.0f} MB, peak during {during:.0f} MB, "
            f"peak overall {peak:.0f} MB (queue bound {QUEUE_BYTES // 1024} KiB)"
        )
        assert during - before < MAX_RSS_GROWTH_MB
        assert peak < MAX_RSS_MB

        rows, distinct = count_rows(url)
        assert rows == distinct  # the key makes it so; this says nothing was stored twice
        table = stored_samples(url)
        total = 0
        for a in agents:
            c = a.counters()
            assert c["dropped_batches"] == 0
            left = a.buffered_samples()  # stopped with a few batches unacked: not lost
            mine = {s for s in table if s[0].startswith(a.gateway_id + "-")}
            assert len(mine | left) == c["stored_samples"]  # every buffered sample, once
            total += len(mine)
            for i in range(a.assets):  # and nothing missing from the outage window
                gap = longest_gap_s(mine, a.asset_id(i), down_wall + 1, up_wall - 1)
                assert gap < 1.0, (a.asset_id(i), gap)
        assert total == rows
    finally:
        for a in agents:
            if a.proc is not None:
                a.proc.stop()
        if headend.proc is not None:
            headend.proc.stop()


def _acked(headend: HeadendProcess) -> float:
    try:
        return headend.metric("gridpilot_ingest_rows_written") or 0
    except httpx.HTTPError:
        return 0


def _readyz(api: httpx.Client, status: int) -> dict:  # type: ignore[type-arg]
    try:
        r = api.get("/readyz")
    except httpx.HTTPError:
        return {}
    return r.json() if r.status_code == status else {}
