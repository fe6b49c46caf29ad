"""Simulated generators: PV and wind."""

from __future__ import annotations

import math
from datetime import datetime, tzinfo
from typing import Any

from gridpilot.core.telemetry import Sample

from ...clock import Clock
from .base import SimulatedDevice

_TWO_PI = 2 * math.pi


def daylight_fraction(hour: float, sunrise_h: float, sunset_h: float) -> float:
    """Share of peak irradiance at a local hour: a sine between sunrise and
    sunset, 0 at night."""
    if not sunrise_h < hour < sunset_h:
        return 0.0
    return math.sin(math.pi * (hour - sunrise_h) / (sunset_h - sunrise_h))


class _Generator(SimulatedDevice):
    """A generator the setpoint curtails: actual = min(setpoint, available), and
    it never imports."""

    def available_kw(self) -> float:
        raise NotImplementedError

    def actual_kw(self) -> float:
        return max(0.0, min(self.setpoint_kw, self.available_kw()))

    def _generation_sample(
        self, now: datetime, available: float, p: float, idle: str, details: dict[str, Any]
    ) -> Sample:
        """The sample of a generator producing ``p`` of ``available`` kW (state
        ``idle`` when nothing is available); ``details`` gain the curtailment."""
        voltage, frequency = self._grid(now)
        state = idle if available <= 0 else "curtailed" if p < available - 1e-9 else "producing"
        return Sample(
            asset_id=self.asset_id,
            ts=now,
            p_kw=p,
            q_kvar=0.0,
            available_charge_kw=0.0,
            available_discharge_kw=available,
            voltage_v=voltage,
            frequency_hz=frequency,
            state=state,
            details={
                **details,
                "curtailed_kw": round(available - p, 3),
                "setpoint_kw": self.setpoint_kw,
            },
        )


class SimulatedPv(_Generator):
    """Available power follows the daylight curve over the site's local time
    (never below ``min_fraction`` of the peak); the setpoint curtails:
    actual = min(setpoint, available), and PV never imports."""

    def __init__(
        self,
        asset_id: str,
        clock: Clock,
        *,
        peak_kw: float,
        sunrise_h: float = 6.0,
        sunset_h: float = 20.0,
        min_fraction: float = 0.0,
        inverter_efficiency: float = 0.97,
        tz: tzinfo | None = None,
        nominal_voltage_v: float = 400.0,
        nominal_frequency_hz: float = 50.0,
    ) -> None:
        super().__init__(
            asset_id,
            clock,
            setpoint_kw=peak_kw,
            nominal_voltage_v=nominal_voltage_v,
            nominal_frequency_hz=nominal_frequency_hz,
        )
        self.peak_kw = peak_kw
        self._sunrise, self._sunset = sunrise_h, sunset_h
        self._min_fraction = min_fraction
        self._inverter_eff = inverter_efficiency
        self._tz = tz

    def fraction(self) -> float:
        local = self._clock.now().astimezone(self._tz)  # tz None: the host's local time
        hour = local.hour + local.minute / 60 + local.second / 3600
        return max(daylight_fraction(hour, self._sunrise, self._sunset), self._min_fraction)

    def available_kw(self) -> float:
        return self.peak_kw * self.fraction()

    def _sample(self, now: datetime) -> Sample:
        fraction = self.fraction()
        available, p = self.peak_kw * fraction, self.actual_kw()
        details = {
            "irradiance_w_m2": round(1000.0 * fraction, 1),
            "dc_power_kw": round(p / self._inverter_eff, 3),
            "module_temp_c": round(20.0 + 25.0 * fraction, 1),
        }
        return self._generation_sample(now, available, p, "night", details)


class SimulatedWind(_Generator):
    """A turbine on a cubic power curve (cut-in, rated, cut-out) under a wind
    that swings slowly around its mean with faster gusts; the setpoint curtails."""

    def __init__(
        self,
        asset_id: str,
        clock: Clock,
        *,
        rated_kw: float,
        mean_wind_m_s: float = 8.0,
        cut_in_m_s: float = 3.0,
        rated_wind_m_s: float = 12.0,
        cut_out_m_s: float = 25.0,
        nominal_voltage_v: float = 400.0,
        nominal_frequency_hz: float = 50.0,
    ) -> None:
        super().__init__(
            asset_id,
            clock,
            setpoint_kw=rated_kw,
            nominal_voltage_v=nominal_voltage_v,
            nominal_frequency_hz=nominal_frequency_hz,
        )
        self.rated_kw = rated_kw
        self._mean = mean_wind_m_s
        self._curve = (cut_in_m_s, rated_wind_m_s, cut_out_m_s)

    def wind_m_s(self) -> float:
        t = self._clock.now().timestamp()
        swing = 0.25 * math.sin(_TWO_PI * t / 3600) + 0.1 * math.sin(_TWO_PI * t / 317)
        return max(0.0, self._mean * (1 + swing))

    def available_kw(self) -> float:
        v = self.wind_m_s()
        cut_in, rated, cut_out = self._curve
        if v < cut_in or v >= cut_out:
            return 0.0
        if v >= rated:
            return self.rated_kw
        return self.rated_kw * (v**3 - cut_in**3) / (rated**3 - cut_in**3)

    def _sample(self, now: datetime) -> Sample:
        available, p = self.available_kw(), self.actual_kw()
        details = {"wind_speed_m_s": round(self.wind_m_s(), 2)}
        return self._generation_sample(now, available, p, "stopped", details)
