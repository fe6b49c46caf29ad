"""Quotas: over a limit REST answers 429 with Retry-After and the limit named,
gRPC RESOURCE_EXHAUSTED with the limit named; each refusal is counted on
/metrics; a telemetry batch over the gateway's quota is refused before it is
acked (never stored, never acked: the agent sends it again)."""

from __future__ import annotations

from collections.abc import AsyncIterator
from datetime import UTC, datetime, timedelta

import grpc
import psycopg
import pytest
import pytest_asyncio
from gp_testing import RunningHeadend, TestPki, demo_assets, running_headend, wait_for
from temporalio.testing import WorkflowEnvironment

from gridpilot.schema.pb import agent_pb2 as pb
from gridpilot.wire.times import ts_to_pb

pytestmark = pytest.mark.integration


@pytest_asyncio.fixture(loop_scope="session")
async def limited(
    database_url: str, temporal_env: WorkflowEnvironment, task_queue: str, test_pki: TestPki
) -> AsyncIterator[RunningHeadend]:
    address = temporal_env.client.service_client.config.target_host
    async with running_headend(
        database_url,
        address,
        task_queue,
        test_pki,
        quota_api_requests_per_s=0.5,  # a bucket of 1, refilled every 2 s
        quota_dispatch_submits_per_min=1.0,  # a bucket of 1
        quota_enroll_requests_per_min=1.0,
        quota_telemetry_samples_per_s=100.0,  # a bucket of 1000
        quota_max_gateways=1,
        quota_max_assets=3,
    ) as running:
        yield running


def _metric(text: str, name: str) -> float | None:
    for line in text.splitlines():
        if line.startswith(name + " "):
            return float(line.split()[-1])
    return None


async def _metrics(h: RunningHeadend) -> str:
    async with h.client(await h.token("viewer")) as viewer:  # a bucket of its own
        r = await viewer.get("/metrics")
    assert r.status_code == 200, r.text
    return r.text


async def test_rest_limits_answer_429_naming_the_limit_and_are_counted(
    limited: RunningHeadend,
) -> None:
    async with limited.client(await limited.token("viewer")) as viewer:
        statuses = [(await viewer.get("/api/v1/sites")).status_code for _ in range(2)]
        assert statuses == [200, 429]
        r = await viewer.get("/api/v1/sites")
    assert r.status_code == 429
    assert 1 <= int(r.headers["retry-after"]) <= 2
    body = r.json()
    assert body["code"] == "quota_exceeded" and body["limit"] == "api_requests_per_s"
    assert "quota api_requests_per_s (0.5/s) exceeded for token:" in body["message"]
    # another token has a bucket of its own
    async with limited.client(await limited.token("viewer")) as other:
        assert (await other.get("/api/v1/sites")).status_code == 200

    # dispatch submits per tenant, whoever submits: the first is taken (and
    # refused for its own reason), the second is over the quota
    body_ = {"asset_id": "no-such-asset", "p_kw": 1, "duration_s": 60}
    async with limited.client(await limited.token("operator")) as op1:
        first = await op1.post("/api/v1/dispatches", json=body_)
    assert first.status_code == 422 and first.json()["field"] == "asset_id"
    async with limited.client(await limited.token("operator")) as op2:
        second = await op2.post("/api/v1/dispatches", json=body_)
    assert second.status_code == 429, second.text
    assert second.json()["limit"] == "dispatch_submits_per_min"
    assert int(second.headers["retry-after"]) >= 30  # one per minute

    # the public enrollment routes, per client address
    async with limited.client(None) as anonymous:
        token = {"token": "gpe_not-a-real-token"}
        one = await anonymous.post("/api/v1/enroll/describe", json=token)
        two = await anonymous.post("/api/v1/enroll/describe", json=token)
    assert one.status_code == 403 and one.json()["code"] == "token_unknown", one.text
    assert two.status_code == 429 and two.json()["limit"] == "enroll_requests_per_min"

    metrics = await _metrics(limited)
    exceeded = "gridpilot_quota_exceeded_total"
    assert _metric(metrics, f'{exceeded}{{limit="api_requests_per_s",tenant="default"}}') == 2
    assert _metric(metrics, f'{exceeded}{{limit="dispatch_submits_per_min",tenant="default"}}') == 1
    assert _metric(metrics, f'{exceeded}{{limit="enroll_requests_per_min",tenant="default"}}') == 1

    async with limited.client(None) as anonymous:
        doc = (await anonymous.get("/openapi.json")).json()
    submit = doc["paths"]["/api/v1/dispatches"]["post"]["responses"]
    assert "dispatch_submits_per_min" in submit["429"]["description"]
    assert "429" in doc["paths"]["/api/v1/sites"]["get"]["responses"]
    assert "429" in doc["paths"]["/api/v1/enroll"]["post"]["responses"]
    assert "429" not in doc["paths"]["/healthz"]["get"]["responses"]


def _batch(seq: int, n: int, start: datetime) -> pb.AgentMessage:
    samples = [
        pb.TelemetrySample(
            asset_id=("bess-1", "pv-1", "ev-1")[i % 3],
            ts=ts_to_pb(start + timedelta(milliseconds=i)),
            p_kw=1.0,
        )
        for i in range(n)
    ]
    return pb.AgentMessage(telemetry=pb.TelemetryBatch(batch_seq=seq, samples=samples))


def _stored(h: RunningHeadend) -> int:
    with psycopg.connect(h.settings.database_url) as conn:
        row = conn.execute("SELECT count(*) FROM telemetry").fetchone()
    return int(row[0]) if row else 0


async def test_grpc_limits_end_with_resource_exhausted_and_never_ack_a_refused_batch(
    limited: RunningHeadend,
) -> None:
    start = datetime.now(UTC) - timedelta(minutes=5)
    agent = limited.agent()
    await agent.connect(demo_assets())
    try:
        await agent.send(_batch(1, 1000, start))  # the whole bucket
        await wait_for(lambda: agent.first("telemetry_ack"), what="batch 1's ack")
        # 1000 more need 10 s of refill: refused before it is queued
        await agent.send(_batch(2, 999, start + timedelta(seconds=1)))
        await wait_for(lambda: agent.ended, what="the stream to end")
    finally:
        await agent.close()
    assert agent.error is not None
    assert agent.error.code() == grpc.StatusCode.RESOURCE_EXHAUSTED
    assert "quota telemetry_samples_per_s (100/s) exceeded for gateway gw-1" in (
        agent.error.details() or ""
    )
    assert [a.batch_seq for a in agent.of("telemetry_ack")] == [1]  # batch 2: never acked
    assert _stored(limited) == 1000

    # On its next session the agent sends again what was not acked; batches
    # that need a short refill (under 2 s) are held back (the stream is not
    # read meanwhile), then taken: 400 samples within 4 s of an empty bucket.
    again = limited.agent()
    await again.connect(demo_assets())
    try:
        await again.send(_batch(3, 200, start + timedelta(seconds=2)))
        await again.send(_batch(4, 200, start + timedelta(seconds=3)))
        acks = await wait_for(
            lambda: again.of("telemetry_ack") if len(again.of("telemetry_ack")) == 2 else None,
            timeout=10,
            what="acks 3 and 4",
        )
        assert [(a.batch_seq, a.accepted) for a in acks] == [(3, 200), (4, 200)]
    finally:
        await again.close()
    assert again.error is None or again.error.code() != grpc.StatusCode.RESOURCE_EXHAUSTED
    assert _stored(limited) == 1400

    # counts: a second gateway, or a Hello with a fourth asset, is over the tenant's
    other = limited.agent(gateway_id="gw-2", site_id="site-2")
    await other.connect([pb.AssetInfo(asset_id="bess-9", asset_type=pb.ASSET_TYPE_BESS)])
    await wait_for(lambda: other.ended, what="gw-2's refusal")
    await other.close()
    assert other.error is not None and other.error.code() == grpc.StatusCode.RESOURCE_EXHAUSTED
    assert "quota max_gateways (1) exceeded for tenant default" in (other.error.details() or "")
    more = limited.agent()
    fourth = pb.AssetInfo(asset_id="bess-4", asset_type=pb.ASSET_TYPE_BESS, p_max_kw=10)
    await more.connect([*demo_assets(), fourth])
    await wait_for(lambda: more.ended, what="the fourth asset's refusal")
    await more.close()
    assert more.error is not None and "quota max_assets (3) exceeded" in (
        more.error.details() or ""
    )

    metrics = await _metrics(limited)
    exceeded = "gridpilot_quota_exceeded_total"
    assert _metric(metrics, f'{exceeded}{{limit="telemetry_samples_per_s",tenant="default"}}') == 1
    assert _metric(metrics, f'{exceeded}{{limit="max_gateways",tenant="default"}}') == 1
    assert _metric(metrics, f'{exceeded}{{limit="max_assets",tenant="default"}}') == 1
    slowed = (
        'gridpilot_quota_throttled_seconds_total{limit="telemetry_samples_per_s",tenant="default"}'
    )
    assert (_metric(metrics, slowed) or 0) > 0
