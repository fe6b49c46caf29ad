"""deploy/grafana/: the dashboards are Grafana JSON on the provisioned
Prometheus datasource, and compose mounts them where the provisioning file
looks (their metric names are checked against a real headend in
tests/integration/ops/test_oncall_drill.py)."""

from __future__ import annotations

import json
from pathlib import Path

import yaml

REPO = Path(__file__).resolve().parents[3]
GRAFANA = REPO / "deploy" / "grafana"
BOARDS = sorted((GRAFANA / "dashboards").glob("*.json"))


def test_the_four_dashboards_exist_with_unique_uids_and_titled_panels() -> None:
    assert {b.stem for b in BOARDS} == {"fleet-overview", "ingest", "dispatch", "site"}
    uids = [json.loads(b.read_text())["uid"] for b in BOARDS]
    assert len(set(uids)) == len(uids)
    for board in BOARDS:
        doc = json.loads(board.read_text())
        assert doc["title"].startswith("GridPilot / ")
        ids = [p["id"] for p in doc["panels"]]
        assert len(set(ids)) == len(ids), board.name
        for panel in doc["panels"]:
            assert panel["title"] and panel["targets"], (board.name, panel.get("title"))
            for target in panel["targets"]:
                assert target["expr"].strip(), (board.name, panel["title"])


def test_every_panel_uses_the_provisioned_prometheus_datasource() -> None:
    sources = yaml.safe_load(
        (GRAFANA / "provisioning" / "datasources" / "prometheus.yml").read_text()
    )
    (source,) = sources["datasources"]
    for board in BOARDS:
        for panel in json.loads(board.read_text())["panels"]:
            for ref in (panel["datasource"], *(t["datasource"] for t in panel["targets"])):
                assert ref == {"type": "prometheus", "uid": source["uid"]}, board.name


def test_compose_mounts_the_dashboards_where_provisioning_reads_them() -> None:
    providers = yaml.safe_load(
        (GRAFANA / "provisioning" / "dashboards" / "gridpilot.yml").read_text()
    )
    (provider,) = providers["providers"]
    grafana = yaml.safe_load((REPO / "docker-compose.yml").read_text())["services"]["grafana"]
    mounts = dict(v.split(":")[:2] for v in grafana["volumes"] if v.startswith("./"))
    assert mounts["./deploy/grafana/dashboards"] == provider["options"]["path"]
    assert mounts["./deploy/grafana/provisioning"] == "/etc/grafana/provisioning"


def test_the_site_dashboard_picks_its_site_from_the_metrics() -> None:
    doc = json.loads((GRAFANA / "dashboards" / "site.json").read_text())
    (variable,) = doc["templating"]["list"]
    assert variable["name"] == "site"
    assert "gridpilot_site_assets" in variable["definition"]
    assert all('site="$site"' in t["expr"] for p in doc["panels"] for t in p["targets"])
