"""Every sample config in examples/ loads, and reads its (simulated) device
through the real adapters: the file is copied with its ports pointed at a
peer this test starts, and read once like `gridpilot agent check --connect`."""

from __future__ import annotations

import asyncio
import json
import subprocess
import sys
from pathlib import Path

import aiomqtt
import pytest
from asyncua import ua
from gp_testing.modbus_peer import ModbusPeer
from gp_testing.mqtt_broker import mosquitto
from gp_testing.opcua_peer import (
    CLIENT_URI,
    DEFAULT_VARIABLES,
    Credentials,
    OpcUaPeer,
    make_certificate,
)
from gp_testing.sunspec_image import image

from gridpilot.edge_agent import load_config
from gridpilot.edge_agent.adapters.modbus.codec import encode
from gridpilot.edge_agent.probe import ProbeResult, probe_site
from gridpilot.ops.processes import free_port

pytestmark = pytest.mark.integration

EXAMPLES = Path(__file__).resolve().parents[3] / "examples"


def retarget(name: str, tmp: Path, old: str, new: str) -> Path:
    text = (EXAMPLES / name).read_text()
    assert old in text
    out = tmp / name
    out.write_text(text.replace(old, new))
    return out


async def probe_one(path: Path) -> ProbeResult:
    [result] = await probe_site(load_config(path), timeout_s=10)
    assert result.error is None, result.error
    assert result.sample is not None
    return result


async def test_bess_over_modbus_example(tmp_path: Path) -> None:
    peer = ModbusPeer(free_port())
    await peer.start()
    regs = (
        encode(-1500, "int32")  # p_kw -150.0
        + encode(25, "int32")  # q_kvar 2.5
        + [655]  # soc 65.5 %
        + encode(230.4, "float32", "CDAB")
        + [5001, 2500, 2500, 1, 981]  # Hz, available charge/discharge, state, soh
        + encode(312, "int16")
        + encode(-55, "int16")
        + encode(1200, "uint32")
        + encode(900, "uint32")
    )
    await peer.set("holding", 0, regs)
    await peer.set("input", 0, [245])
    await peer.set("coil", 0, [True])
    path = retarget("bess-modbus.yaml", tmp_path, "port: 5020", f"port: {peer.port}")
    try:
        s = (await probe_one(path)).sample
        assert s is not None
        assert (s.p_kw, s.q_kvar, s.soc_pct, s.frequency_hz, s.state) == (
            -150.0,
            2.5,
            65.5,
            50.01,
            "charging",
        )
        assert s.voltage_v is not None and abs(s.voltage_v - 230.4) < 1e-4
        assert s.details["grid_connected"] is True and s.details["fault"] is False
        assert (s.details["cell_temp_max_c"], s.details["temperature_c"]) == (31.2, 24.5)
        # the CLI's --connect path, in its own process
        cli = [sys.executable, "-m", "gridpilot", "agent", "check", str(path), "--connect"]
        done = await asyncio.to_thread(subprocess.run, cli, capture_output=True, text=True)
        assert done.returncode == 0, done.stderr
        assert "soc_pct" in done.stdout and "65.5" in done.stdout
    finally:
        await peer.stop()


async def test_pv_over_sunspec_example(tmp_path: Path) -> None:
    peer = ModbusPeer(free_port(), holding_start=40000, registers=1100)
    await peer.start()
    models = [
        (1, {"Mn": "GridPilot"}),
        (101, {"W": 3300, "W_SF": 1, "PhVphA": 2302, "V_SF": -1, "Hz": 4999, "Hz_SF": -2, "St": 4}),
        (120, {"DERTyp": 4, "WRtg": 1000, "WRtg_SF": 2}),
        (123, {"WMaxLimPct": 100, "WMaxLimPct_SF": 0, "WMaxLim_Ena": 0}),
    ]
    await peer.set("holding", 40000, image(models))
    await peer.set("input", 1000, [640])
    path = retarget("pv-sunspec.yaml", tmp_path, "port: 5021", f"port: {peer.port}")
    try:
        s = (await probe_one(path)).sample
        assert s is not None
        assert (s.p_kw, s.voltage_v, s.frequency_hz, s.state) == (33.0, 230.2, 49.99, "mppt")
        assert (s.details["rated_p_kw"], s.details["irradiance_w_m2"]) == (100.0, 640)
    finally:
        await peer.stop()


async def test_ev_charger_over_opcua_example(tmp_path: Path) -> None:
    cert, key = await make_certificate(tmp_path / "gen", "agent", CLIENT_URI)
    (tmp_path / "pki").mkdir()
    cert.rename(tmp_path / "pki" / "agent-cert.der")
    key.rename(tmp_path / "pki" / "agent-key.pem")
    (tmp_path / "secrets").mkdir()
    (tmp_path / "secrets" / "opcua-password").write_text("pa55word\n")
    variables = {**DEFAULT_VARIABLES, "EV1.Power_W": (7400.0, ua.VariantType.Double, False)}
    peer = OpcUaPeer(
        free_port(),
        variables=variables,  # the charger counts charging as positive watts
        secure_dir=tmp_path / "server",
        credentials=Credentials({"agent": "pa55word"}),
    )
    await peer.start()
    path = retarget("ev-opcua.yaml", tmp_path, "127.0.0.1:4840", f"127.0.0.1:{peer.port}")
    try:
        s = (await probe_one(path)).sample
        assert s is not None
        assert (s.p_kw, s.voltage_v, s.state) == (-7.4, 230.5, "charging")  # scale -0.001
        assert s.details["session_state"] == "Charging"
    finally:
        await peer.stop()


async def test_meter_over_mqtt_example(tmp_path: Path) -> None:
    with mosquitto(tmp_path, free_port()) as port:
        async with aiomqtt.Client("127.0.0.1", port=port) as c:
            state = {
                "power": {"active_w": 41250, "reactive_var": -800},
                "voltage": [231.2, 230.8, 229.9],
                "frequency_hz": 50.01,
            }
            await c.publish("site/meter1/state", json.dumps(state), qos=1, retain=True)
            energy = {"export_wh": 1_234_500, "import_wh": 2_000}
            await c.publish("site/meter1/energy", json.dumps(energy), qos=1, retain=True)
        text = (EXAMPLES / "meter-mqtt.yaml").read_text().replace("port: 1883", f"port: {port}")
        path = tmp_path / "meter-mqtt.yaml"
        path.write_text(text)
        cfg = load_config(path)
        assert cfg.mqtt_publish is not None and cfg.mqtt_publish.port == port
        s = (await probe_one(path)).sample
        assert s is not None
        assert (s.p_kw, s.q_kvar, s.voltage_v, s.frequency_hz) == (41.25, -0.8, 231.2, 50.01)
        assert s.details == {"energy_export_kwh": 1234.5, "energy_import_kwh": 2.0}
