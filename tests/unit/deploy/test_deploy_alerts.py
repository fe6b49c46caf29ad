"""deploy/prometheus/alerts.yml: valid for Prometheus (`promtool check rules`),
behaving as its unit tests say (`promtool test rules`), and every rule names
a runbook that exists in docs/runbooks/."""

from __future__ import annotations

import re
import shutil
import subprocess
from pathlib import Path

import pytest
import yaml

REPO = Path(__file__).resolve().parents[3]
ALERTS = REPO / "deploy" / "prometheus" / "alerts.yml"
ALERTS_TEST = REPO / "deploy" / "prometheus" / "alerts_test.yml"
RUNBOOKS = REPO / "docs" / "runbooks"
# The list: each has its runbook.
REQUIRED_RUNBOOKS = {
    "no-data",
    "agent-flapping",
    "dispatch-not-applied",
    "database-outage",
    "temporal-outage",
    "certificate-expiry",
    "deploy",
    "upgrade",
}


def promtool() -> str:
    found = shutil.which("promtool")
    if found is None:
        pytest.fail("promtool not found: apt-get install prometheus (Debian's package ships it)")
    return found


def rules() -> list[dict[str, object]]:
    doc = yaml.safe_load(ALERTS.read_text())
    return [rule for group in doc["groups"] for rule in group["rules"]]


def test_promtool_accepts_the_alert_rules() -> None:
    run = subprocess.run(
        [promtool(), "check", "rules", str(ALERTS)], capture_output=True, text=True, timeout=60
    )
    assert run.returncode == 0, run.stdout + run.stderr
    assert f"SUCCESS: {len(rules())} rules found" in run.stdout


def test_the_alert_rules_pass_their_promtool_unit_tests() -> None:
    run = subprocess.run(
        [promtool(), "test", "rules", str(ALERTS_TEST)],
        capture_output=True,
        text=True,
        timeout=120,
        cwd=ALERTS_TEST.parent,
    )
    assert run.returncode == 0, run.stdout + run.stderr
    assert "SUCCESS" in run.stdout


def test_every_alert_names_an_existing_runbook_and_every_runbook_exists() -> None:
    named = set()
    for rule in rules():
        annotations = rule["annotations"]
        assert isinstance(annotations, dict)
        url = annotations.get("runbook_url")
        assert isinstance(url, str) and url.startswith("docs/runbooks/"), rule["alert"]
        assert (REPO / url).is_file(), f"{rule['alert']}: {url} does not exist"
        named.add(Path(url).stem)
    present = {p.stem for p in RUNBOOKS.glob("*.md")} - {"README"}
    assert present >= REQUIRED_RUNBOOKS
    assert named <= present


def test_the_no_data_runbook_starts_with_gridpilot_doctor_for_the_site() -> None:
    text = (RUNBOOKS / "no-data.md").read_text()
    first_step = text.split("\n1. ", 1)[1].split("\n2. ", 1)[0]
    assert "gridpilot doctor --site <site>" in first_step


def test_every_runbook_step_gives_a_command_or_a_metric_and_what_it_means() -> None:
    for name in REQUIRED_RUNBOOKS:
        text = (RUNBOOKS / f"{name}.md").read_text()
        body = "1. " + text.split("\n1. ", 1)[1]
        steps = re.split(r"\n(?=\d+\. )", body)
        assert len(steps) >= 4, name
        for step in steps:
            assert "`" in step, f"{name}: a step without a command or metric: {step[:60]}"
            assert "→" in step, (
                f"{name}: a step that does not say what the answer means: {step[:60]}"
            )
