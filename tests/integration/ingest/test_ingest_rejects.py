"""Bad samples are rejected at the gateway, counted, never stored; the rest of
the batch is; and the agents' drop reports show up in /metrics."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from typing import Any

import psycopg
import pytest
from gp_testing import RunningHeadend, ScriptedAgent, demo_assets, now_pb, wait_for

from gridpilot.schema.pb import agent_pb2 as pb
from gridpilot.wire.times import ts_to_pb

pytestmark = pytest.mark.integration
# Edge figures are read from the gateway's row: every API replica shows them.
GW = '{gateway_id="gw-1",site="site-1"}'


def _metric(text: str, name: str) -> float | None:
    for line in text.splitlines():
        if line.startswith(name + " "):
            return float(line.split()[-1])
    return None


async def test_bad_samples_are_rejected_counted_and_the_rest_of_the_batch_stored(
    headend: RunningHeadend, scripted_agent: ScriptedAgent
) -> None:
    await scripted_agent.connect(demo_assets())
    ts = now_pb()
    far_future = ts_to_pb(datetime.now(UTC) + timedelta(hours=1))
    good = [
        pb.TelemetrySample(asset_id="bess-1", ts=ts, p_kw=1.0),
        pb.TelemetrySample(asset_id="pv-1", ts=ts, p_kw=20.0),
    ]
    bad = [
        pb.TelemetrySample(asset_id="not-mine", ts=ts, p_kw=1.0),  # unknown asset
        pb.TelemetrySample(asset_id="ev-1", ts=ts, p_kw=float("nan")),
        pb.TelemetrySample(asset_id="ev-1", ts=ts, soc_pct=float("inf")),
        pb.TelemetrySample(asset_id="bess-1", ts=far_future, p_kw=1.0),  # beyond the skew
        pb.TelemetrySample(asset_id="pv-1", ts=ts, p_kw=1.0, state="ok\x00"),  # PG refuses NUL
    ]
    await scripted_agent.send(
        pb.AgentMessage(
            telemetry=pb.TelemetryBatch(batch_seq=3, samples=[bad[0], good[0], *bad[1:], good[1]])
        )
    )
    ack = await wait_for(lambda: scripted_agent.first("telemetry_ack"))
    assert (ack.batch_seq, ack.accepted, ack.rejected) == (3, 2, 5)
    reasons = list(ack.rejections)
    assert reasons[0].startswith("0: ") and "not-mine" in reasons[0]
    assert "p_kw is not a finite number" in reasons[1]
    assert "soc_pct is not a finite number" in reasons[2]
    assert "in the future" in reasons[3]
    assert "NUL" in reasons[4]

    with psycopg.connect(headend.settings.database_url) as conn:
        rows = conn.execute("SELECT asset_id, p_kw FROM telemetry ORDER BY asset_id").fetchall()
    assert rows == [("bess-1", 1.0), ("pv-1", 20.0)]

    metrics = (await headend.api.get("/metrics")).text
    assert _metric(metrics, "gridpilot_ingest_rejected_samples_total") == 5
    assert _metric(metrics, "gridpilot_ingest_batches_refused_total") == 0
    rejected = "gridpilot_telemetry_samples_rejected_total"
    assert _metric(metrics, f'{rejected}{{reason="unknown_asset",site="site-1"}}') == 1
    assert _metric(metrics, f'{rejected}{{reason="non_finite",site="site-1"}}') == 2
    assert _metric(metrics, f'{rejected}{{reason="future_ts",site="site-1"}}') == 1
    assert _metric(metrics, f'{rejected}{{reason="invalid_text",site="site-1"}}') == 1
    received = 'gridpilot_telemetry_samples_received_total{site="site-1"}'
    assert _metric(metrics, received) == 7

    # The next heartbeat writes the refusals to the gateway's row: the agents
    # API (and gridpilot doctor) show them, whichever replica is asked.
    await scripted_agent.send(pb.AgentMessage(heartbeat=pb.Heartbeat(time=now_pb())))

    async def refused() -> dict[str, object] | None:
        agents = (await headend.api.get("/api/v1/agents")).json()
        return next((a for a in agents if a["rejected_samples"] == 5), None)

    agent = await wait_for(refused)
    assert "NUL" in agent["last_rejection"]


async def test_heartbeats_report_the_agents_buffer_to_metrics(
    headend: RunningHeadend, scripted_agent: ScriptedAgent
) -> None:
    await scripted_agent.connect(demo_assets())
    await scripted_agent.send(
        pb.AgentMessage(
            heartbeat=pb.Heartbeat(
                time=now_pb(),
                dropped_batches=7,
                dropped_samples=21,
                buffered_batches=3,
                buffered_bytes=900,
            )
        )
    )

    async def reported() -> str:
        text = (await headend.api.get("/metrics")).text
        return text if f"gridpilot_edge_dropped_batches_total{GW} 7.0" in text else ""

    text = await wait_for(reported)
    assert f"gridpilot_edge_dropped_samples_total{GW} 21.0" in text
    assert f"gridpilot_edge_buffered_batches{GW} 3.0" in text
    assert f"gridpilot_edge_buffered_bytes{GW} 900.0" in text


async def test_last_drop_at_moves_only_when_the_drop_counts_grow(
    headend: RunningHeadend, scripted_agent: ScriptedAgent
) -> None:
    """The counts are cumulative: the agents API's last_drop_at says when a
    heartbeat last showed them grow (the console's "dropping at the edge")."""
    await scripted_agent.connect(demo_assets())

    async def heartbeat(dropped: int, buffered: int) -> dict[str, Any]:
        hb = pb.Heartbeat(time=now_pb(), dropped_batches=dropped, buffered_batches=buffered)
        await scripted_agent.send(pb.AgentMessage(heartbeat=hb))

        async def stored() -> dict[str, Any] | None:
            agent: dict[str, Any] = (await headend.api.get("/api/v1/agents")).json()[0]
            return agent if agent["buffered_batches"] == buffered else None

        return await wait_for(stored, what=f"heartbeat with {buffered} buffered stored")

    assert (await heartbeat(0, 1))["last_drop_at"] is None
    first = (await heartbeat(2, 2))["last_drop_at"]
    assert first is not None
    assert (await heartbeat(2, 3))["last_drop_at"] == first  # no new drops
    assert (await heartbeat(5, 4))["last_drop_at"] > first
