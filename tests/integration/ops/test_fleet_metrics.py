"""/metrics shows the fleet from the database: agents and assets per site, the
newest sample's age, dispatch outcomes and latencies, commit lag, stream
connects and disconnects, certificate expiry, DB and Temporal up."""

from __future__ import annotations

from datetime import UTC, datetime

import pytest
from gp_testing import (
    RunningHeadend,
    ScriptedAgent,
    agent_ack,
    demo_assets,
    dispatch_up_to,
    now_pb,
    wait_for,
)
from gp_testing.metrics import value

from gridpilot.schema.pb import agent_pb2 as pb
from gridpilot.security.tls import certificate_expiry

pytestmark = pytest.mark.integration
SITE = {"site": "site-1"}


async def test_metrics_show_the_site_its_samples_and_a_dispatch_from_submit_to_complete(
    headend: RunningHeadend, scripted_agent: ScriptedAgent
) -> None:
    await scripted_agent.connect(demo_assets())
    await scripted_agent.send(
        pb.AgentMessage(
            telemetry=pb.TelemetryBatch(
                batch_seq=1, samples=[pb.TelemetrySample(asset_id="bess-1", ts=now_pb(), p_kw=1)]
            )
        )
    )
    await wait_for(lambda: scripted_agent.first("telemetry_ack"))
    dispatch_id, sp = await dispatch_up_to(headend.api, scripted_agent, "active")
    await scripted_agent.send(
        agent_ack(sp, pb.ACK_STATE_COMPLETED, reason=pb.REASON_CODE_LEASE_ENDED)
    )

    async def finished() -> str | None:
        text = (await headend.api.get("/metrics")).text
        done = value(text, "gridpilot_dispatches_finished_total", state="complete", reason="none")
        return text if done == 1 else None

    text = await wait_for(finished)
    assert value(text, "gridpilot_site_agents_connected", **SITE) == 1
    assert value(text, "gridpilot_site_assets", **SITE) == 3
    age = value(text, "gridpilot_site_newest_sample_age_seconds", **SITE)
    assert age is not None and 0 <= age < 120
    assert value(text, "gridpilot_agent_connects_total", **SITE) == 1
    assert value(text, "gridpilot_telemetry_batches_received_total", **SITE) == 1
    assert value(text, "gridpilot_telemetry_samples_written_total") == 1
    lag = value(text, "gridpilot_telemetry_commit_lag_seconds_bucket", le="+Inf")
    assert lag == 1
    for name in (
        "gridpilot_dispatch_submit_to_sent_seconds",
        "gridpilot_dispatch_submit_to_active_seconds",
    ):
        assert value(text, f"{name}_count") == 1
        assert value(text, f"{name}_bucket", le="+Inf") == 1
        took = value(text, f"{name}_sum")
        assert took is not None and 0 < took < 60
    assert value(text, "gridpilot_dispatch_oldest_unapplied_seconds", state="sent") == 0
    assert value(text, "gridpilot_database_up") == 1
    assert value(text, "gridpilot_temporal_up") == 1
    expiry = value(
        text, "gridpilot_certificate_expiry_timestamp_seconds", certificate="grpc_server"
    )
    assert headend.settings.grpc_tls_cert_file is not None
    expected = certificate_expiry(headend.settings.grpc_tls_cert_file)
    assert expiry == pytest.approx(expected.timestamp())
    assert expected > datetime.now(UTC)
    assert dispatch_id

    await scripted_agent.cut()

    async def gone() -> str | None:
        text = (await headend.api.get("/metrics")).text
        return text if value(text, "gridpilot_site_agents_connected", **SITE) == 0 else None

    text = await wait_for(gone)
    assert value(text, "gridpilot_agent_disconnects_total", reason="network", **SITE) == 1
    assert value(text, "gridpilot_gateway_connected", gateway_id="gw-1", **SITE) == 0
    seen = value(text, "gridpilot_gateway_last_seen_age_seconds", gateway_id="gw-1", **SITE)
    assert seen is not None and seen >= 0
