"""`gridpilot doctor`'s checks against a real headend, database and Temporal:
a dispatch that expired unacknowledged, an asset, an unknown id, and a
Temporal that does not answer (the drill with processes and Prometheus is in
tests/integration/ops/test_oncall_drill.py)."""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

import pytest
from gp_testing import (
    RunningHeadend,
    ScriptedAgent,
    TestPki,
    demo_assets,
    dispatch_in_state,
    now_pb,
    running_headend,
    wait_for,
)

from gridpilot.cli.dispatch import timeline
from gridpilot.cli.doctor import _run
from gridpilot.ops.processes import free_port
from gridpilot.schema.pb import agent_pb2 as pb

if TYPE_CHECKING:
    from temporalio.testing import WorkflowEnvironment

pytestmark = pytest.mark.integration


def statuses(report: Any) -> dict[str, str]:
    return {f.check: f.status.value for f in report.findings}


async def test_doctor_on_a_dispatch_that_expired_unacknowledged_names_where_it_stopped(
    headend: RunningHeadend, scripted_agent: ScriptedAgent
) -> None:
    await scripted_agent.connect(demo_assets())
    r = await headend.api.post(
        "/api/v1/dispatches", json={"asset_id": "bess-1", "p_kw": 10, "duration_s": 60}
    )
    dispatch_id = r.json()["id"]
    await wait_for(lambda: scripted_agent.first("setpoint"))  # the agent never acks it
    await wait_for(lambda: dispatch_in_state(headend.api, dispatch_id, "expired"), timeout=60)

    report, detail = await _run(headend.settings, None, None, dispatch_id)
    assert not report.ok
    found = {f.check: f for f in report.findings}
    assert found["dispatch"].status.value == "fail"
    assert found["dispatch"].detail.startswith("expired since ")
    assert "DEADLINE_PASSED" in found["dispatch"].detail
    assert report.next_step == "docs/runbooks/dispatch-not-applied.md"
    # the asset's agent and its route are checked with it: both fine here
    assert statuses(report)["agent gw-1"] == "ok"
    assert statuses(report)["route"] == "ok"
    assert [t["to_state"] for t in detail["transitions"]] == ["submitted", "sent", "expired"]
    assert "expired" in timeline(detail)


async def test_doctor_on_an_asset_with_fresh_data_is_ok_and_an_unknown_one_fails(
    headend: RunningHeadend, scripted_agent: ScriptedAgent
) -> None:
    await scripted_agent.connect(demo_assets())
    sample = pb.TelemetrySample(asset_id="pv-1", ts=now_pb(), p_kw=20)
    await scripted_agent.send(
        pb.AgentMessage(telemetry=pb.TelemetryBatch(batch_seq=1, samples=[sample]))
    )
    await wait_for(lambda: scripted_agent.first("telemetry_ack"))
    await scripted_agent.send(pb.AgentMessage(heartbeat=pb.Heartbeat(time=now_pb())))

    report, _ = await _run(headend.settings, None, "pv-1", None)
    assert report.ok, report.as_json()
    assert statuses(report)["asset"] == "ok"
    newest = next(f for f in report.findings if f.check == "newest sample")
    assert newest.status.value == "ok" and "asset pv-1" in newest.detail
    assert report.next_step == "nothing: every check passed"

    report, _ = await _run(headend.settings, None, "no-such-asset", None)
    assert not report.ok and statuses(report)["asset"] == "fail"

    # an asset whose site has no data: bess-1 never sent a sample
    report, _ = await _run(headend.settings, None, "bess-1", None)
    assert statuses(report)["newest sample"] == "fail" and not report.ok


async def test_doctor_fails_the_deployment_when_temporal_does_not_answer(
    headend: RunningHeadend,
) -> None:
    nowhere = headend.settings.model_copy(update={"temporal_address": f"127.0.0.1:{free_port()}"})
    report, _ = await _run(nowhere, None, None, None)
    assert not report.ok
    found = {f.check: f for f in report.findings}
    assert found["temporal"].status.value == "fail"
    assert "127.0.0.1" in found["temporal"].detail
    assert found["database"].status.value == "ok"
    assert found["migrations"].status.value == "ok"
    assert "workers" not in found  # not asked without Temporal
    assert report.next_step == "docs/runbooks/temporal-outage.md"


async def test_doctor_names_an_agent_whose_stream_is_open_but_silent_unresponsive(
    headend: RunningHeadend, scripted_agent: ScriptedAgent
) -> None:
    """The headend here tolerates an hour of silence (agent_silence_s), so the
    stream stays open: past 30 s without a heartbeat the doctor calls the agent
    unresponsive, with the time it was last heard."""
    await scripted_agent.connect(demo_assets())  # and never a heartbeat

    async def unresponsive() -> Any:
        report, _ = await _run(headend.settings, "site-1", None, None)
        agent = next(f for f in report.findings if f.check == "agent gw-1")
        return report if agent.status.value == "fail" else None

    report = await wait_for(unresponsive, timeout=120, interval=2)
    agent = next(f for f in report.findings if f.check == "agent gw-1")
    assert agent.detail.startswith("agent unresponsive since ")
    assert "is open but nothing came since" in agent.detail
    assert "restart it on the site's host" in report.next_step


async def test_doctor_dates_an_agent_ended_unresponsive_from_when_it_was_last_heard(
    database_url: str, temporal_env: WorkflowEnvironment, task_queue: str, test_pki: TestPki
) -> None:
    """The headend ends a silent stream after agent_silence_s (2 s here); the
    doctor says unresponsive since its last message, not since that end."""
    address = temporal_env.client.service_client.config.target_host
    async with running_headend(
        database_url, address, task_queue, test_pki, agent_silence_s=2
    ) as headend:
        agent = headend.agent()
        try:
            await agent.connect(demo_assets())  # and then silence
            await wait_for(lambda: agent.ended, timeout=60)

            async def ended() -> Any:
                report, _ = await _run(headend.settings, "site-1", None, None)
                found = {f.check: f for f in report.findings}
                return report if "unresponsive" in found["agent gw-1"].detail else None

            report = await wait_for(ended, timeout=60, interval=0.5)
        finally:
            await agent.close()
    found = {f.check: f for f in report.findings}
    detail = found["agent gw-1"].detail
    heard, _, rest = detail.removeprefix("agent unresponsive since ").partition(" (")
    assert "unresponsive: the agent was unresponsive" in rest
    ended_at = rest.split("session ended ", 1)[1].split(" (", 1)[0]
    assert heard < ended_at  # ISO times: last heard before the headend gave up
    assert "systemctl restart gridpilot-agent" in report.next_step
