"""One dispatch is one trace across processes: a headend and an agent, each a
real process exporting OTLP/HTTP to a receiver this test runs. From the REST
submit through the workflow, the delivery on the replica's queue, the agent's
rails and device write, to the ack's signal and the recorded transitions,
every span of the dispatch shares its trace id and its parent links are
unbroken; GET /dispatches/{id} names that trace."""

from __future__ import annotations

import shutil
from collections.abc import Iterator
from pathlib import Path
from typing import TYPE_CHECKING, Any

import httpx
import pytest
from gp_testing import wait_for_sync
from gp_testing.otlp import OtlpReceiver, Span
from gp_testing.procs import AgentProcess, HeadendProcess

if TYPE_CHECKING:
    from temporalio.testing import WorkflowEnvironment

pytestmark = pytest.mark.integration

TRACE_UI = "http://traces.example/trace/{trace_id}"
CHROMIUM = shutil.which("chromium") or "/usr/bin/chromium"
CHROMIUM_ARGS = ["--headless", "--no-sandbox", "--disable-gpu", "--no-first-run"]
SUBMIT_SPAN = "POST /api/v1/dispatches"
# The scheduled writes of transitions (one, or the ones decided together).
RECORD_TRANSITIONS = ("RunActivity:record_transition", "RunActivity:record_transitions")


@pytest.fixture
def receiver() -> Iterator[OtlpReceiver]:
    with OtlpReceiver() as r:
        yield r


@pytest.fixture
def headend(
    database_url: str, temporal_env: WorkflowEnvironment, tmp_path: Path, receiver: OtlpReceiver
) -> Iterator[HeadendProcess]:
    env = {
        **receiver.env(),
        "GRIDPILOT_TRACE_UI_URL": TRACE_UI,
        "GRIDPILOT_TRACE_TELEMETRY_RATIO": "1",
    }
    address = str(temporal_env.client.service_client.config.target_host)
    h = HeadendProcess(database_url, address, tmp_path, extra_env=env)
    h.start()
    yield h
    if h.proc is not None:
        h.proc.stop()


@pytest.fixture
def agent(
    headend: HeadendProcess, tmp_path: Path, receiver: OtlpReceiver
) -> Iterator[AgentProcess]:
    a = AgentProcess(
        "gwt", headend.grpc_address, tmp_path / "agent", assets=1, extra_env=receiver.env()
    )
    a.start()
    yield a
    if a.proc is not None:
        a.proc.stop()


def _chain(by_id: dict[str, Span], span: Span) -> list[Span]:
    """``span`` and its ancestors up to the root; fails on a missing parent."""
    out = [span]
    while out[-1].parent_id:
        parent = by_id.get(out[-1].parent_id)
        assert parent is not None, f"{out[-1].name}'s parent is not in the trace"
        out.append(parent)
    return out


def _one(spans: list[Span], name: str, **attributes: object) -> Span:
    found = [
        s
        for s in spans
        if s.name == name and all(s.attributes.get(k) == v for k, v in attributes.items())
    ]
    assert len(found) == 1, f"{len(found)} spans {name} {attributes}"
    return found[0]


def _console_links_the_trace(base: str, token: str, dispatch_id: str, trace_url: str) -> None:
    if not Path(CHROMIUM).exists():
        pytest.fail("Debian's chromium is not installed (apt-get install chromium; .ci/run does)")
    from playwright.sync_api import expect, sync_playwright

    with sync_playwright() as p:
        browser = p.chromium.launch(executable_path=CHROMIUM, args=CHROMIUM_ARGS)
        try:
            page = browser.new_page()
            page.goto(f"{base}/console/dispatches/{dispatch_id}")
            page.fill("#token", token)
            page.click("#login-form button[type=submit]")
            link = page.locator("#trace-link")
            expect(link).to_have_attribute("href", trace_url)
            expect(link).to_have_text(trace_url.rsplit("/", 1)[-1])
        finally:
            browser.close()


def _applied_ack_handled(spans: list[Span], trace_id: str) -> bool:
    """The workflow's span of the APPLIED ack's signal has reached the receiver."""
    applied = {
        s.span_id
        for s in spans
        if s.name == "headend.dispatch_ack" and s.attributes.get("gridpilot.ack_state") == "APPLIED"
    }
    signalled = {
        s.span_id for s in spans if s.name == "SignalWorkflow:agent_ack" and s.parent_id in applied
    }
    return any(
        s.name == "HandleSignal:agent_ack" and any((trace_id, x) in s.links for x in signalled)
        for s in spans
    )


def test_a_dispatch_is_one_trace_across_headend_and_agent(
    headend: HeadendProcess, agent: AgentProcess, receiver: OtlpReceiver
) -> None:
    token = headend.token("operator")
    api = httpx.Client(
        base_url=f"{headend.api}/api/v1", headers={"Authorization": f"Bearer {token}"}, timeout=10
    )
    asset_id = agent.asset_id(0)
    wait_for_sync(lambda: api.get(f"/assets/{asset_id}").status_code == 200, 60, "the asset")
    r = api.post("/dispatches", json={"asset_id": asset_id, "p_kw": 30.0, "duration_s": 600})
    assert r.status_code == 201, r.text
    dispatch_id = r.json()["id"]

    def active() -> dict[str, Any] | None:
        body: dict[str, Any] = api.get(f"/dispatches/{dispatch_id}").json()
        return body if body["state"] == "active" else None

    view = wait_for_sync(active, 60, "the dispatch active")
    trace_id = view["trace_id"]
    assert isinstance(trace_id, str) and len(trace_id) == 32 and int(trace_id, 16)
    assert view["trace_url"] == TRACE_UI.replace("{trace_id}", trace_id)

    def complete() -> list[Span] | None:
        spans = receiver.in_trace(trace_id)
        names = [s.name for s in spans]
        # submitted (with the row), sent (by the delivery), acked and active
        # (together, or one by one when the acks came apart)
        done = (
            "agent.device_write" in names
            and "RunActivity:record_submission" in names
            and any(n in names for n in RECORD_TRANSITIONS)
            and _applied_ack_handled(spans, trace_id)  # its spans are exported last
        )
        return spans if done else None

    spans = wait_for_sync(complete, 60, "the dispatch's spans at the receiver")
    by_id = {s.span_id: s for s in spans}
    assert {s.service for s in spans} == {"gridpilot-headend", "gridpilot-agent"}
    (root,) = [s for s in spans if not s.parent_id]
    assert root.name == SUBMIT_SPAN and root.service == "gridpilot-headend"
    assert root.attributes["gridpilot.dispatch_id"] == dispatch_id

    # Down: REST → workflow → delivery on the replica's queue → the agent's write.
    wrote = _one(spans, "agent.device_write")
    down = [(s.service, s.name) for s in _chain(by_id, wrote)]
    assert down[-1] == ("gridpilot-headend", SUBMIT_SPAN)
    for step in [
        ("gridpilot-agent", "agent.setpoint"),
        ("gridpilot-headend", "headend.send_setpoint"),
        ("gridpilot-headend", "RunActivity:deliver_setpoint_sent"),
        ("gridpilot-headend", "StartActivity:deliver_setpoint_sent"),
        ("gridpilot-headend", "StartWorkflow:DispatchWorkflow"),
    ]:
        assert step in down, (step, down)
    # The interceptor's workflow span (zero length) sits beside its activities.
    started = _one(spans, "StartWorkflow:DispatchWorkflow")
    assert _one(spans, "RunWorkflow:DispatchWorkflow").parent_id == started.span_id
    rails = _one(spans, "agent.rails")
    assert rails.attributes["gridpilot.rails.outcome"] == "accepted"
    assert by_id[rails.parent_id].name == "agent.setpoint"

    # Back: the APPLIED ack (from the write's span) → its signal → the workflow.
    # (An ack the agent sends again, e.g. after a reconnect, is one more of each.)
    applied = [
        s
        for s in spans
        if s.name == "headend.dispatch_ack"
        and s.attributes.get("gridpilot.ack_state") == "APPLIED"
        and s.parent_id == wrote.span_id
    ]
    assert applied, "no headend.dispatch_ack span under the agent's device write"
    signalled = {
        s.span_id
        for s in spans
        if s.name == "SignalWorkflow:agent_ack" and s.parent_id in {a.span_id for a in applied}
    }
    assert signalled, "the APPLIED ack's signal is not a child of its ack span"
    handled = [
        s
        for s in spans
        if s.name == "HandleSignal:agent_ack" and any((trace_id, x) in s.links for x in signalled)
    ]
    assert handled, "no workflow signal span links the APPLIED ack's signal"
    assert _chain(by_id, handled[0])[-1] is root

    # The recorded transitions are in the same trace, under the same root.
    recorded = [
        s for s in spans if s.name in ("RunActivity:record_submission", *RECORD_TRANSITIONS)
    ]
    assert len(recorded) >= 2
    assert all(_chain(by_id, s)[-1] is root for s in recorded)

    # The trace is in every log line of that work: the submit's audit lines and
    # the acks'. (Each GET of the dispatch is its own request, in its own trace.)
    assert headend.proc is not None
    lines = [
        x
        for x in headend.proc.tail(200_000).splitlines()
        if dispatch_id in x and "event='http_request'" not in x
    ]
    assert {"audit", "dispatch_ack_received"} <= {
        x.split("event='")[1].split("'")[0] for x in lines
    }
    assert all(f"trace_id='{trace_id}'" in x for x in lines), lines

    # The console's dispatch page links the trace (real Chromium).
    _console_links_the_trace(headend.api, token, dispatch_id, view["trace_url"])

    # Telemetry commits get spans too (the ratio is 1 here), with size and time.
    commits = [s for s in receiver.snapshot() if s.name == "telemetry.commit"]
    assert commits, "no telemetry.commit span"
    assert all(s.service == "gridpilot-headend" for s in commits)
    first = commits[0].attributes
    assert int(first["gridpilot.telemetry.batches"]) >= 1  # type: ignore[call-overload]
    assert int(first["gridpilot.telemetry.samples"]) >= 1  # type: ignore[call-overload]
    assert float(first["gridpilot.telemetry.commit_ms"]) > 0  # type: ignore[arg-type]
