"""The OPC UA adapter against a real asyncua server on 127.0.0.1."""

from __future__ import annotations

import functools
import random
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import pytest
from asyncua import ua
from gp_testing import wait_for
from gp_testing.opcua_peer import CLIENT_URI, NS_URI, Credentials, OpcUaPeer, make_certificate
from gp_testing.tcp_proxy import TcpProxy

from gridpilot.edge_agent.adapters import DeviceMisconfigured, DeviceUnavailable, DeviceWriteFailed
from gridpilot.edge_agent.adapters.opcua import OpcUaAdapter
from gridpilot.edge_agent.clock import SystemClock
from gridpilot.edge_agent.config import OpcUaDevice
from gridpilot.ops.processes import free_port

pytestmark = pytest.mark.integration


def node(name: str) -> str:
    return f"nsu={NS_URI};s={name}"


POINTS: list[dict[str, Any]] = [
    {"field": "p_kw", "node": node("EV1.Power_W"), "scale": 0.001, "deadband": 100},
    {"field": "voltage_v", "node": node("EV1.Voltage_V")},
    {"field": "session_energy_kwh", "node": node("EV1.SessionEnergy_Wh"), "scale": 0.001},
    {"field": "vehicle_connected", "node": node("EV1.Connected")},
    {"field": "session_state", "node": node("EV1.State")},
    {"field": "state", "node": node("EV1.StatusCode"), "enum": {3: "charging"}},
    {"field": "setpoint_kw", "node": node("EV1.PowerSetpoint_kW"), "mode": "w"},
]


def opcua(url: str, points: list[dict[str, Any]] | None = None, **kw: Any) -> OpcUaAdapter:
    cfg = OpcUaDevice.model_validate(
        {
            "kind": "opcua",
            "url": url,
            "points": points or POINTS,
            "timeout_s": 2,
            "health_interval_s": 0.3,
            "publishing_interval_ms": 50,
            "reconnect_backoff_max_s": 0.3,
            **kw,
        }
    )
    return OpcUaAdapter("ev", cfg, clock=SystemClock(), rng=random.Random(1))


# A device still reconnecting is not there yet.
eventually = functools.partial(wait_for, ignore=DeviceUnavailable)


@pytest.fixture
async def plc() -> AsyncIterator[OpcUaPeer]:
    peer = OpcUaPeer(free_port())
    await peer.start()
    yield peer
    await peer.stop()


async def test_subscription_values_arrive_with_deadband_and_quality(plc: OpcUaPeer) -> None:
    a = opcua(plc.url)
    try:
        await a.connect()
        s = await a.read()
        assert (s.p_kw, s.voltage_v, s.state) == (-7.4, 230.5, "charging")
        assert s.details == {
            "session_energy_kwh": 1.234,
            "vehicle_connected": True,
            "session_state": "Charging",
        }
        await plc.set("EV1.Power_W", -7450.0)  # inside the 100 W deadband: not sent
        await plc.set("EV1.Voltage_V", 231.0)
        await eventually(lambda: a.cache.get("voltage_v").value == 231.0)  # type: ignore[union-attr]
        assert (await a.read()).p_kw == -7.4
        await plc.set("EV1.Power_W", -11000.0)
        await eventually(lambda: a.cache.get("p_kw").value == -11.0)  # type: ignore[union-attr]
        await plc.set(
            "EV1.Voltage_V", 229.0, ua.StatusCode(ua.StatusCodes.UncertainLastUsableValue)
        )
        await plc.set("EV1.SessionEnergy_Wh", 0, ua.StatusCode(ua.StatusCodes.BadSensorFailure))

        async def marked() -> bool:
            return (await a.read()).details.get("quality") == {
                "session_energy_kwh": "bad",
                "voltage_v": "stale",
            }

        await eventually(marked)
        s = await a.read()
        assert s.voltage_v == 229.0 and "session_energy_kwh" not in s.details
    finally:
        await a.close()


async def test_poll_mode_reads_and_typed_writes_land_with_the_nodes_type(plc: OpcUaPeer) -> None:
    float_sp = opcua(plc.url, mode="poll")
    int_sp = opcua(
        plc.url,
        [
            {"field": "p_kw", "node": node("EV1.Power_W"), "scale": 0.001},
            # a charge limit in W, positive while charging: p_kw -7.4 -> 7400
            {
                "field": "setpoint_kw",
                "node": node("EV1.LimitSetpoint_W"),
                "scale": -0.001,
                "mode": "rw",
            },
        ],
        mode="poll",
    )
    try:
        await float_sp.connect()
        await plc.set("EV1.Power_W", -3000.0)
        assert (await float_sp.read()).p_kw == -3.0  # a poll reads the node now
        assert await float_sp.write(-7.25) == -7.25
        assert await plc.value("EV1.PowerSetpoint_kW") == -7.25
        assert await plc.data_type("EV1.PowerSetpoint_kW") == ua.VariantType.Float
        await int_sp.connect()
        assert await int_sp.write(-7.4004) == -7.4
        assert await plc.value("EV1.LimitSetpoint_W") == 7400
        assert (await int_sp.read()).details["setpoint_kw"] == -7.4
        with pytest.raises(DeviceWriteFailed, match="outside Int32"):
            await int_sp.write(-1e10)
    finally:
        await float_sp.close()
        await int_sp.close()


async def test_server_restart_reconnects_and_resolves_the_moved_namespace(
    plc: OpcUaPeer,
) -> None:
    a = opcua(plc.url)
    try:
        await a.connect()
        assert (await a.read()).p_kw == -7.4
        old_ns = plc.ns
        await plc.stop()
        await eventually(lambda: a.link.up is False)
        with pytest.raises(DeviceUnavailable):
            await a.read()
        plc.variables["EV1.Power_W"] = (-5000.0, ua.VariantType.Double, False)
        await plc.restart(0.1, extra_namespaces=2)  # our namespace gets a new index
        assert plc.ns == old_ns + 2

        async def fresh() -> bool:
            return (await a.read()).p_kw == -5.0

        await eventually(fresh, timeout=15)
        assert await a.write(-3.0) == -3.0
        assert await plc.value("EV1.PowerSetpoint_kW") == -3.0
    finally:
        await a.close()


async def test_silent_link_goes_stale_then_recovers(plc: OpcUaPeer) -> None:
    proxy = TcpProxy(free_port(), plc.port)
    await proxy.start()
    a = opcua(f"opc.tcp://127.0.0.1:{proxy.listen_port}/gridpilot/", timeout_s=0.5)
    try:
        await a.connect()
        assert (await a.read()).p_kw == -7.4
        proxy.silent = True
        await eventually(lambda: a.link.up is False, timeout=5)
        with pytest.raises(DeviceUnavailable):
            await a.read()
        assert a.cache.snapshot(link_up=False)[1]["p_kw"] == "stale"
        proxy.silent = False
        await plc.set("EV1.Power_W", -9000.0)

        async def fresh() -> bool:
            return (await a.read()).p_kw == -9.0

        await eventually(fresh, timeout=15)
    finally:
        await a.close()
        await proxy.stop()


async def test_secure_channel_with_password_and_certificate_login(tmp_path: Path) -> None:
    cert, key = await make_certificate(tmp_path / "pki", "agent", CLIENT_URI)
    secret = tmp_path / "password"
    secret.write_text("s3cret\n")
    peer = OpcUaPeer(
        free_port(),
        secure_dir=tmp_path / "server",
        credentials=Credentials(users={"agent": "s3cret"}, cert_users={cert.read_bytes()}),
    )
    await peer.start()
    security = {"certificate": str(cert), "private_key": str(key)}
    good = opcua(
        peer.url,
        security=security,
        auth={"type": "username", "username": "agent", "password_file": str(secret)},
    )
    by_cert = opcua(peer.url, security=security, auth={"type": "certificate"})
    wrong = opcua(
        peer.url,
        security=security,
        auth={"type": "username", "username": "agent", "password": "wrong"},
    )
    try:
        await good.connect()
        assert (await good.read()).p_kw == -7.4
        assert await good.write(-1.5) == -1.5
        await by_cert.connect()
        assert (await by_cert.read()).voltage_v == 230.5
        with pytest.raises(DeviceMisconfigured, match="BadUserAccessDenied: check auth"):
            await wrong.connect()
        with pytest.raises(DeviceMisconfigured):  # stopped: no retry storm against the server
            await wrong.read()
    finally:
        for a in (good, by_cert, wrong):
            await a.close()
        await peer.stop()


async def test_unknown_node_or_namespace_is_misconfigured(plc: OpcUaPeer) -> None:
    missing = opcua(plc.url, [{"field": "p_kw", "node": node("EV1.Nope")}])
    foreign = opcua(plc.url, [{"field": "p_kw", "node": "nsu=urn:elsewhere;s=EV1.Power_W"}])
    try:
        with pytest.raises(DeviceMisconfigured, match=r"EV1\.Nope \(p_kw\) does not exist"):
            await missing.connect()
        with pytest.raises(DeviceMisconfigured, match="namespace 'urn:elsewhere' is not on"):
            await foreign.connect()
    finally:
        await missing.close()
        await foreign.close()
