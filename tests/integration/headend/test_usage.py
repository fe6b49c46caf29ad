"""Usage metering: accepted telemetry, API calls and dispatch outcomes show
per tenant and hour at GET /api/v1/usage (JSON, JSON lines, CSV); a closed
hour is pushed to the webhook signed, with its idempotency key, and retried
until the receiver takes it."""

from __future__ import annotations

import asyncio
import hashlib
import hmac
import json
import threading
from collections.abc import AsyncIterator, Iterator
from datetime import UTC, datetime, timedelta
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any

import psycopg
import pytest
import pytest_asyncio
from gp_testing import RunningHeadend, TestPki, demo_assets, running_headend, wait_for
from pydantic import SecretStr
from temporalio.testing import WorkflowEnvironment

from gridpilot.schema.pb import agent_pb2 as pb
from gridpilot.wire.times import ts_to_pb

pytestmark = pytest.mark.integration
SECRET = "usage-hook-secret"


class Receiver:
    """An HTTP endpoint that answers with the next of ``statuses`` (then 200)."""

    def __init__(self) -> None:
        self.requests: list[tuple[dict[str, str], bytes, int]] = []
        self.statuses = [503]
        receiver = self

        class Handler(BaseHTTPRequestHandler):
            def do_POST(self) -> None:
                body = self.rfile.read(int(self.headers["Content-Length"]))
                status = receiver.statuses.pop(0) if receiver.statuses else 200
                receiver.requests.append((dict(self.headers.items()), body, status))
                self.send_response(status)
                self.send_header("Content-Length", "0")
                self.end_headers()

            def log_message(self, *args: Any) -> None:
                pass

        self.server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.url = f"http://127.0.0.1:{self.server.server_port}/usage"


@pytest.fixture
def receiver() -> Iterator[Receiver]:
    r = Receiver()
    thread = threading.Thread(target=r.server.serve_forever, daemon=True)
    thread.start()
    yield r
    r.server.shutdown()


@pytest_asyncio.fixture(loop_scope="session")
async def metered(
    database_url: str,
    temporal_env: WorkflowEnvironment,
    task_queue: str,
    test_pki: TestPki,
    receiver: Receiver,
) -> AsyncIterator[RunningHeadend]:
    address = temporal_env.client.service_client.config.target_host
    async with running_headend(
        database_url,
        address,
        task_queue,
        test_pki,
        usage_flush_s=0.3,
        usage_webhook_url=receiver.url,
        usage_webhook_secret=SecretStr(SECRET),
    ) as running:
        yield running


def _this_hour(rows: list[dict[str, Any]]) -> dict[str, Any] | None:
    hour = datetime.now(UTC).replace(minute=0, second=0, microsecond=0)
    return next((r for r in rows if datetime.fromisoformat(r["hour"]) == hour), None)


async def test_usage_is_metered_per_hour_and_exported(metered: RunningHeadend) -> None:
    agent = metered.agent()
    await agent.connect(demo_assets())
    start = datetime.now(UTC) - timedelta(minutes=1)
    samples = [
        pb.TelemetrySample(
            asset_id=("bess-1", "pv-1")[i % 2], ts=ts_to_pb(start + timedelta(seconds=i)), p_kw=1.0
        )
        for i in range(40)
    ]
    bad = pb.TelemetrySample(asset_id="ev-1", ts=ts_to_pb(start), p_kw=float("nan"))
    await agent.send(
        pb.AgentMessage(telemetry=pb.TelemetryBatch(batch_seq=1, samples=[*samples, bad]))
    )
    await wait_for(lambda: agent.first("telemetry_ack"), what="the ack")
    async with metered.client(await metered.token("operator")) as op:
        r = await op.post(
            "/api/v1/dispatches", json={"asset_id": "bess-1", "p_kw": 5, "duration_s": 60}
        )
        assert r.status_code == 201, r.text
        dispatch_id = r.json()["id"]
        assert (
            await op.post(f"/api/v1/dispatches/{dispatch_id}/cancel", json={})
        ).status_code == 202

    viewer = metered.client(await metered.token("viewer"))
    async with viewer:

        async def metered_hour() -> dict[str, Any] | None:
            rows = (await viewer.get("/api/v1/usage")).json()
            row = _this_hour(rows)
            return row if row and row["dispatches_cancelled"] == 1 else None

        row = await wait_for(metered_hour, timeout=30, what="this hour's usage")
        assert row["tenant_id"] == "default"
        assert row["samples_ingested"] == 40  # the NaN sample was refused: not usage
        assert row["active_assets"] == 2
        assert row["bytes_stored"] > 40 * 8
        assert row["api_calls"] >= 3  # the operator's submit, cancel, and these reads
        assert row["dispatches_complete"] == 0
        csv = await viewer.get("/api/v1/usage", params={"format": "csv"})
        lines = csv.text.splitlines()
        assert lines[0].startswith("tenant_id,hour,samples_ingested,bytes_stored,api_calls,")
        assert any(",40," in line for line in lines[1:])
        jsonl = await viewer.get("/api/v1/usage", params={"format": "jsonl"})
        assert jsonl.headers["content-type"].startswith("application/x-ndjson")
        assert any(json.loads(x)["samples_ingested"] == 40 for x in jsonl.text.splitlines())
        bad_range = await viewer.get(
            "/api/v1/usage", params={"from": "2026-01-02T00:00:00Z", "to": "2026-01-01T00:00:00Z"}
        )
        assert bad_range.status_code == 422 and bad_range.json()["field"] == "to"
        too_long = await viewer.get(
            "/api/v1/usage", params={"from": "2025-01-01T00:00:00Z", "to": "2026-01-01T00:00:00Z"}
        )
        assert too_long.status_code == 422 and too_long.json()["field"] == "from"
    await agent.close()


async def test_a_closed_hour_is_pushed_signed_and_retried_until_taken(
    metered: RunningHeadend, receiver: Receiver
) -> None:
    hour = datetime.now(UTC).replace(minute=0, second=0, microsecond=0) - timedelta(hours=2)
    with psycopg.connect(metered.settings.database_url, autocommit=True) as conn:
        conn.execute(
            "INSERT INTO usage_hourly (tenant_id, hour, metric, value) VALUES "
            "('default', %s, 'samples_ingested', 7200), ('default', %s, 'api_calls', 12)",
            (hour, hour),
        )

    def pushed() -> tuple[int, int] | None:
        with psycopg.connect(metered.settings.database_url) as conn:
            row = conn.execute(
                "SELECT attempts, 1 FROM usage_pushes WHERE tenant_id = 'default' AND hour = %s",
                (hour,),
            ).fetchone()
        return None if row is None else (int(row[0]), int(row[1]))

    assert await wait_for(lambda: asyncio.to_thread(pushed), timeout=30, what="the push") == (2, 1)
    # the first answer was 503: the same hour again, same key, then taken
    mine = [(h, b, s) for h, b, s in receiver.requests if json.loads(b)["hour"] == hour.isoformat()]
    assert [s for _, _, s in mine] == [503, 200]
    headers, body, _ = mine[-1]
    assert (
        headers["Idempotency-Key"]
        == f"usage:default:{hour.isoformat()}"
        == mine[0][0]["Idempotency-Key"]
    )
    expected = hmac.new(
        SECRET.encode(), headers["X-GridPilot-Timestamp"].encode() + b"." + body, hashlib.sha256
    ).hexdigest()
    assert headers["X-GridPilot-Signature"] == f"sha256={expected}"
    sent = json.loads(body)
    assert sent["tenant_id"] == "default" and sent["idempotency_key"] == headers["Idempotency-Key"]
    assert sent["usage"]["samples_ingested"] == 7200 and sent["usage"]["api_calls"] == 12
    # the current hour is not closed: never pushed
    now_hour = datetime.now(UTC).replace(minute=0, second=0, microsecond=0).isoformat()
    assert all(json.loads(b)["hour"] != now_hour for _, b, _ in receiver.requests)
