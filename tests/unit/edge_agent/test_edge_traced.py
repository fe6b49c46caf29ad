"""The agent's spans of a dispatch continue the trace its Setpoint carried,
and each ack carries the span it was made in back to the headend: APPLIED
that of the device write, ACCEPTED that of the setpoint's handling."""

from __future__ import annotations

from collections.abc import Iterator
from datetime import UTC, datetime, timedelta

import pytest
from gp_testing import wait_for
from gp_testing.otlp import finished_span, recorded_spans
from opentelemetry import trace
from opentelemetry.sdk.trace.export.in_memory_span_exporter import InMemorySpanExporter
from opentelemetry.trace.propagation.tracecontext import TraceContextTextMapPropagator

from gridpilot.core.assets import Asset, AssetType, PowerLimits
from gridpilot.core.telemetry import Sample
from gridpilot.edge_agent.clock import ManualClock
from gridpilot.edge_agent.control.acks import Ack, AckHistory, AckRecorder, AckState
from gridpilot.edge_agent.control.commands import SetpointCommand
from gridpilot.edge_agent.control.controller import AssetController
from gridpilot.edge_agent.device import ManagedDevice
from gridpilot.ops import spans

ASSET = Asset("bess", "site", AssetType.BESS, PowerLimits(-100, 100), default_p_kw=0.0)
T0 = datetime(2026, 1, 5, 12, 0, tzinfo=UTC)


class Device:
    async def connect(self) -> None:
        pass

    async def read(self) -> Sample:
        return Sample("bess", datetime.now(UTC))

    async def write(self, p_kw: float) -> float:
        return p_kw

    async def close(self) -> None:
        pass


@pytest.fixture
def finished(monkeypatch: pytest.MonkeyPatch) -> Iterator[InMemorySpanExporter]:
    with recorded_spans(monkeypatch) as exporter:
        yield exporter


def _span_of(ack: Ack) -> trace.SpanContext:
    ctx = TraceContextTextMapPropagator().extract(dict(ack.trace_context))
    return trace.get_current_span(ctx).get_span_context()


async def test_acks_carry_the_agents_spans_of_the_dispatch_back(
    finished: InMemorySpanExporter,
) -> None:
    acks: list[Ack] = []
    clock = ManualClock(T0)
    controller = AssetController(
        ASSET,
        ManagedDevice("bess", Device(), timeout_s=1),
        clock=clock,
        acks=AckRecorder(AckHistory(), acks.append, clock),
    )
    controller.start()
    with spans.span("headend.send_setpoint"):
        sent_context = spans.carrier()
    end = T0 + timedelta(minutes=10)
    await controller.submit(
        SetpointCommand("d1", "bess", 40.0, None, end, trace_context=sent_context)
    )
    await wait_for(lambda: any(a.state is AckState.APPLIED for a in acks), 5, "APPLIED")
    await controller.stop(5)

    sent = finished_span(finished, "headend.send_setpoint")
    handled = finished_span(finished, "agent.setpoint")
    rails = finished_span(finished, "agent.rails")
    wrote = finished_span(finished, "agent.device_write")
    assert handled.parent is not None and handled.parent.span_id == sent.context.span_id
    assert rails.parent is not None and rails.parent.span_id == handled.context.span_id
    assert wrote.parent is not None and wrote.parent.span_id == handled.context.span_id
    assert (
        rails.attributes is not None and rails.attributes["gridpilot.rails.outcome"] == "accepted"
    )
    assert wrote.attributes is not None and wrote.attributes["gridpilot.write_kw"] == 40.0
    by_state = {a.state: _span_of(a) for a in acks if a.dispatch_id == "d1"}
    assert by_state[AckState.ACCEPTED].span_id == handled.context.span_id
    assert by_state[AckState.APPLIED].span_id == wrote.context.span_id
    assert {c.trace_id for c in by_state.values()} == {sent.context.trace_id}
