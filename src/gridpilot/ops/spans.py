"""GridPilot's own spans, through the OpenTelemetry API only.

Product code imports this, never the SDK: without one installed
(:mod:`.tracing`, OTEL_* unset) every span here is a non-recording no-op and
the carriers are empty. A dispatch's trace crosses the agent's stream in the
messages themselves (``Setpoint.trace_context``, ``DispatchAck.trace_context``,
W3C ``traceparent``), not in gRPC metadata: the stream is long-lived and its
metadata is sent once, when it opens.
"""

from __future__ import annotations

import contextlib
from collections.abc import Iterator, Mapping

from opentelemetry import context as otel_context
from opentelemetry import propagate, trace
from opentelemetry.util.types import AttributeValue

TRACER_NAME = "gridpilot"
SpanKind = trace.SpanKind

Attributes = Mapping[str, AttributeValue]


# The API's proxy: it delegates to the SDK's tracer once a provider is set
# (ops.tracing, after this import), and records nothing until then.
_TRACER = trace.get_tracer(TRACER_NAME)


def tracer() -> trace.Tracer:
    return _TRACER


def carrier() -> dict[str, str]:
    """The current span's W3C trace context, for a message (empty: no span)."""
    out: dict[str, str] = {}
    propagate.inject(out)
    return out


def carrier_or(fallback: Mapping[str, str] | None) -> dict[str, str]:
    """The current span's trace context when one is current in ``fallback``'s
    trace (or ``fallback`` has none), else ``fallback``: an ack made inside the
    agent's span of its dispatch carries that span, one made elsewhere (a
    timer, another dispatch's span) its own Setpoint's context."""
    if trace.get_current_span().get_span_context().is_valid and _parent(fallback) is None:
        return carrier()
    return dict(fallback or {})


def _parent(from_message: Mapping[str, str] | None) -> otel_context.Context | None:
    """The current span when it belongs to the message's trace (or the message
    carries none), else the message's own context."""
    current = trace.get_current_span().get_span_context()
    if not from_message:
        return None
    remote = otel_context.Context()
    remote = propagate.extract(dict(from_message), context=remote)
    theirs = trace.get_current_span(remote).get_span_context()
    if current.is_valid and (not theirs.is_valid or theirs.trace_id == current.trace_id):
        return None
    return remote


@contextlib.contextmanager
def span(
    name: str,
    from_message: Mapping[str, str] | None = None,
    attributes: Attributes | None = None,
    kind: trace.SpanKind = trace.SpanKind.INTERNAL,
) -> Iterator[trace.Span]:
    """A span, current for the ``with`` block: the child of the current span,
    or of ``from_message`` (a trace context that came in a message) when that
    is another trace or nothing is current."""
    with tracer().start_as_current_span(
        name, context=_parent(from_message), kind=kind, attributes=attributes
    ) as current:
        yield current


def annotate(attributes: Attributes) -> None:
    """Add attributes to the current span (e.g. the dispatch id on the REST
    submit's span, so the trace is found by it)."""
    trace.get_current_span().set_attributes(attributes)


def trace_ids() -> tuple[str, str] | None:
    """(trace_id, span_id) of the current span in hex, None when there is none."""
    ctx = trace.get_current_span().get_span_context()
    if not ctx.is_valid:
        return None
    return trace.format_trace_id(ctx.trace_id), trace.format_span_id(ctx.span_id)


def current_trace_id() -> str | None:
    ids = trace_ids()
    return ids[0] if ids else None
