"""A simulated EV charger with an (optional) car."""

from __future__ import annotations

from datetime import datetime

from gridpilot.core.telemetry import Sample

from ...clock import Clock
from .base import SimulatedDevice


class SimulatedEvCharger(SimulatedDevice):
    """While a car is plugged in, the charger draws what the setpoint asks, up
    to the charger's (and the car's) limit: p = max(setpoint, -max charge).
    Export (V2G) only when the charger has a discharge rating. The session's
    energy integrates; a modelled car stops drawing when it is full."""

    def __init__(
        self,
        asset_id: str,
        clock: Clock,
        *,
        max_charge_kw: float,
        max_discharge_kw: float = 0.0,
        plugged_in: bool = True,
        vehicle_max_kw: float | None = None,
        vehicle_capacity_kwh: float | None = None,
        initial_vehicle_soc_pct: float = 30.0,
        nominal_voltage_v: float = 400.0,
        nominal_frequency_hz: float = 50.0,
    ) -> None:
        super().__init__(
            asset_id,
            clock,
            setpoint_kw=-max_charge_kw,
            nominal_voltage_v=nominal_voltage_v,
            nominal_frequency_hz=nominal_frequency_hz,
        )
        self.plugged_in = plugged_in
        self._charge_max = max_charge_kw
        self._discharge_max = max_discharge_kw
        self._vehicle_max = vehicle_max_kw
        self._vehicle_kwh = vehicle_capacity_kwh
        self.vehicle_soc_pct = initial_vehicle_soc_pct
        self.session_energy_kwh = 0.0

    def plug_in(self, vehicle_soc_pct: float | None = None) -> None:
        """A car arrives: a new session starts."""
        self._advance()
        self.plugged_in, self.session_energy_kwh = True, 0.0
        if vehicle_soc_pct is not None:
            self.vehicle_soc_pct = vehicle_soc_pct

    def unplug(self) -> None:
        self._advance()
        self.plugged_in = False

    def _full(self) -> bool:
        return self._vehicle_kwh is not None and self.vehicle_soc_pct >= 100.0

    def _empty(self) -> bool:
        return self._vehicle_kwh is not None and self.vehicle_soc_pct <= 0.0

    def charge_limit_kw(self) -> float:
        if not self.plugged_in or self._full():
            return 0.0
        limit = self._charge_max
        return min(limit, self._vehicle_max) if self._vehicle_max is not None else limit

    def discharge_limit_kw(self) -> float:
        return 0.0 if not self.plugged_in or self._empty() else self._discharge_max

    def actual_kw(self) -> float:
        return min(max(self.setpoint_kw, -self.charge_limit_kw()), self.discharge_limit_kw())

    def _step(self, dt_s: float, now: datetime) -> None:
        energy = -self.actual_kw() * dt_s / 3600  # kWh into the car (negative: V2G)
        if self._vehicle_kwh is not None:  # the car stops taking (giving) at full (empty)
            room = (100.0 - self.vehicle_soc_pct) / 100 * self._vehicle_kwh
            stored = self.vehicle_soc_pct / 100 * self._vehicle_kwh
            energy = min(max(energy, -stored), room)
            self.vehicle_soc_pct = min(
                100.0, max(0.0, self.vehicle_soc_pct + 100.0 * energy / self._vehicle_kwh)
            )
        self.session_energy_kwh += energy

    def _session_state(self, p: float) -> str:
        if not self.plugged_in:
            return "available"
        if p < 0:
            return "charging"
        if p > 0:
            return "discharging"
        return "suspended_ev" if self._full() else "suspended_evse"

    def _sample(self, now: datetime) -> Sample:
        p = self.actual_kw()
        voltage, frequency = self._grid(now)
        session_state = self._session_state(p)
        details: dict[str, object] = {
            "session_state": session_state,
            "vehicle_connected": self.plugged_in,
            "session_energy_kwh": round(self.session_energy_kwh, 4),
            "setpoint_kw": self.setpoint_kw,
        }
        if self._vehicle_kwh is not None and self.plugged_in:
            details["vehicle_soc_pct"] = round(self.vehicle_soc_pct, 2)
        return Sample(
            asset_id=self.asset_id,
            ts=now,
            p_kw=p,
            q_kvar=0.0,
            available_charge_kw=self.charge_limit_kw(),
            available_discharge_kw=self.discharge_limit_kw(),
            voltage_v=voltage,
            frequency_hz=frequency,
            state=session_state,
            details=details,
        )
