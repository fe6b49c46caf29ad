"""deploy/systemd/gridpilot-agent-renew.{service,timer}: the daily
certificate renewal of an enrolled gateway verifies with systemd-analyze
(where it exists), runs as the agent's user on the agent's state directory,
and is as hardened as the agent."""

from __future__ import annotations

import shutil
import subprocess
import sys
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[3]
SYSTEMD = REPO / "deploy" / "systemd"
SERVICE, TIMER = SYSTEMD / "gridpilot-agent-renew.service", SYSTEMD / "gridpilot-agent-renew.timer"
INSTALLED = "/opt/gridpilot/bin/gridpilot"


def directives(text: str) -> dict[str, list[str]]:
    out: dict[str, list[str]] = {}
    for line in text.splitlines():
        line = line.strip()
        if line and not line.startswith(("#", ";", "[")):
            name, _, value = line.partition("=")
            out.setdefault(name.strip(), []).append(value.strip())
    return out


def test_systemd_analyze_verify_finds_nothing_in_service_and_timer(tmp_path: Path) -> None:
    binary = shutil.which("systemd-analyze")
    if binary is None:
        pytest.skip("systemd-analyze is not installed here; the parsed checks still run")
    here = str(Path(sys.executable).parent / "gridpilot")
    for unit in (SERVICE, TIMER):
        (tmp_path / unit.name).write_text(unit.read_text().replace(INSTALLED, here))
    run = subprocess.run(
        [binary, "verify", str(tmp_path / SERVICE.name), str(tmp_path / TIMER.name)],
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )
    said = [ln for ln in (run.stdout + run.stderr).splitlines() if "gridpilot-agent-renew" in ln]
    assert (said, run.returncode) == ([], 0)


def test_renewal_runs_as_the_agent_on_its_state_dir_and_is_hardened() -> None:
    agent = directives((SYSTEMD / "gridpilot-agent.service").read_text())
    renew = directives(SERVICE.read_text())
    for name in ("User", "Group", "StateDirectory", "NoNewPrivileges", "ProtectSystem"):
        assert renew[name] == agent[name], name
    for name in ("CapabilityBoundingSet", "SystemCallFilter", "RestrictAddressFamilies"):
        assert renew[name] == agent[name], name
    (start,) = renew["ExecStart"]
    assert start.startswith(f"{INSTALLED} agent renew --state-dir ${{STATE_DIRECTORY}}")
    assert renew["Type"] == ["oneshot"]
    timer = directives(TIMER.read_text())
    assert timer["OnCalendar"] == ["daily"] and timer["Persistent"] == ["true"]
