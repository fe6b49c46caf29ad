"""Protocol device configs: point maps are validated against the telemetry
model with file:line errors, the examples load, and the shipped JSON Schema
is what the model generates."""

from __future__ import annotations

import json
import textwrap
from pathlib import Path

import pytest
from typer.testing import CliRunner

from gridpilot.cli.main import app
from gridpilot.edge_agent import ConfigError, load_config
from gridpilot.edge_agent.config import ModbusDevice, OpcUaDevice
from gridpilot.edge_agent.schema import SCHEMA_PATH, render_schema, site_schema

ROOT = Path(__file__).parents[3]
EXAMPLES = ROOT / "examples"

HEAD = """\
version: 1
gateway_id: gw-1
site: {id: site-1}
headend: {address: "127.0.0.1:50051", insecure: true}
assets:
  - id: bess-1
    type: bess
    limits: {p_min_kw: -100, p_max_kw: 100}
    default_p_kw: 0
    capacity_kwh: 200
"""


def problems(tmp_path: Path, device: str) -> list[str]:
    path = tmp_path / "site.yaml"
    path.write_text(HEAD + textwrap.indent(textwrap.dedent(device), "    "))
    with pytest.raises(ConfigError) as info:
        load_config(path)
    return [str(p).removeprefix(f"{path}:") for p in info.value.problems]


def test_point_mistakes_name_line_and_field(tmp_path: Path) -> None:
    found = problems(
        tmp_path,
        """\
        device:
          kind: modbus
          host: 10.0.0.5
          points:
            - {field: q_kvar, address: 5, table: input, mode: rw}
            - {field: setpoint_kw, address: 6, table: input, mode: w}
            - {field: x_vendor, table: coil, address: 1, type: float32}
            - {field: x_other, address: 9, type: int32, bit: 3}
            - {field: x_bad_order, address: 10, byte_order: ADCB}
        """,
    )
    assert found == [
        "15: assets[0].device.points[0].mode: only setpoint_kw can be written; use mode: r",
        "16: assets[0].device.points[1].table: only holding registers and coils can be written",
        "17: assets[0].device.points[2].type: a coil is a bool",
        "18: assets[0].device.points[3].bit: only for int16/uint16 registers",
        "19: assets[0].device.points[4].byte_order: should be 'ABCD', 'BADC', 'CDAB' or 'DCBA'",
    ]


def test_point_fields_are_checked_against_the_asset_types_telemetry(tmp_path: Path) -> None:
    found = problems(
        tmp_path,
        """\
        device:
          kind: mqtt
          host: broker
          points:
            - {field: p_kw, topic: a/b}
            - {field: soc_pcnt, topic: a/b}
            - {field: irradiance_w_m2, topic: a/b}
            - {field: x_vendor_thing, topic: a/b}
            - {field: quality, topic: a/b}
        """,
    )
    assert found == [
        "16: assets[0].device.points[1].field: unknown field 'soc_pcnt'; did you mean "
        "'soc_pct'? see docs/telemetry-model.md, or use x_soc_pcnt",
        "17: assets[0].device.points[2].field: 'irradiance_w_m2' is not a field of a bess",
        "19: assets[0].device.points[4].field: 'quality' is set by the agent itself; "
        "map the value to another field",
    ]
    found = problems(
        tmp_path,
        """\
        device:
          kind: mqtt
          host: broker
          points:
            - {field: p_kw, topic: a/b}
            - {field: p_kw, topic: a/c}
            - {field: setpoint_kw, topic: a/d, mode: w}
            - {field: setpoint_kw, topic: a/e, mode: w}
        """,
    )
    assert found == [
        "16: assets[0].device.points[1].field: 'p_kw' is already read by points[0]",
        "18: assets[0].device.points[3].mode: points[2] is already written",
    ]


def test_opcua_security_rules_and_missing_files(tmp_path: Path) -> None:
    found = problems(
        tmp_path,
        """\
        device:
          kind: opcua
          url: opc.tcp://plc:4840
          auth: {type: username, username: agent, password: x}
          points:
            - {field: p_kw, node: "ns=2;s=P"}
        """,
    )
    assert found == ["11: assets[0].device.security: a password needs a secure channel (security:)"]
    found = problems(
        tmp_path,
        """\
        device:
          kind: opcua
          url: http://plc
          security: {certificate: nope.der, private_key: nope.pem}
          points: []
        """,
    )
    assert found == [
        "13: assets[0].device.url: 'http://plc' is not opc.tcp://host:port/path",
        f"14: assets[0].device.security.certificate: file not found: {tmp_path / 'nope.der'}",
        f"14: assets[0].device.security.private_key: file not found: {tmp_path / 'nope.pem'}",
        "15: assets[0].device.points: List should have at least 1 item after validation, not 0",
    ]


def test_modbus_needs_points_unless_sunspec() -> None:
    with pytest.raises(ValueError, match=r"give points \(or sunspec: true\)"):
        ModbusDevice.model_validate({"kind": "modbus", "host": "h"})
    dev = ModbusDevice.model_validate({"kind": "modbus", "host": "h", "sunspec": True})
    assert dev.points == [] and dev.port == 502 and dev.unit_id == 1


@pytest.mark.parametrize("name", ["bess-modbus.yaml", "pv-sunspec.yaml", "meter-mqtt.yaml"])
def test_examples_load(name: str) -> None:
    cfg = load_config(EXAMPLES / name)
    assert cfg.assets[0].device.kind in ("modbus", "mqtt")


def test_ev_example_loads_once_its_certificate_and_password_exist(tmp_path: Path) -> None:
    text = (EXAMPLES / "ev-opcua.yaml").read_text()
    for rel in ("pki/agent-cert.der", "pki/agent-key.pem", "secrets/opcua-password"):
        (tmp_path / rel).parent.mkdir(exist_ok=True)
        (tmp_path / rel).write_text("x")
    (tmp_path / "ev.yaml").write_text(text)
    device = load_config(tmp_path / "ev.yaml").assets[0].device
    assert isinstance(device, OpcUaDevice)
    assert device.security is not None and device.security.mode == "SignAndEncrypt"
    assert device.auth.type == "username"


def test_shipped_json_schema_is_up_to_date() -> None:
    assert SCHEMA_PATH.read_text() == render_schema(), (
        "run `gridpilot agent schema -o src/gridpilot/edge_agent/site.schema.json`"
    )


def test_schema_knows_the_device_kinds_and_the_cli_prints_it() -> None:
    schema = site_schema()
    kinds = {
        d["properties"]["kind"]["const"]
        for d in schema["$defs"].values()
        if "kind" in d.get("properties", {}) and "const" in d["properties"]["kind"]
    }
    assert {"simulated", "modbus", "opcua", "mqtt"} <= kinds
    result = CliRunner().invoke(app, ["agent", "schema"])
    assert result.exit_code == 0
    assert json.loads(result.stdout)["title"].startswith("GridPilot edge agent site config")
