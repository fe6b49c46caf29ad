"""deploy/systemd/gridpilot-agent.service: systemd-analyze verify finds
nothing wrong with it (where systemd-analyze exists), and it keeps the
hardening the gateway guide promises."""

from __future__ import annotations

import shutil
import subprocess
import sys
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[3]
UNIT = REPO / "deploy" / "systemd" / "gridpilot-agent.service"
INSTALLED = "/opt/gridpilot/bin/gridpilot"
HARDENING = {
    "NoNewPrivileges": "yes",
    "ProtectSystem": "strict",
    "ProtectHome": "yes",
    "PrivateTmp": "yes",
    "PrivateDevices": "yes",
    "ProtectKernelTunables": "yes",
    "ProtectKernelModules": "yes",
    "ProtectControlGroups": "yes",
    "RestrictSUIDSGID": "yes",
    "CapabilityBoundingSet": "",
    "Restart": "on-failure",
    "StateDirectory": "gridpilot-agent",
}


def directives(text: str) -> dict[str, list[str]]:
    out: dict[str, list[str]] = {}
    for line in text.splitlines():
        line = line.strip()
        if line and not line.startswith(("#", ";", "[")):
            name, _, value = line.partition("=")
            out.setdefault(name.strip(), []).append(value.strip())
    return out


def verify(unit_text: str, tmp_path: Path) -> list[str]:
    """What systemd-analyze verify says of the unit (the gridpilot binary
    pointed at this environment's, since verify wants it to exist)."""
    binary = shutil.which("systemd-analyze")
    if binary is None:
        pytest.skip("systemd-analyze is not installed here; the parsed checks still run")
    here = str(Path(sys.executable).parent / "gridpilot")
    path = tmp_path / UNIT.name
    path.write_text(unit_text.replace(INSTALLED, here))
    run = subprocess.run(
        [binary, "verify", str(path)], capture_output=True, text=True, timeout=60, check=False
    )
    said = [line for line in (run.stdout + run.stderr).splitlines() if UNIT.name in line]
    return said + ([f"exit {run.returncode}"] if run.returncode else [])


def test_systemd_analyze_verify_finds_nothing(tmp_path: Path) -> None:
    assert verify(UNIT.read_text(), tmp_path) == []


def test_systemd_analyze_verify_can_fail(tmp_path: Path) -> None:
    broken = UNIT.read_text().replace("ProtectSystem=strict", "ProtectSystem=bogus\nRestartt=1")
    assert len(verify(broken, tmp_path)) >= 2


def test_unit_is_hardened_and_runs_as_its_own_user() -> None:
    found = directives(UNIT.read_text())
    for name, value in HARDENING.items():
        assert found.get(name) == [value], name
    assert found["User"] == ["gridpilot"] and found["Group"] == ["gridpilot"]
    (start,) = found["ExecStart"]
    assert start.startswith(f"{INSTALLED} agent --config /etc/gridpilot/site.yaml")
    assert "--state-dir ${STATE_DIRECTORY}" in start


def test_parsed_checks_can_fail() -> None:
    weak = UNIT.read_text().replace("NoNewPrivileges=yes\n", "")
    assert "NoNewPrivileges" not in directives(weak)
