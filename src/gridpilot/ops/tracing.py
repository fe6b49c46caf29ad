"""OpenTelemetry SDK set-up of a process, from the standard ``OTEL_*`` variables.

Called once by each composition root (``gridpilot headend``, ``gridpilot
agent``) before anything else runs. Off unless an OTLP endpoint is given
(``OTEL_EXPORTER_OTLP_ENDPOINT`` or ``OTEL_EXPORTER_OTLP_TRACES_ENDPOINT``):
then no SDK is imported and no provider installed, so the API calls in
:mod:`.spans` stay no-ops. ``OTEL_SDK_DISABLED=true`` or
``OTEL_TRACES_EXPORTER=none`` turn it off even with an endpoint.

The exporter is OTLP over ``http/protobuf`` (the specification's default) or
``grpc``, as ``OTEL_EXPORTER_OTLP_TRACES_PROTOCOL`` / ``..._PROTOCOL`` say;
the exporter itself reads the endpoint, headers, certificates and timeout
variables, the provider reads ``OTEL_TRACES_SAMPLER(_ARG)``, the batch
processor ``OTEL_BSP_*``, the resource ``OTEL_RESOURCE_ATTRIBUTES``.
"""

from __future__ import annotations

import os
from collections.abc import Mapping

from opentelemetry import trace

SERVICE_HEADEND = "gridpilot-headend"
SERVICE_AGENT = "gridpilot-agent"
PROTOCOLS = ("http/protobuf", "grpc")


class TracingConfigError(ValueError):
    """An OTEL_* variable this process cannot use (one line for the operator)."""


def tracing_requested(environ: Mapping[str, str]) -> bool:
    if environ.get("OTEL_SDK_DISABLED", "").strip().lower() == "true":
        return False
    if environ.get("OTEL_TRACES_EXPORTER", "otlp").strip().lower() in ("none", ""):
        return False
    return bool(
        environ.get("OTEL_EXPORTER_OTLP_TRACES_ENDPOINT")
        or environ.get("OTEL_EXPORTER_OTLP_ENDPOINT")
    )


def _protocol(environ: Mapping[str, str]) -> str:
    name = (
        "OTEL_EXPORTER_OTLP_TRACES_PROTOCOL"
        if environ.get("OTEL_EXPORTER_OTLP_TRACES_PROTOCOL")
        else "OTEL_EXPORTER_OTLP_PROTOCOL"
    )
    value = environ.get(name, "http/protobuf").strip().lower() or "http/protobuf"
    if value not in PROTOCOLS:
        raise TracingConfigError(f"{name}={value!r}: expected one of {', '.join(PROTOCOLS)}")
    return value


def configure_tracing(service_name: str, environ: Mapping[str, str] | None = None) -> bool:
    """Install the SDK's tracer provider with an OTLP exporter when the
    environment asks for one; True if it did. ``OTEL_SERVICE_NAME``, when
    set, names the service instead of ``service_name``."""
    env = os.environ if environ is None else environ
    if not tracing_requested(env):
        return False
    protocol = _protocol(env)
    # Imported only here: a process without OTEL_* never loads the SDK.
    from opentelemetry.sdk.resources import SERVICE_NAME, Resource
    from opentelemetry.sdk.trace import TracerProvider
    from opentelemetry.sdk.trace.export import BatchSpanProcessor, SpanExporter

    from gridpilot import __version__

    exporter: SpanExporter
    if protocol == "grpc":
        from opentelemetry.exporter.otlp.proto.grpc.trace_exporter import OTLPSpanExporter

        exporter = OTLPSpanExporter()
    else:
        from opentelemetry.exporter.otlp.proto.http import trace_exporter as http

        exporter = http.OTLPSpanExporter()
    name = env.get("OTEL_SERVICE_NAME") or service_name
    resource = Resource.create({SERVICE_NAME: name, "service.version": __version__})
    provider = TracerProvider(resource=resource)  # shuts down (flushes) at exit
    provider.add_span_processor(BatchSpanProcessor(exporter))
    trace.set_tracer_provider(provider)
    return True


def tracing_installed() -> bool:
    """Whether an SDK tracer provider is installed in this process (the API's
    default is a proxy that records nothing)."""
    provider = trace.get_tracer_provider()
    return not isinstance(provider, trace.ProxyTracerProvider | trace.NoOpTracerProvider)
