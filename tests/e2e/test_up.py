"""`gridpilot up` as a user runs it: the whole stack in a temp data dir."""

from __future__ import annotations

import asyncio
import json
import os
import signal
import subprocess
import sys
from pathlib import Path
from typing import Any

import httpx
import psycopg
import pytest
from asyncua import Client, ua
from gp_testing import wait_for_sync

from gridpilot.ops.pginstall import installed_timescaledb
from gridpilot.ops.processes import free_port

pytestmark = pytest.mark.e2e


def _wait(check, timeout: float, proc: subprocess.Popen[bytes], log: Path):  # type: ignore[no-untyped-def]
    """``wait_for_sync`` while `gridpilot up` runs (not yet answering: not yet)."""

    def running_and_met():  # type: ignore[no-untyped-def]
        if proc.poll() is not None:
            pytest.fail(f"gridpilot up exited {proc.returncode}:\n{log.read_text()[-3000:]}")
        return check()

    not_yet = (httpx.HTTPError, OSError, ValueError, KeyError)
    try:
        return wait_for_sync(running_and_met, timeout, interval=0.5, ignore=not_yet)
    except AssertionError as exc:
        pytest.fail(f"{exc}; up log:\n{log.read_text()[-3000:]}")


def _alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    stat = Path(f"/proc/{pid}/stat")
    return not (stat.exists() and stat.read_text().split()[2] == "Z")


def _start(data_dir: Path, ports: dict[str, int], log: Path) -> subprocess.Popen[bytes]:
    args = [sys.executable, "-m", "gridpilot", "up", "--data-dir", str(data_dir)]
    for flag, port in ports.items():
        args += [f"--{flag}", str(port)]
    return subprocess.Popen(args, stdout=log.open("ab"), stderr=subprocess.STDOUT)


def test_up_runs_the_demo_dispatches_a_site_and_stops_cleanly(tmp_path: Path) -> None:
    data_dir = tmp_path / "data"
    log = tmp_path / "up.log"
    ports = {
        "api-port": free_port(),
        "grpc-port": free_port(),
        "temporal-port": free_port(),
        "ui-port": free_port(),
        "opcua-port": free_port(),
    }
    proc = _start(data_dir, ports, log)
    try:
        up_json = data_dir / "up.json"
        info = _wait(lambda: json.loads(up_json.read_text()), 120, proc, log)
        api = info["api_url"]
        # Secure by default: REST needs the admin token that `up` wrote (0600) ...
        token_file = Path(info["admin_token_file"])
        assert token_file.stat().st_mode & 0o777 == 0o600
        token = token_file.read_text().strip()
        assert token in log.read_text()  # printed once for the user
        assert httpx.get(f"{api}/agents").status_code == 401
        auth = {"Authorization": f"Bearer {token}"}
        # ... and the agent reached the headend over mTLS with its own certificate.
        site_yaml = (data_dir / "demo-site.yaml").read_text()
        assert "insecure" not in site_yaml and "cert_file" in site_yaml
        for key in (data_dir / "pki").rglob("*.key"):
            assert key.stat().st_mode & 0o777 == 0o600, key
        assert info["site_id"] == "demo-site"
        assert sorted(info["asset_ids"]) == ["demo-bess", "demo-ev", "demo-pv"]
        assert "GridPilot is up" in log.read_text()
        # On TimescaleDB whenever `gridpilot dev timescaledb` installed it, and says so.
        installed = installed_timescaledb()
        assert info["timescaledb"] == (installed or False)
        on_timescale = f"telemetry on timescaledb {installed}" in log.read_text()
        assert on_timescale == bool(installed)
        assert httpx.get(info["temporal_ui_url"]).status_code == 200
        # Migrated as the owner; the headend runs as the app role, which may not
        # rewrite the audit log.
        with psycopg.connect(info["database_url"]) as conn:
            users = conn.execute(
                "SELECT DISTINCT usename FROM pg_stat_activity WHERE datname = current_database() "
                "AND pid <> pg_backend_pid() AND backend_type = 'client backend'"
            ).fetchall()
        assert users == [("gridpilot_app",)]
        assert "gridpilot_app" in info["app_database_url"]

        agents = httpx.get(f"{api}/agents", headers=auth).json()
        assert [(a["gateway_id"], a["connected"]) for a in agents] == [("demo-gw", True)]
        assets = {a["id"]: a for a in httpx.get(f"{api}/assets", headers=auth).json()}
        assert {a["asset_type"] for a in assets.values()} == {"bess", "pv", "ev_charger"}
        latest = httpx.get(f"{api}/assets/demo-bess/telemetry/latest", headers=auth).json()
        assert latest["soc_pct"] is not None
        # History in buckets, as the app role (from the rollups on TimescaleDB).
        history = httpx.get(
            f"{api}/telemetry", params={"asset_id": "demo-bess", "bucket": "auto"}, headers=auth
        )
        assert history.status_code == 200 and history.json()[-1]["samples"] > 0

        # A local SCADA on the demo agent's OPC UA server, as up.json says to connect.
        local_id = asyncio.run(_scada_writes_a_setpoint(info["opcua"], 60.0))
        local = _wait(
            lambda: (
                (d := httpx.get(f"{api}/dispatches/{local_id}", headers=auth).json())["state"]
                == "active"
                and d
            ),
            60,
            proc,
            log,
        )
        assert local["source"] == "local" and local["submitted_by"] == "opcua:demo-operator@demo-gw"

        r = httpx.post(
            f"{api}/dispatches",
            json={"site_id": "demo-site", "p_kw": 100, "duration_s": 120},
            headers=auth,
        )
        assert r.status_code == 201, r.text
        dispatch_id = r.json()["id"]
        site = _wait(
            lambda: (
                (d := httpx.get(f"{api}/dispatches/{dispatch_id}", headers=auth).json())["state"]
                == "active"
                and d
            ),
            60,
            proc,
            log,
        )
        bess_share = next(
            line["p_kw"] for line in site["allocation"]["lines"] if line["asset_id"] == "demo-bess"
        )
        # The simulated battery follows its setpoint in its telemetry.
        _wait(
            lambda: (
                abs(
                    httpx.get(f"{api}/assets/demo-bess/telemetry/latest", headers=auth).json()[
                        "p_kw"
                    ]
                    - bess_share
                )
                < 0.01
            ),
            30,
            proc,
            log,
        )
        assert site["submitted_by"] == "token:demo-admin"
        pids = info["pids"]
    finally:
        proc.send_signal(signal.SIGINT)
        code = proc.wait(60)
    assert code == 0, log.read_text()[-3000:]
    for child_log in (data_dir / "logs").glob("*.log"):
        assert token not in child_log.read_text(), f"token leaked into {child_log}"
    assert "gridpilot up: stopped" in log.read_text()
    assert not (data_dir / "up.json").exists()

    def alive() -> list[str]:
        return [name for name, pid in pids.items() if pid and _alive(pid)]

    wait_for_sync(lambda: not alive(), 10, lambda: f"up's children gone (alive: {alive()})")

    # A second run reuses the data dir: the dispatch from the first run is still there.
    proc = _start(data_dir, ports, log)
    try:
        info = _wait(lambda: json.loads((data_dir / "up.json").read_text()), 120, proc, log)
        # The token from the first run is still valid and reused.
        assert Path(info["admin_token_file"]).read_text().strip() == token
        old = httpx.get(f"{info['api_url']}/dispatches/{dispatch_id}", headers=auth).json()
        assert old["id"] == dispatch_id
    finally:
        proc.send_signal(signal.SIGINT)
        assert proc.wait(60) == 0


async def _scada_writes_a_setpoint(opcua: dict[str, Any], p_kw: float) -> str:
    """Connect as up.json says, read the battery, write its setpoint; the
    local dispatch id the agent shows for it."""
    client = Client(opcua["endpoint_url"], timeout=10)
    client.application_uri = opcua["client_application_uri"]
    await client.set_security_string(
        f"Basic256Sha256,SignAndEncrypt,{opcua['client_certificate']},{opcua['client_private_key']}"
    )
    client.set_user(opcua["username"])
    client.set_password(Path(opcua["password_file"]).read_text().strip())  # noqa: ASYNC240
    async with client:
        ns = await client.get_namespace_index(opcua["namespace_uri"])
        bess = await client.nodes.objects.get_child(
            [f"{ns}:Sites", f"{ns}:demo-site", f"{ns}:demo-bess"]
        )
        soc = await (await bess.get_child([f"{ns}:Telemetry", f"{ns}:soc_pct"])).read_value()
        assert 0 <= soc <= 100
        setpoint = await bess.get_child([f"{ns}:Control", f"{ns}:SetpointKw"])
        assert opcua["setpoint_node"].endswith(f";s={setpoint.nodeid.Identifier}")
        await setpoint.write_value(ua.Variant(p_kw, ua.VariantType.Double))
        active = await bess.get_child([f"{ns}:Control", f"{ns}:ActiveDispatchId"])
        dispatch_id = await active.read_value()
        assert dispatch_id.startswith("loc-")
        return str(dispatch_id)


def test_up_restarts_a_killed_agent_and_headend_and_says_why(tmp_path: Path) -> None:
    data_dir = tmp_path / "data"
    log = tmp_path / "up.log"
    ports = {
        "api-port": free_port(),
        "grpc-port": free_port(),
        "temporal-port": free_port(),
        "ui-port": free_port(),
        "opcua-port": free_port(),
    }
    proc = _start(data_dir, ports, log)
    up_json = data_dir / "up.json"
    try:
        info = _wait(lambda: json.loads(up_json.read_text()), 120, proc, log)
        api = info["api_url"]
        auth = {"Authorization": f"Bearer {Path(info['admin_token_file']).read_text().strip()}"}

        def connected() -> bool:
            agents = httpx.get(f"{api}/agents", headers=auth, timeout=5).json()
            return [(a["gateway_id"], a["connected"]) for a in agents] == [("demo-gw", True)]

        for name in ("agent", "headend"):
            old_pid = json.loads(up_json.read_text())["pids"][name]
            os.kill(old_pid, signal.SIGKILL)
            new_pid = _wait(
                lambda name=name, old_pid=old_pid: (
                    (pid := json.loads(up_json.read_text())["pids"][name]) != old_pid and pid
                ),
                60,
                proc,
                log,
            )
            assert _alive(new_pid)
            # The stack works again: the (new) agent reaches the (new) headend.
            _wait(connected, 90, proc, log)
            assert f"{name} exited (killed by SIGKILL); restarting in 1 s" in log.read_text()
            assert f"{name} restarted (pid {new_pid})" in log.read_text()
        assert proc.poll() is None
    finally:
        proc.send_signal(signal.SIGINT)
        code = proc.wait(60)
    assert code == 0, log.read_text()[-3000:]
    assert "gridpilot up: stopped" in log.read_text()
