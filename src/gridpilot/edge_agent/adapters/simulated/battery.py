"""A simulated battery (BESS)."""

from __future__ import annotations

import math
from datetime import datetime

from gridpilot.core.telemetry import Sample

from ...clock import Clock
from .base import SimulatedDevice


class SimulatedBattery(SimulatedDevice):
    """State of charge integrates power: discharging (p > 0) lowers it,
    charging raises it, each way through half the round-trip losses. At 0 %
    the battery cannot discharge and at 100 % it cannot charge: the power in
    that direction drops to 0."""

    def __init__(
        self,
        asset_id: str,
        clock: Clock,
        *,
        capacity_kwh: float,
        charge_kw_max: float,
        discharge_kw_max: float,
        initial_soc_pct: float = 50.0,
        round_trip_efficiency: float = 0.9,
        soh_pct: float = 98.0,
        ambient_temp_c: float = 25.0,
        nominal_voltage_v: float = 400.0,
        nominal_frequency_hz: float = 50.0,
    ) -> None:
        super().__init__(
            asset_id,
            clock,
            setpoint_kw=0.0,
            nominal_voltage_v=nominal_voltage_v,
            nominal_frequency_hz=nominal_frequency_hz,
        )
        self.capacity_kwh = capacity_kwh
        self.soc_pct = initial_soc_pct
        self._charge_max = charge_kw_max
        self._discharge_max = discharge_kw_max
        self._eta = math.sqrt(round_trip_efficiency)
        self._soh = soh_pct
        self._ambient = ambient_temp_c
        self._cell_temp = ambient_temp_c
        self.energy_charged_kwh = 0.0
        self.energy_discharged_kwh = 0.0

    def actual_kw(self) -> float:
        p = min(max(self.setpoint_kw, -self._charge_max), self._discharge_max)  # inverter rating
        if (p > 0 and self.soc_pct <= 0.0) or (p < 0 and self.soc_pct >= 100.0):
            return 0.0
        return p

    def _step(self, dt_s: float, now: datetime) -> None:
        p, hours, usable = self.actual_kw(), dt_s / 3600, self.capacity_kwh / 100
        if p > 0:
            energy = min(p * hours, self.soc_pct * usable * self._eta)  # kWh delivered
            self.soc_pct = max(0.0, self.soc_pct - energy / self._eta / usable)
            self.energy_discharged_kwh += energy
        elif p < 0:
            energy = min(-p * hours, (100.0 - self.soc_pct) * usable / self._eta)  # kWh taken
            self.soc_pct = min(100.0, self.soc_pct + energy * self._eta / usable)
            self.energy_charged_kwh += energy
        rating = max(self._charge_max, self._discharge_max, 1e-9)
        target = self._ambient + 12.0 * abs(p) / rating
        self._cell_temp += (target - self._cell_temp) * (1 - math.exp(-dt_s / 600))

    def _sample(self, now: datetime) -> Sample:
        p = self.actual_kw()
        voltage, frequency = self._grid(now)
        return Sample(
            asset_id=self.asset_id,
            ts=now,
            p_kw=p,
            q_kvar=0.0,
            soc_pct=round(self.soc_pct, 4),
            available_charge_kw=self._charge_max if self.soc_pct < 100.0 else 0.0,
            available_discharge_kw=self._discharge_max if self.soc_pct > 0.0 else 0.0,
            voltage_v=voltage,
            frequency_hz=frequency,
            state="discharging" if p > 0 else "charging" if p < 0 else "idle",
            details={
                "soh_pct": self._soh,
                "cell_temp_max_c": round(self._cell_temp + 1.5, 2),
                "cell_temp_min_c": round(self._cell_temp - 1.0, 2),
                "setpoint_kw": self.setpoint_kw,
                "energy_charged_kwh": round(self.energy_charged_kwh, 3),
                "energy_discharged_kwh": round(self.energy_discharged_kwh, 3),
            },
        )
