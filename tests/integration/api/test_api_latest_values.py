"""GET /api/v1/telemetry/latest: every asset's latest sample in one call."""

from __future__ import annotations

import pytest
from gp_testing import RunningHeadend, ScriptedAgent, demo_assets, now_pb, wait_for

from gridpilot.schema.pb import agent_pb2 as pb

pytestmark = pytest.mark.integration


async def test_latest_values_of_a_site_in_one_call_equal_each_assets(
    headend: RunningHeadend, scripted_agent: ScriptedAgent
) -> None:
    await scripted_agent.connect(demo_assets())
    samples = [
        pb.TelemetrySample(asset_id="bess-1", ts=now_pb(), p_kw=12.5, soc_pct=61.0),
        pb.TelemetrySample(asset_id="pv-1", ts=now_pb(), p_kw=31.0),
    ]
    batch = pb.TelemetryBatch(batch_seq=1, samples=samples)
    await scripted_agent.send(pb.AgentMessage(telemetry=batch))
    await wait_for(lambda: scripted_agent.first("telemetry_ack"))
    api = headend.api
    each = [
        (await api.get(f"/api/v1/assets/{a}/telemetry/latest")).json() for a in ("bess-1", "pv-1")
    ]
    site = await api.get("/api/v1/telemetry/latest", params={"site_id": "site-1"})
    assert site.status_code == 200 and site.json() == each  # ev-1 has none yet: no entry
    assert (await api.get("/api/v1/telemetry/latest")).json() == each
    one = await api.get("/api/v1/telemetry/latest", params={"asset_id": "pv-1"})
    assert one.json() == each[1:]
    assert (await api.get("/api/v1/telemetry/latest", params={"site_id": "nowhere"})).json() == []
    viewer = headend.client(await headend.token("viewer", name="reader"))
    async with viewer:
        assert (await viewer.get("/api/v1/telemetry/latest")).status_code == 200
    async with headend.client(None) as anonymous:
        assert (await anonymous.get("/api/v1/telemetry/latest")).status_code == 401
