"""Tracing is configured from the standard OTEL_* variables at process start,
and is off (no SDK loaded, no provider installed) when they are unset. Each
case runs in a fresh interpreter: a tracer provider is set once per process."""

from __future__ import annotations

import json
import os
import subprocess
import sys

import pytest

from gridpilot.ops.tracing import TracingConfigError, configure_tracing, tracing_requested

PROBE = """
import json, sys
from opentelemetry import trace
from gridpilot.ops.tracing import configure_tracing, tracing_installed
on = configure_tracing(sys.argv[1])
provider = trace.get_tracer_provider()
resource = getattr(provider, "resource", None)
print(json.dumps({
    "configured": on,
    "installed": tracing_installed(),
    "sdk_loaded": "opentelemetry.sdk.trace" in sys.modules,
    "service": resource.attributes.get("service.name") if resource else None,
}))
"""


def _probe(service: str, **otel: str) -> dict[str, object]:
    env = {k: v for k, v in os.environ.items() if not k.startswith("OTEL_")}
    run = subprocess.run(
        [sys.executable, "-c", PROBE, service],
        env={**env, **otel},
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert run.returncode == 0, run.stderr
    result: dict[str, object] = json.loads(run.stdout.strip().splitlines()[-1])
    return result


def test_without_otel_variables_no_sdk_provider_is_installed_nor_loaded() -> None:
    assert _probe("gridpilot-headend") == {
        "configured": False,
        "installed": False,
        "sdk_loaded": False,
        "service": None,
    }


def test_an_otlp_endpoint_installs_the_sdk_provider_under_the_service_name() -> None:
    got = _probe("gridpilot-agent", OTEL_EXPORTER_OTLP_ENDPOINT="http://127.0.0.1:9")
    assert got == {
        "configured": True,
        "installed": True,
        "sdk_loaded": True,
        "service": "gridpilot-agent",
    }


def test_otel_service_name_overrides_the_default_name() -> None:
    got = _probe(
        "gridpilot-headend",
        OTEL_EXPORTER_OTLP_TRACES_ENDPOINT="http://127.0.0.1:9/v1/traces",
        OTEL_SERVICE_NAME="headend-eu-1",
        OTEL_EXPORTER_OTLP_PROTOCOL="grpc",
    )
    assert got["installed"] is True and got["service"] == "headend-eu-1"


@pytest.mark.parametrize(
    ("env", "wanted"),
    [
        ({}, False),
        ({"OTEL_EXPORTER_OTLP_ENDPOINT": "http://c:4318"}, True),
        ({"OTEL_EXPORTER_OTLP_TRACES_ENDPOINT": "http://c:4318/v1/traces"}, True),
        ({"OTEL_EXPORTER_OTLP_ENDPOINT": "http://c:4318", "OTEL_SDK_DISABLED": "true"}, False),
        ({"OTEL_EXPORTER_OTLP_ENDPOINT": "http://c:4318", "OTEL_TRACES_EXPORTER": "none"}, False),
    ],
)
def test_tracing_is_requested_only_by_an_endpoint_and_not_disabled(
    env: dict[str, str], wanted: bool
) -> None:
    assert tracing_requested(env) is wanted


def test_an_unknown_protocol_is_refused_naming_the_variable() -> None:
    env = {"OTEL_EXPORTER_OTLP_ENDPOINT": "http://c:4318", "OTEL_EXPORTER_OTLP_PROTOCOL": "udp"}
    with pytest.raises(TracingConfigError, match="OTEL_EXPORTER_OTLP_PROTOCOL='udp'"):
        configure_tracing("gridpilot-headend", env)
