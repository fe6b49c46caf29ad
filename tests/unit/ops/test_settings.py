"""Settings: GRIDPILOT_* variables, one clear line per bad one, exit code 2."""

from __future__ import annotations

import subprocess
import sys

import pytest

from gridpilot.ops.settings import Environment, Settings, load_settings


def test_defaults_and_prefix(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("GRIDPILOT_API_PORT", "9000")
    monkeypatch.setenv("GRIDPILOT_ROLES", "worker, api")
    s = Settings(_env_file=None)  # type: ignore[call-arg]
    assert s.api_port == 9000
    assert s.roles == "api,worker"
    assert s.has_role("api") and not s.has_role("grpc")
    assert s.environment is Environment.DEV
    assert s.headend_task_queue == f"gridpilot-headend-{s.headend_id}"


@pytest.mark.parametrize(
    ("name", "value", "expected"),
    [
        ("GRIDPILOT_API_PORT", "70000", "less than or equal to 65535"),
        ("GRIDPILOT_API_PORT", "eighty", "valid integer"),
        ("GRIDPILOT_DATABASE_URL", "mysql://x", "postgresql://"),
        ("GRIDPILOT_ROLES", "grpc,cook", "unknown roles"),
        ("GRIDPILOT_ENVIRONMENT", "staging", "dev"),
        ("GRIDPILOT_RESET_DB", "maybe", "boolean"),
        ("GRIDPILOT_TRACE_UI_URL", "http://jaeger:16686/trace/", "{trace_id}"),
        ("GRIDPILOT_TRACE_UI_URL", "javascript:alert({trace_id})", "http(s) URL"),
        ("GRIDPILOT_TRACE_TELEMETRY_RATIO", "2", "less than or equal to 1"),
    ],
)
def test_bad_variable_prints_one_line_naming_it_and_exits_2(
    monkeypatch: pytest.MonkeyPatch,
    capsys: pytest.CaptureFixture[str],
    name: str,
    value: str,
    expected: str,
) -> None:
    monkeypatch.setenv(name, value)
    with pytest.raises(SystemExit) as exit_info:
        load_settings(_env_file=None)
    assert exit_info.value.code == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1
    assert err[0].startswith(f"gridpilot: {name}: ")
    assert expected in err[0]


def test_cli_reports_a_bad_variable_without_a_traceback() -> None:
    env = {"GRIDPILOT_API_PORT": "-1", "PATH": ""}
    r = subprocess.run(
        [sys.executable, "-m", "gridpilot", "db", "upgrade"],
        env=env,
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert r.returncode == 2
    assert "Traceback" not in r.stderr
    assert r.stderr.strip() == (
        "gridpilot: GRIDPILOT_API_PORT: Input should be greater than or equal to 1 (got '-1')"
    )


@pytest.mark.parametrize(
    "command",
    [
        [],
        ["up"],
        ["headend"],
        ["agent"],
        ["agent", "check"],
        ["db", "upgrade"],
        ["db", "reset"],
        ["dispatch", "submit"],
        ["dispatch", "list"],
        ["dispatch", "show"],
        ["dispatch", "cancel"],
        ["pki", "init"],
        ["pki", "issue-headend"],
        ["pki", "issue-gateway"],
        ["pki", "revoke"],
        ["token", "create"],
        ["token", "list"],
        ["token", "revoke"],
        ["audit", "verify"],
    ],
)
def test_every_command_has_help(command: list[str]) -> None:
    r = subprocess.run(
        [sys.executable, "-m", "gridpilot", *command, "--help"],
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert r.returncode == 0, r.stderr
    assert "Usage:" in r.stdout
