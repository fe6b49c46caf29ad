"""GET /api/v1/events: the console's live stream, authenticated like the API."""

from __future__ import annotations

import asyncio
import itertools

import httpx
import pytest
from gp_testing import RunningHeadend, ScriptedAgent, demo_assets, now_pb, wait_for

from gridpilot.schema.pb import agent_pb2 as pb

pytestmark = pytest.mark.integration


async def _events(response: httpx.Response, into: list[tuple[str, str]]) -> None:
    kind = ""
    async for line in response.aiter_lines():
        if line.startswith("event: "):
            kind = line.removeprefix("event: ")
        elif line.startswith("data: ") and kind:
            into.append((kind, line.removeprefix("data: ")))
            kind = ""


async def test_a_stream_says_what_changed_and_needs_a_token(
    headend: RunningHeadend, scripted_agent: ScriptedAgent
) -> None:
    async with headend.client(None) as anonymous:
        assert (await anonymous.get("/api/v1/events")).status_code == 401
    await scripted_agent.connect(demo_assets())
    seq = itertools.count(1)
    seen: list[tuple[str, str]] = []

    def told(part: str) -> bool:
        return any(kind == "changed" and part in data.split() for kind, data in seen)

    async def telemetry_told() -> bool:
        # A change before the poller's first look is its baseline, not news:
        # send a new sample until one is reported.
        sample = pb.TelemetrySample(asset_id="bess-1", ts=now_pb(), p_kw=5.0)
        batch = pb.TelemetryBatch(batch_seq=next(seq), samples=[sample])
        await scripted_agent.send(pb.AgentMessage(telemetry=batch))
        return told("telemetry")

    viewer = headend.client(await headend.token("viewer", name="watcher"))
    async with viewer, viewer.stream("GET", "/api/v1/events", timeout=None) as r:
        assert r.status_code == 200
        assert r.headers["content-type"].startswith("text/event-stream")
        reader = asyncio.create_task(_events(r, seen))
        try:
            await wait_for(telemetry_told, what="a telemetry change event", interval=0.5)
            body = {"asset_id": "bess-1", "p_kw": 10, "duration_s": 600}
            assert (await headend.api.post("/api/v1/dispatches", json=body)).status_code == 201
            await wait_for(lambda: told("dispatches"), what="a dispatch change event")
            await scripted_agent.close()
            await wait_for(lambda: told("agents"), what="an agent change event")
            assert all(data for kind, data in seen if kind == "changed")
        finally:
            reader.cancel()
