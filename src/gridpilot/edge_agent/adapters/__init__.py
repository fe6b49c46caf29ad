"""Device adapters: the interface, its errors, and the factory that builds
the adapter an asset's ``device`` config asks for."""

from __future__ import annotations

import logging
from datetime import tzinfo

from ..clock import Clock
from ..config import (
    AssetConfig,
    BessAsset,
    EvChargerAsset,
    ModbusDevice,
    MqttDevice,
    OpcUaDevice,
    PvAsset,
    SimulatedBessDevice,
    SimulatedEvDevice,
    SimulatedPvDevice,
    SimulatedWindDevice,
    WindAsset,
)
from .base import (
    DeviceAdapter,
    DeviceError,
    DeviceMisconfigured,
    DeviceReadOnly,
    DeviceUnavailable,
    DeviceWriteFailed,
)
from .modbus import ModbusAdapter
from .mqtt import MqttAdapter
from .opcua import OpcUaAdapter
from .simulated import (
    SimulatedBattery,
    SimulatedEvCharger,
    SimulatedPv,
    SimulatedWind,
)
from .sunspec import SunSpecAdapter

__all__ = [
    "DeviceAdapter",
    "DeviceError",
    "DeviceMisconfigured",
    "DeviceReadOnly",
    "DeviceUnavailable",
    "DeviceWriteFailed",
    "build_adapter",
    "quiet_protocol_loggers",
]


def build_adapter(asset: AssetConfig, *, clock: Clock, tz: tzinfo | None) -> DeviceAdapter:
    """The adapter for one asset: a protocol adapter for modbus/opcua/mqtt
    devices, else the asset type's simulator."""
    dev = asset.device
    if isinstance(dev, ModbusDevice):
        if dev.sunspec:
            return SunSpecAdapter(asset.id, dev, asset_type=asset.asset_type, clock=clock)
        return ModbusAdapter(asset.id, dev, clock=clock)
    if isinstance(dev, OpcUaDevice):
        return OpcUaAdapter(asset.id, dev, clock=clock)
    if isinstance(dev, MqttDevice):
        return MqttAdapter(asset.id, dev, clock=clock)
    return _simulated(asset, clock=clock, tz=tz)


def quiet_protocol_loggers(level: int = logging.CRITICAL) -> None:
    """The protocol libraries log every failed attempt (pymodbus with frame
    dumps, asyncua with tracebacks per publish retry); the adapters log the
    transitions themselves. Call from a composition root."""
    for name in ("pymodbus", "asyncua", "asyncuagds", "aiomqtt"):
        logging.getLogger(name).setLevel(level)


def _simulated(asset: AssetConfig, *, clock: Clock, tz: tzinfo | None) -> DeviceAdapter:
    """The simulators take their nameplate from the asset's limits unless the
    device config says otherwise."""
    dev, lim = asset.device, asset.limits
    assert isinstance(
        dev, SimulatedBessDevice | SimulatedPvDevice | SimulatedWindDevice | SimulatedEvDevice
    )
    grid = {
        "nominal_voltage_v": dev.nominal_voltage_v,
        "nominal_frequency_hz": dev.nominal_frequency_hz,
    }
    if isinstance(asset, BessAsset):
        assert isinstance(asset.device, SimulatedBessDevice)
        return SimulatedBattery(
            asset.id,
            clock,
            capacity_kwh=asset.capacity_kwh,
            charge_kw_max=-lim.p_min_kw,
            discharge_kw_max=lim.p_max_kw,
            initial_soc_pct=asset.device.initial_soc_pct,
            round_trip_efficiency=asset.device.round_trip_efficiency,
            soh_pct=asset.device.soh_pct,
            ambient_temp_c=asset.device.ambient_temp_c,
            **grid,
        )
    if isinstance(asset, PvAsset):
        d = asset.device
        assert isinstance(d, SimulatedPvDevice)
        return SimulatedPv(
            asset.id,
            clock,
            peak_kw=d.peak_kw if d.peak_kw is not None else lim.p_max_kw,
            sunrise_h=d.sunrise_h,
            sunset_h=d.sunset_h,
            min_fraction=d.min_fraction,
            inverter_efficiency=d.inverter_efficiency,
            tz=tz,
            **grid,
        )
    if isinstance(asset, WindAsset):
        w = asset.device
        assert isinstance(w, SimulatedWindDevice)
        return SimulatedWind(
            asset.id,
            clock,
            rated_kw=w.rated_kw if w.rated_kw is not None else lim.p_max_kw,
            mean_wind_m_s=w.mean_wind_m_s,
            cut_in_m_s=w.cut_in_m_s,
            rated_wind_m_s=w.rated_wind_m_s,
            cut_out_m_s=w.cut_out_m_s,
            **grid,
        )
    if isinstance(asset, EvChargerAsset):
        e = asset.device
        assert isinstance(e, SimulatedEvDevice)
        return SimulatedEvCharger(
            asset.id,
            clock,
            max_charge_kw=-lim.p_min_kw,
            max_discharge_kw=max(lim.p_max_kw, 0.0),
            plugged_in=e.plugged_in,
            vehicle_max_kw=e.vehicle_max_kw,
            vehicle_capacity_kwh=e.vehicle_capacity_kwh,
            initial_vehicle_soc_pct=e.initial_vehicle_soc_pct,
            **grid,
        )
    raise TypeError(f"no adapter for {type(asset).__name__}")  # pragma: no cover
