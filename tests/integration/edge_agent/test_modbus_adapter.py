"""The Modbus adapter against a real pymodbus server on 127.0.0.1."""

from __future__ import annotations

import math
import random
import textwrap
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import pytest
import structlog
from gp_testing import wait_for
from gp_testing.modbus_peer import ModbusPeer
from gp_testing.tcp_proxy import TcpProxy
from typer.testing import CliRunner

from gridpilot.cli.main import app
from gridpilot.edge_agent.adapters import DeviceUnavailable, DeviceWriteFailed
from gridpilot.edge_agent.adapters.modbus import ModbusAdapter
from gridpilot.edge_agent.adapters.modbus.codec import encode
from gridpilot.edge_agent.clock import SystemClock
from gridpilot.edge_agent.config import ModbusDevice
from gridpilot.edge_agent.device import ManagedDevice
from gridpilot.edge_agent.telemetry.polling import Poller
from gridpilot.ops.processes import free_port

pytestmark = pytest.mark.integration

VALUES = {
    "int16": -1234,
    "uint16": 54321,
    "int32": -123456789,
    "uint32": 3_000_000_000,
    "int64": -(2**40) - 7,
    "uint64": 2**63 + 11,
    "float32": 3.5,
    "float64": -1234.5678125,
}
ORDERS = ("ABCD", "BADC", "CDAB", "DCBA")


@pytest.fixture
async def peer() -> AsyncIterator[ModbusPeer]:
    server = ModbusPeer(free_port(), unit_ids=(1, 2))
    await server.start()
    yield server
    await server.stop()


def device(port: int, points: list[dict[str, Any]], **kw: Any) -> ModbusDevice:
    return ModbusDevice.model_validate(
        {"kind": "modbus", "host": "127.0.0.1", "port": port, "points": points, **kw}
    )


def adapter(cfg: ModbusDevice) -> ModbusAdapter:
    return ModbusAdapter("bess", cfg, clock=SystemClock(), rng=random.Random(1))


def x_name(dtype: str, order: str) -> str:
    return f"x_{dtype}_{order.lower()}"


async def test_every_data_type_decodes_right_in_all_four_byte_and_word_orders(
    peer: ModbusPeer,
) -> None:
    points, address = [], 0
    for dtype, value in VALUES.items():
        for order in ORDERS:
            words = encode(value, dtype, order)
            await peer.set("holding", address, words)
            points.append(
                {
                    "field": x_name(dtype, order),
                    "address": address,
                    "type": dtype,
                    "byte_order": order,
                }
            )
            address += len(words)
    a = adapter(device(peer.port, points, max_registers_per_read=50))
    await a.connect()
    calls = 0
    real_read = a.transport.read

    async def counting(*args: Any, **kw: Any) -> list[Any]:
        nonlocal calls
        calls += 1
        return await real_read(*args, **kw)

    a.transport.read = counting  # type: ignore[method-assign]
    sample = await a.read()
    await a.close()
    for dtype, value in VALUES.items():
        for order in ORDERS:
            got = sample.details[x_name(dtype, order)]
            assert math.isclose(got, value, rel_tol=1e-12), (dtype, order, got)
    assert address == 80 and calls == 2  # 80 contiguous registers, at most 50 per read


async def test_scale_offset_tables_bits_and_unit_ids_normalize(peer: ModbusPeer) -> None:
    await peer.set("holding", 0, encode(-1500, "int16"))  # -150.0 kW
    await peer.set("holding", 1, [655])  # 65.5 %
    await peer.set("holding", 2, [0b0000_0000_0000_0100])  # status word, bit 2 set
    await peer.set("holding", 3, [2])
    await peer.set("input", 10, encode(2731, "int16"))  # 0.1 K -> °C via offset
    await peer.set("coil", 5, [True])
    await peer.set("discrete_input", 7, [True])
    await peer.set("holding", 0, encode(229.5, "float32"), unit=2)
    cfg = device(
        peer.port,
        [
            {"field": "p_kw", "address": 0, "type": "int16", "scale": 0.1},
            {"field": "soc_pct", "address": 1, "scale": 0.1},
            {"field": "fault", "address": 2, "bit": 2},
            {"field": "state", "address": 3, "enum": {1: "charging", 2: "discharging"}},
            {
                "field": "temperature_c",
                "table": "input",
                "address": 10,
                "type": "int16",
                "scale": 0.1,
                "offset": -273.1,
            },
            {"field": "grid_connected", "table": "coil", "address": 5},
            {"field": "x_door_open", "table": "discrete_input", "address": 7},
            {"field": "voltage_v", "address": 0, "type": "float32", "unit_id": 2},
        ],
    )
    a = adapter(cfg)
    await a.connect()
    s = await a.read()
    await a.close()
    assert (s.p_kw, s.soc_pct, s.state, s.voltage_v) == (-150.0, 65.5, "discharging", 229.5)
    assert s.details["fault"] is True and s.details["grid_connected"] is True
    assert s.details["x_door_open"] is True
    assert s.details["temperature_c"] == 0.0
    assert "quality" not in s.details


async def test_setpoint_write_lands_in_the_register_and_reads_back(peer: ModbusPeer) -> None:
    cfg = device(
        peer.port,
        [
            {"field": "p_kw", "address": 0, "type": "int32", "scale": 0.1},
            {
                "field": "setpoint_kw",
                "address": 100,
                "type": "int32",
                "byte_order": "CDAB",
                "scale": 0.1,
                "mode": "rw",
            },
        ],
    )
    a = adapter(cfg)
    await a.connect()
    assert await a.write(-123.46) == -123.5  # what the register can hold
    assert await peer.get("holding", 100, 2) == encode(-1235, "int32", "CDAB")
    s = await a.read()
    assert s.details["setpoint_kw"] == -123.5
    with pytest.raises(DeviceWriteFailed, match="does not fit"):
        await a.write(1e12)
    await a.close()


async def test_write_to_a_coil_and_a_refused_block_are_reported(peer: ModbusPeer) -> None:
    cfg = device(
        peer.port,
        [
            {"field": "p_kw", "address": 0, "type": "int16"},
            {"field": "q_kvar", "address": 5000, "type": "int16"},  # beyond the map
            {"field": "setpoint_kw", "table": "coil", "address": 3, "mode": "w"},
        ],
    )
    a = adapter(cfg)
    await a.connect()
    s = await a.read()
    assert s.p_kw == 0.0 and s.q_kvar is None
    assert s.details["quality"] == {"q_kvar": "bad"}
    assert await a.write(1) == 1.0
    assert (await peer.get("coil", 3))[0] is True
    await a.close()


async def test_a_block_without_answer_marks_only_its_points_bad() -> None:
    # A gateway in front of two units: unit 1 answers, unit 3 is silent (timeouts).
    peer = ModbusPeer(free_port(), unit_ids=(1, 3), silent_units=(3,))
    await peer.start()
    await peer.set("holding", 0, [42, 77])
    cfg = device(
        peer.port,
        [
            {"field": "p_kw", "address": 0, "type": "int16"},
            {"field": "soc_pct", "address": 1, "type": "uint16"},
            {"field": "voltage_v", "address": 0, "type": "uint16", "unit_id": 3},
        ],
        timeout_s=0.3,
        recycle_after_timeouts=2,
    )
    a = adapter(cfg)
    await a.connect()
    try:
        for _ in range(3):  # a silent block never recycles a connection that answers
            s = await a.read()
            assert (s.p_kw, s.soc_pct, s.voltage_v) == (42.0, 77.0, None)
            assert s.details["quality"] == {"voltage_v": "bad"}
            assert a.transport.connected
            assert a.transport.link.up is True  # not logged lost/recovered on every poll
    finally:
        await a.close()
        await peer.stop()


async def test_no_block_answering_makes_the_device_unavailable() -> None:
    peer = ModbusPeer(free_port(), unit_ids=(1, 3), silent_units=(3,))
    await peer.start()
    cfg = device(peer.port, [{"field": "p_kw", "address": 0, "unit_id": 3}], timeout_s=0.2)
    a = adapter(cfg)
    await a.connect()
    try:
        with pytest.raises(DeviceUnavailable, match="no answer"):
            await a.read()
    finally:
        await a.close()
        await peer.stop()


async def test_server_restart_reconnects(peer: ModbusPeer) -> None:
    await peer.set("holding", 0, [42])
    a = adapter(device(peer.port, [{"field": "p_kw", "address": 0}], reconnect_backoff_max_s=0.2))
    dev = ManagedDevice("bess", a, timeout_s=3)
    assert (await dev.read()).p_kw == 42
    await peer.stop()
    with pytest.raises(DeviceUnavailable):
        await dev.read()
    await peer.start()
    await peer.set("holding", 0, [43])

    async def reads_43() -> bool:
        return (await dev.read()).p_kw == 43

    await wait_for(
        reads_43, what="a read after the server restarted", interval=0.1, ignore=DeviceUnavailable
    )
    await dev.close()


async def test_silent_server_goes_stale_then_recovers_on_a_new_connection(
    peer: ModbusPeer,
) -> None:
    proxy = TcpProxy(free_port(), peer.port)
    await proxy.start()
    await peer.set("holding", 0, [7, 8])
    cfg = device(
        proxy.listen_port,
        [{"field": "p_kw", "address": 0}, {"field": "soc_pct", "address": 1}],
        timeout_s=0.2,
        recycle_after_timeouts=2,
        reconnect_backoff_max_s=0.2,
    )
    dev = ManagedDevice("bess", adapter(cfg), timeout_s=2)
    poller = Poller(dev, interval_s=0.1, clock=SystemClock())
    await poller.poll_once()
    assert poller.available and poller.latest is not None and poller.latest.p_kw == 7
    connections = proxy.connections
    proxy.silent = True
    for _ in range(3):
        await poller.poll_once()
    s = poller.latest
    assert poller.available is False and s is not None and s.state == "unavailable"
    assert s.p_kw is None and "no answer" in s.details["error"]
    assert s.details["quality"] == {"p_kw": "stale", "soc_pct": "stale"}
    assert "stale_since" in s.details
    proxy.silent = False

    async def recovered() -> bool:
        await poller.poll_once()
        return poller.available

    await wait_for(recovered, what="the poller available again", interval=0.1)
    assert poller.available and poller.latest is not None and poller.latest.p_kw == 7
    assert proxy.connections > connections  # the client was recreated, not reused
    await dev.close()
    await proxy.stop()


def test_check_connect_exits_1_and_says_why_when_a_device_cannot_be_read(tmp_path: Path) -> None:
    path = tmp_path / "site.yaml"
    path.write_text(
        textwrap.dedent(f"""\
        version: 1
        gateway_id: gw-1
        site: {{id: site-1}}
        headend: {{address: "127.0.0.1:50051", insecure: true}}
        assets:
          - id: bess-1
            type: bess
            limits: {{p_min_kw: -100, p_max_kw: 100}}
            default_p_kw: 0
            capacity_kwh: 200
            device:
              kind: modbus
              host: 127.0.0.1
              port: {free_port()}
              points: [{{field: p_kw, address: 0}}]
        """)
    )
    try:
        result = CliRunner().invoke(app, ["agent", "check", str(path), "--connect"])
    finally:
        structlog.reset_defaults()  # the command configures logging for its process
    assert result.exit_code == 1
    assert "bess-1 (modbus): FAILED" in result.stdout and "cannot connect" in result.stdout
