"""GridPilot's spans through the API: a message's trace context is continued,
acks carry the current span back, and log lines name the trace. The SDK
provider here is the test's own (spans.tracer is pointed at it), not a global."""

from __future__ import annotations

from collections.abc import Iterator

import pytest
from gp_testing.otlp import finished_span, recorded_spans
from opentelemetry.sdk.trace.export.in_memory_span_exporter import InMemorySpanExporter

from gridpilot.ops import spans
from gridpilot.ops.logging import add_trace_ids


@pytest.fixture
def finished(monkeypatch: pytest.MonkeyPatch) -> Iterator[InMemorySpanExporter]:
    with recorded_spans(monkeypatch) as exporter:
        yield exporter


def test_a_span_continues_the_trace_a_message_carried(finished: InMemorySpanExporter) -> None:
    with spans.span("headend.send_setpoint"):
        message = spans.carrier()
    assert message["traceparent"].startswith("00-")

    with spans.span("agent.setpoint", message):
        with spans.span("agent.device_write"):
            pass

    sent = finished_span(finished, "headend.send_setpoint")
    took = finished_span(finished, "agent.setpoint")
    wrote = finished_span(finished, "agent.device_write")
    assert took.context.trace_id == sent.context.trace_id == wrote.context.trace_id
    assert took.parent is not None and took.parent.span_id == sent.context.span_id
    assert wrote.parent is not None and wrote.parent.span_id == took.context.span_id


def test_carrier_or_gives_the_current_span_only_in_the_same_trace(
    finished: InMemorySpanExporter,
) -> None:
    with spans.span("dispatch-a"):
        a = spans.carrier()
    with spans.span("dispatch-b"):
        b = spans.carrier()

    with spans.span("agent.device_write", a):
        inside_a = spans.carrier()
        assert spans.carrier_or(a) == inside_a  # this dispatch's span: carried back
        assert spans.carrier_or(b) == b  # another dispatch's ack keeps its own
        assert spans.carrier_or({}) == inside_a
    assert spans.carrier_or(a) == a  # no span current: the Setpoint's context
    assert spans.carrier() == {}


def test_log_lines_name_the_current_trace_and_span(finished: InMemorySpanExporter) -> None:
    assert add_trace_ids(None, "info", {"event": "x"}) == {"event": "x"}
    with spans.span("headend.dispatch_ack") as span:
        line = add_trace_ids(None, "info", {"event": "ack"})
    ctx = span.get_span_context()
    assert line == {
        "event": "ack",
        "trace_id": f"{ctx.trace_id:032x}",
        "span_id": f"{ctx.span_id:016x}",
    }
