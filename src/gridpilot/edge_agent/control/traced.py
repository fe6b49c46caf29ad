"""The agent's spans of a dispatch, in the trace its Setpoint carried
(``trace_context``): ``agent.setpoint`` around its handling, ``agent.rails``
around the admission (arbitration + rails, :mod:`.arbitration`) and
``agent.device_write`` around the write and its APPLIED ack. Acks made inside
them carry their context back (:class:`.acks.AckRecorder`), so the headend's
ack span is their child. No-ops without an OpenTelemetry SDK."""

from __future__ import annotations

import contextlib
import functools
from collections.abc import Callable, Iterator
from typing import Concatenate, ParamSpec

from opentelemetry.trace import Span

from gridpilot.ops import spans

from . import arbitration
from .commands import Lease, SetpointCommand

P = ParamSpec("P")


def _attributes(dispatch_id: str, asset_id: str, p_kw: float) -> spans.Attributes:
    return {
        "gridpilot.dispatch_id": dispatch_id,
        "gridpilot.asset_id": asset_id,
        "gridpilot.p_kw": p_kw,
    }


def setpoint_span(cmd: SetpointCommand) -> contextlib.AbstractContextManager[Span]:
    return spans.span(
        "agent.setpoint",
        cmd.trace_context,
        {**_attributes(cmd.dispatch_id, cmd.asset_id, cmd.p_kw), "gridpilot.source": cmd.source},
        spans.SpanKind.CONSUMER,
    )


def rails_span(
    admit: Callable[Concatenate[SetpointCommand, P], arbitration.Admission],
) -> Callable[Concatenate[SetpointCommand, P], arbitration.Admission]:
    """``admit`` in an ``agent.rails`` span that tells its outcome."""

    @functools.wraps(admit)
    def traced(cmd: SetpointCommand, *args: P.args, **kwargs: P.kwargs) -> arbitration.Admission:
        attributes = _attributes(cmd.dispatch_id, cmd.asset_id, cmd.p_kw)
        with spans.span("agent.rails", cmd.trace_context, attributes) as span:
            admission = admit(cmd, *args, **kwargs)
            lease = admission.lease
            span.set_attribute(
                "gridpilot.rails.outcome",
                "accepted" if lease is not None else str(admission.reason or "refused"),
            )
            if lease is not None:
                span.set_attribute("gridpilot.rails.p_kw", lease.p_kw)
        return admission

    return traced


admit = rails_span(arbitration.admit)


@contextlib.contextmanager
def device_write_span(asset_id: str, lease: Lease, value_kw: float) -> Iterator[Span]:
    attributes = {
        **_attributes(lease.dispatch_id, asset_id, lease.p_kw),
        "gridpilot.write_kw": value_kw,
    }
    with spans.span("agent.device_write", lease.trace_context, attributes) as span:
        yield span
