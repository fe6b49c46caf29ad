"""An ack that waits for Temporal (an outage) is signalled later in the trace
it came in: the signal still belongs to its dispatch's trace. Temporal's
client is faked at its boundary (the workflow handle's ``signal``)."""

from __future__ import annotations

import asyncio
from collections.abc import Iterator
from datetime import UTC, datetime
from typing import Any, cast

import pytest
from gp_testing import wait_for
from gp_testing.otlp import recorded_spans
from opentelemetry.sdk.trace.export.in_memory_span_exporter import InMemorySpanExporter
from temporalio.client import Client
from temporalio.service import RPCError, RPCStatusCode

from gridpilot.core.acks import AckState
from gridpilot.ingest.acks import TemporalAckSink
from gridpilot.ops import spans
from gridpilot.workflows.models import AgentAck


class Handle:
    """Refuses the first ``down`` signals as UNAVAILABLE; notes the trace of each other."""

    def __init__(self, down: int) -> None:
        self.down = down
        self.signalled: list[tuple[str, str] | None] = []

    async def signal(self, *_: Any) -> None:
        if self.down:
            self.down -= 1
            raise RPCError("connection refused", RPCStatusCode.UNAVAILABLE, b"")
        self.signalled.append(spans.trace_ids())


class FakeClient:
    def __init__(self, handle: Handle) -> None:
        self.handle = handle

    def get_workflow_handle_for(self, *_: Any) -> Handle:
        return self.handle


@pytest.fixture
def finished(monkeypatch: pytest.MonkeyPatch) -> Iterator[InMemorySpanExporter]:
    with recorded_spans(monkeypatch) as exporter:
        yield exporter


async def _late(_: AgentAck) -> None:
    raise AssertionError("not a late ack")


async def test_an_ack_that_waited_for_temporal_is_signalled_in_its_own_trace(
    finished: InMemorySpanExporter,
) -> None:
    handle = Handle(down=1)
    sink = TemporalAckSink(cast(Client, FakeClient(handle)), _late, retry_max_s=0.5)
    runner = asyncio.create_task(sink.run())
    ack = AgentAck(dispatch_id="d1", state=AckState.APPLIED, at=datetime.now(UTC))
    delivered: list[str] = []
    try:
        with spans.span("headend.dispatch_ack") as span:
            await sink(ack, lambda: delivered.append("d1"))
            ids = spans.trace_ids()
        assert sink.waiting == 1 and not sink.temporal_available  # it waits
        assert spans.trace_ids() is None  # this task has left the span

        await wait_for(lambda: delivered == ["d1"], 10, "the ack signalled")
    finally:
        runner.cancel()
    assert span.get_span_context().is_valid
    assert handle.signalled == [ids]  # signalled by the sink's own task, in the ack's span
