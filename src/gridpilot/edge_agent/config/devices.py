"""Device configs, one union on ``kind`` per asset type.

``simulated`` differs per asset type; the protocol devices (``modbus``,
``opcua``, ``mqtt``, in protocols.py) can drive every type.
"""

from __future__ import annotations

from typing import Annotated, Literal

from pydantic import Field, model_validator

from .base import FiniteFloat, Fraction, Percent, PositiveFloat, Strict, rule_error
from .protocols import ModbusDevice, MqttDevice, OpcUaDevice


class _Simulated(Strict):
    kind: Literal["simulated"]
    nominal_voltage_v: PositiveFloat = 400.0
    nominal_frequency_hz: PositiveFloat = 50.0


class SimulatedBessDevice(_Simulated):
    """A battery whose state of charge integrates the power it delivers."""

    initial_soc_pct: Percent = 50.0
    round_trip_efficiency: Fraction = 0.9
    soh_pct: Annotated[float, Field(gt=0, le=100)] = 98.0
    ambient_temp_c: FiniteFloat = 25.0


class SimulatedPvDevice(_Simulated):
    """PV whose available power follows a sine between sunrise and sunset
    (local time of the site); ``min_fraction`` of the peak is always available,
    so a demo shows power at night too (0 = physically dark nights)."""

    peak_kw: PositiveFloat | None = Field(None, description="default: the asset's p_max_kw")
    sunrise_h: Annotated[float, Field(ge=0, lt=24)] = 6.0
    sunset_h: Annotated[float, Field(gt=0, le=24)] = 20.0
    min_fraction: Annotated[float, Field(ge=0, le=1)] = 0.0
    inverter_efficiency: Fraction = 0.97

    @model_validator(mode="after")
    def _day(self) -> SimulatedPvDevice:
        if self.sunrise_h >= self.sunset_h:
            raise rule_error([(("sunset_h",), "must be after sunrise_h")])
        return self


class SimulatedWindDevice(_Simulated):
    """A turbine on a cubic power curve under a slowly varying, gusty wind."""

    rated_kw: PositiveFloat | None = Field(None, description="default: the asset's p_max_kw")
    mean_wind_m_s: Annotated[float, Field(ge=0, le=40)] = 8.0
    cut_in_m_s: PositiveFloat = 3.0
    rated_wind_m_s: PositiveFloat = 12.0
    cut_out_m_s: PositiveFloat = 25.0

    @model_validator(mode="after")
    def _curve(self) -> SimulatedWindDevice:
        if not self.cut_in_m_s < self.rated_wind_m_s < self.cut_out_m_s:
            raise rule_error(
                [(("rated_wind_m_s",), "need cut_in_m_s < rated_wind_m_s < cut_out_m_s")]
            )
        return self


class SimulatedEvDevice(_Simulated):
    """A charger with (optionally) a car plugged in. Without
    ``vehicle_capacity_kwh`` the car never gets full (handy for demos)."""

    plugged_in: bool = True
    vehicle_max_kw: PositiveFloat | None = Field(None, description="the car's own charge limit")
    vehicle_capacity_kwh: PositiveFloat | None = None
    initial_vehicle_soc_pct: Percent = 30.0


_Protocols = ModbusDevice | OpcUaDevice | MqttDevice
BessDevice = Annotated[SimulatedBessDevice | _Protocols, Field(discriminator="kind")]
PvDevice = Annotated[SimulatedPvDevice | _Protocols, Field(discriminator="kind")]
WindDevice = Annotated[SimulatedWindDevice | _Protocols, Field(discriminator="kind")]
EvDevice = Annotated[SimulatedEvDevice | _Protocols, Field(discriminator="kind")]
