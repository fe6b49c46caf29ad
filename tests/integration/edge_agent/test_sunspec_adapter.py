"""SunSpec discovery and automatic mapping against register images built
from pysunspec2's model definitions, served by a real pymodbus server."""

from __future__ import annotations

import random
from typing import Any

import pytest
from gp_testing.modbus_peer import ModbusPeer
from gp_testing.sunspec_image import image, offset_of

from gridpilot.core.assets import AssetType
from gridpilot.edge_agent.adapters import DeviceMisconfigured
from gridpilot.edge_agent.adapters.modbus.codec import decode
from gridpilot.edge_agent.adapters.sunspec import SunSpecAdapter
from gridpilot.edge_agent.clock import SystemClock
from gridpilot.edge_agent.config import ModbusDevice
from gridpilot.edge_agent.device import ManagedDevice
from gridpilot.ops.processes import free_port

pytestmark = pytest.mark.integration

BASE = 40000

PV_MODELS: list[tuple[int, dict[str, Any]]] = [
    (1, {"Mn": "GridPilot", "Md": "PV-100", "SN": "0001"}),
    (
        103,
        {
            "A": 125,
            "A_SF": -1,
            "PhVphA": 2301,
            "V_SF": -1,
            "W": 4200,
            "W_SF": 1,
            "Hz": 5001,
            "Hz_SF": -2,
            "VAr": -80,
            "VAr_SF": 1,
            "PF": 98,
            "PF_SF": 0,
            "WH": 123456,
            "WH_SF": 0,
            "DCW": 4300,
            "DCW_SF": 1,
            "DCV": 6500,
            "DCV_SF": -1,
            "TmpCab": 45,
            "Tmp_SF": 0,
            "St": 4,
        },
    ),
    (120, {"DERTyp": 4, "WRtg": 1000, "WRtg_SF": 2}),
    (123, {"WMaxLimPct": 100, "WMaxLimPct_SF": 0, "WMaxLim_Ena": 0}),
]

BESS_MODELS: list[tuple[int, dict[str, Any]]] = [
    (1, {"Mn": "GridPilot", "Md": "BESS-500"}),
    (
        701,
        {
            "ACType": 2,
            "InvSt": 3,
            "W": -2500,
            "W_SF": 1,
            "Var": 0,
            "Var_SF": 0,
            "LNV": 2300,
            "V_SF": -1,
            "Hz": 50000,
            "Hz_SF": -3,
            "TotWhInj": 5_000_000,
            "TotWhAbs": 6_000_000,
            "TotWh_SF": 0,
        },
    ),
    (702, {"WMaxRtg": 500, "WChaRteMax": 250, "WDisChaRteMax": 250, "W_SF": 3}),
    (704, {"WSetEna": 0, "WSetMod": 0, "WSet": 0, "WSet_SF": 0}),
    (713, {"WHRtg": 1000, "WHAvail": 600, "WH_SF": 3, "SoC": 655, "SoH": 970, "Pct_SF": -1}),
    (
        802,
        {
            "AHRtg": 1000,
            "AHRtg_SF": 0,
            "WHRtg": 1000,
            "WHRtg_SF": 3,
            "WChaRteMax": 200,
            "WDisChaRteMax": 200,
            "WChaDisChaMax_SF": 3,
            "SoC": 650,
            "SoC_SF": -1,
            "SoH": 980,
            "SoH_SF": -1,
            "NCyc": 42,
            "State": 3,
            "V": 8000,
            "V_SF": -1,
            "ChaSt": 3,
            "LocRemCtl": 0,
            "Typ": 4,
        },
    ),
]


async def serve(models: list[tuple[int, dict[str, Any]]]) -> ModbusPeer:
    peer = ModbusPeer(free_port(), holding_start=BASE, registers=1100)
    await peer.start()
    await peer.set("holding", BASE, image(models))
    return peer


def sunspec(port: int, asset_type: AssetType, **kw: Any) -> SunSpecAdapter:
    cfg = ModbusDevice.model_validate(
        {"kind": "modbus", "host": "127.0.0.1", "port": port, "sunspec": True, **kw}
    )
    return SunSpecAdapter(
        "dev", cfg, asset_type=asset_type, clock=SystemClock(), rng=random.Random(1)
    )


async def test_pv_inverter_is_discovered_and_mapped_from_models_103_120_123() -> None:
    peer = await serve(PV_MODELS)
    await peer.set("input", 1000, [812])
    a = sunspec(
        peer.port,
        AssetType.PV,
        points=[{"field": "irradiance_w_m2", "table": "input", "address": 1000}],
    )
    try:
        await a.connect()
        assert [m.id for m in a.models] == [1, 103, 120, 123]
        s = await a.read()
        assert (s.p_kw, s.q_kvar, s.voltage_v, s.frequency_hz) == (42.0, -0.8, 230.1, 50.01)
        assert s.state == "mppt"
        assert s.details == {
            "current_a": 12.5,
            "energy_export_kwh": 123.456,
            "power_factor": 0.98,
            "temperature_c": 45.0,
            "rated_p_kw": 100.0,
            "p_limit_pct": 100.0,
            "dc_power_kw": 43.0,
            "dc_voltage_v": 650.0,
            "irradiance_w_m2": 812,
        }
        # curtail to 60 kW: 123 WMaxLimPct = 60 % of WRtg 100 kW, then enable it
        assert await a.write(60.0) == 60.0
        pct = offset_of(PV_MODELS, 123, "WMaxLimPct")
        ena = offset_of(PV_MODELS, 123, "WMaxLim_Ena")
        assert (await peer.get("holding", BASE + pct))[0] == 60
        assert (await peer.get("holding", BASE + ena))[0] == 1
        assert (await a.read()).details["p_limit_pct"] == 60.0
    finally:
        await a.close()
        await peer.stop()


async def test_bess_prefers_7xx_and_802_models_and_writes_704_wset() -> None:
    peer = await serve(BESS_MODELS)
    a = sunspec(peer.port, AssetType.BESS, max_registers_per_read=60)  # chunked model reads
    try:
        await a.connect()
        s = await a.read()
        assert (s.p_kw, s.voltage_v, s.frequency_hz, s.soc_pct) == (-25.0, 230.0, 50.0, 65.0)
        assert (s.available_charge_kw, s.available_discharge_kw) == (200.0, 200.0)
        assert s.state == "running"
        d = s.details
        assert (d["energy_export_kwh"], d["energy_import_kwh"]) == (5000.0, 6000.0)
        assert (d["soh_pct"], d["energy_capacity_kwh"], d["energy_available_kwh"]) == (
            98.0,
            1000.0,
            600.0,
        )
        assert (d["rated_p_kw"], d["cycle_count"], d["dc_voltage_v"]) == (500.0, 42.0, 800.0)
        assert await a.write(-120.5) == -120.5
        at = BASE + offset_of(BESS_MODELS, 704, "WSetEna")
        words = await peer.get("holding", at, 4)
        assert words[:2] == [1, 1]  # enabled, in watts
        assert decode(words[2:], "int32") == -120500
        assert (await a.read()).details["setpoint_kw"] == -120.5
    finally:
        await a.close()
        await peer.stop()


async def test_device_without_sunspec_marker_is_misconfigured_and_not_retried() -> None:
    peer = ModbusPeer(free_port(), registers=100)  # holding 0..99, nothing at 40000/50000
    await peer.start()
    dev = ManagedDevice("dev", sunspec(peer.port, AssetType.PV), timeout_s=3)
    try:
        with pytest.raises(
            DeviceMisconfigured, match="no SunSpec marker 'SunS' at 40000, 0, 50000"
        ):
            await dev.read()
        with pytest.raises(DeviceMisconfigured):  # stays stopped: no new discovery
            await dev.read()
    finally:
        await dev.close()
        await peer.stop()
