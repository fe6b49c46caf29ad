"""The on-call drill with real parts: a headend and a simulated agent as
processes, a real Prometheus (Debian's) evaluating deploy/prometheus/alerts.yml
with a short `for:`, and `gridpilot doctor` as the on-call engineer runs it.
Stopping the agent makes GridPilotAgentDown fire, and the doctor names the
cause (agent gone, since when, its buffer) and exits non-zero."""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path
from typing import TYPE_CHECKING, Any

import httpx
import pytest
import yaml
from gp_testing import wait_for_sync
from gp_testing.metrics import names
from gp_testing.procs import AgentProcess, HeadendProcess, Proc

from gridpilot.ops.processes import free_port

if TYPE_CHECKING:
    from temporalio.testing import WorkflowEnvironment

pytestmark = pytest.mark.integration

REPO = Path(__file__).resolve().parents[3]
ALERTS = REPO / "deploy" / "prometheus" / "alerts.yml"
DASHBOARDS = REPO / "deploy" / "grafana" / "dashboards"
GATEWAY = "gwdrill"
SITE = f"site-{GATEWAY}"


@pytest.fixture
def headend(
    database_url: str, temporal_env: WorkflowEnvironment, tmp_path: Path
) -> Iterator[HeadendProcess]:
    address = str(temporal_env.client.service_client.config.target_host)
    h = HeadendProcess(database_url, address, tmp_path)
    h.start()
    try:
        yield h
    finally:
        assert h.proc is not None
        h.proc.stop()


@pytest.fixture
def agent(headend: HeadendProcess, tmp_path: Path) -> Iterator[AgentProcess]:
    a = AgentProcess(GATEWAY, headend.grpc_address, tmp_path / "agent", assets=3, interval_s=0.5)
    a.start()
    try:
        yield a
    finally:
        if a.proc is not None:
            a.proc.stop()


class Prometheus:
    """`prometheus` on a free port scraping the headend every second, with the
    shipped alert rules (their `for:` cut to 2 s), evaluated every second."""

    def __init__(self, workdir: Path, target: str) -> None:
        binary = shutil.which("prometheus")
        if binary is None:
            pytest.fail("prometheus not found: apt-get install prometheus (Debian's package)")
        workdir.mkdir()
        rules = yaml.safe_load(ALERTS.read_text())
        for group in rules["groups"]:
            for rule in group["rules"]:
                if "for" in rule:
                    rule["for"] = "2s"
        (workdir / "alerts.yml").write_text(yaml.safe_dump(rules))
        config = {
            "global": {"scrape_interval": "1s", "evaluation_interval": "1s"},
            "rule_files": [str(workdir / "alerts.yml")],
            "scrape_configs": [
                {"job_name": "gridpilot-headend", "static_configs": [{"targets": [target]}]}
            ],
        }
        (workdir / "prometheus.yml").write_text(yaml.safe_dump(config))
        self.url = f"http://127.0.0.1:{free_port()}"
        cmd = [
            binary,
            f"--config.file={workdir / 'prometheus.yml'}",
            f"--storage.tsdb.path={workdir / 'data'}",
            f"--web.listen-address={self.url.removeprefix('http://')}",
        ]
        self.proc = Proc("prometheus", cmd, dict(os.environ), workdir / "prometheus.log")
        wait_for_sync(self._ready, 60, "prometheus /-/ready")

    def _ready(self) -> bool:
        assert self.proc.alive(), self.proc.tail()
        try:
            return httpx.get(f"{self.url}/-/ready", timeout=5).status_code == 200
        except httpx.HTTPError:
            return False

    def alerts(self, name: str, state: str) -> list[dict[str, Any]]:
        body = httpx.get(f"{self.url}/api/v1/alerts", timeout=5).json()
        return [
            a
            for a in body["data"]["alerts"]
            if a["labels"]["alertname"] == name and a["state"] == state
        ]

    def query(self, promql: str) -> list[dict[str, Any]]:
        r = httpx.get(f"{self.url}/api/v1/query", params={"query": promql}, timeout=5).json()
        assert r["status"] == "success", r
        result: list[dict[str, Any]] = r["data"]["result"]
        return result


@pytest.fixture
def prometheus(headend: HeadendProcess, tmp_path: Path) -> Iterator[Prometheus]:
    """A Prometheus scraping the headend, stopped after the test (it outlived
    the run before)."""
    p = Prometheus(tmp_path / "prometheus", f"127.0.0.1:{headend.api_port}")
    try:
        yield p
    finally:
        p.proc.stop()


def doctor(headend: HeadendProcess, *args: str) -> subprocess.CompletedProcess[str]:
    env = {
        **os.environ,
        "GRIDPILOT_DATABASE_URL": headend.database_url,
        "GRIDPILOT_TEMPORAL_ADDRESS": headend.temporal_address,
        "GRIDPILOT_TASK_QUEUE": headend.task_queue,
    }
    cmd = [sys.executable, "-m", "gridpilot", "doctor", *args]
    return subprocess.run(cmd, env=env, capture_output=True, text=True, timeout=120)


def test_stopping_the_agent_fires_the_alert_and_the_doctor_names_the_cause(
    headend: HeadendProcess, agent: AgentProcess, prometheus: Prometheus
) -> None:
    headend.wait(
        lambda: (headend.metric("gridpilot_site_newest_sample_age_seconds", site=SITE) or 99) < 30,
        60,
        "the agent's telemetry stored",
    )
    healthy = doctor(headend, "--site", SITE, "--json")
    assert healthy.returncode == 0, healthy.stdout + healthy.stderr
    report = json.loads(healthy.stdout)
    checks = {f["check"]: f["status"] for f in report["findings"]}
    for check in ("database", "migrations", "temporal", "search attributes", "workers", "route"):
        assert checks[check] == "ok", report
    assert checks[f"agent {GATEWAY}"] == "ok" and checks["newest sample"] == "ok"

    # Scraped, evaluated, and the site is not down yet.
    wait_for_sync(
        lambda: prometheus.query(f'gridpilot_site_agents_connected{{site="{SITE}"}} == 1'),
        60,
        "prometheus sees the agent connected",
    )
    assert prometheus.alerts("GridPilotAgentDown", "firing") == []

    assert agent.proc is not None
    stopped = time.monotonic()
    assert agent.proc.stop() == 0, agent.proc.tail()

    firing = wait_for_sync(
        lambda: prometheus.alerts("GridPilotAgentDown", "firing"), 120, "the alert firing"
    )
    to_alert = time.monotonic() - stopped
    assert [a["labels"]["site"] for a in firing] == [SITE]
    assert firing[0]["annotations"]["runbook_url"] == "docs/runbooks/no-data.md"
    assert f"gridpilot doctor --site {SITE}" in firing[0]["annotations"]["description"]

    asked = time.monotonic()
    diagnosed = doctor(headend, "--site", SITE)
    to_diagnosis = time.monotonic() - stopped
    doctor_took = time.monotonic() - asked
    scrape = prometheus.query('max_over_time(scrape_duration_seconds{job="gridpilot-headend"}[5m])')
    out = diagnosed.stdout
    assert diagnosed.returncode == 1, out + diagnosed.stderr
    assert f"FAIL  agent {GATEWAY}" in out and "agent gone since" in out, out
    assert "closed: the agent ended its stream" in out, out
    assert "waiting in the agent's buffer" in out and "buffers on its disk" in out, out
    assert out.strip().splitlines()[-1].startswith("next: on the site's host"), out
    print(
        f"\ndrill: agent stopped -> alert firing {to_alert:.1f} s "
        f"(scrape 1 s, eval 1 s, for 2 s); -> doctor named the cause {to_diagnosis:.1f} s "
        f"(the doctor itself {doctor_took:.1f} s); slowest /metrics scrape "
        f"{float(scrape[0]['value'][1]) * 1000:.0f} ms\n" + out
    )


def test_every_metric_the_alerts_and_dashboards_use_is_on_a_real_headends_metrics(
    headend: HeadendProcess, agent: AgentProcess
) -> None:
    """A dashboard panel or an alert on a misspelled metric shows nothing and
    never fires: every gridpilot_* name they use must be on /metrics."""
    from gp_testing.promql import metric_names

    headend.wait(
        lambda: headend.metric("gridpilot_site_agents_connected", site=SITE) == 1,
        60,
        "the agent connected",
    )
    served = names(httpx.get(f"{headend.api}/metrics", timeout=10).text)
    used: dict[str, set[str]] = {}
    rules = yaml.safe_load(ALERTS.read_text())
    for group in rules["groups"]:
        for rule in group["rules"]:
            used.setdefault(f"alert {rule['alert']}", set()).update(metric_names(rule["expr"]))
    boards = sorted(DASHBOARDS.glob("*.json"))
    assert len(boards) >= 4
    for board in boards:
        for panel in json.loads(board.read_text())["panels"]:
            for target in panel.get("targets", []):
                used.setdefault(f"{board.name}: {panel['title']}", set()).update(
                    metric_names(target["expr"])
                )
    missing = {
        where: sorted(n for n in found if n not in served)
        for where, found in used.items()
        if any(n not in served for n in found)
    }
    assert not missing, missing
    assert sum(len(v) for v in used.values()) > 30
