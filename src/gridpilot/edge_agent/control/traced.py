"""The agent's spans of a dispatch, in the trace its Setpoint carried
(``trace_context``): ``agent.setpoint`` around its handling, ``agent.rails``
around the admission (arbitration + rails, :mod:`.arbitration`) and
``agent.device_write`` around the write and its APPLIED ack. Acks made inside
them carry their context back (:class:`.acks.AckRecorder`), so the headend's
ack span is their child. No-ops without an OpenTelemetry SDK."""

from __future__ import annotations

import contextlib
from collections.abc import Iterator
from datetime import datetime

from opentelemetry.trace import Span

from gridpilot.core.assets import PowerLimits
from gridpilot.ops import spans

from . import arbitration
from .commands import Lease, SetpointCommand
from .local_control import Arbitration


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


def admit(
    cmd: SetpointCommand,
    limits: PowerLimits,
    policy: Arbitration,
    active: Lease | None,
    now: datetime,
) -> arbitration.Admission:
    """:func:`.arbitration.admit` in an ``agent.rails`` span that tells its outcome."""
    with spans.span(
        "agent.rails", cmd.trace_context, _attributes(cmd.dispatch_id, cmd.asset_id, cmd.p_kw)
    ) as span:
        admission = arbitration.admit(cmd, limits, policy, active, now)
        lease = admission.lease
        span.set_attribute(
            "gridpilot.rails.outcome",
            "accepted" if lease is not None else str(admission.reason or "refused"),
        )
        if lease is not None:
            span.set_attribute("gridpilot.rails.p_kw", lease.p_kw)
        return admission


@contextlib.contextmanager
def device_write_span(asset_id: str, lease: Lease, value_kw: float) -> Iterator[Span]:
    attributes = {
        **_attributes(lease.dispatch_id, asset_id, lease.p_kw),
        "gridpilot.write_kw": value_kw,
    }
    with spans.span("agent.device_write", lease.trace_context, attributes) as span:
        yield span
