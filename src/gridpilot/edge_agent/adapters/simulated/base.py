"""What every simulator shares: clock bookkeeping, connection state, grid readings."""

from __future__ import annotations

import math
from datetime import datetime

from gridpilot.core.telemetry import Sample

from ...clock import Clock
from ..base import DeviceUnavailable, DeviceWriteFailed

_TWO_PI = 2 * math.pi


class SimulatedDevice:
    """Clock bookkeeping and grid readings shared by every simulator."""

    def __init__(
        self,
        asset_id: str,
        clock: Clock,
        *,
        setpoint_kw: float,
        nominal_voltage_v: float = 400.0,
        nominal_frequency_hz: float = 50.0,
    ) -> None:
        self.asset_id = asset_id
        self.setpoint_kw = setpoint_kw
        self._clock = clock
        self._last = clock.now()
        self._connected = False
        self._v_nom = nominal_voltage_v
        self._f_nom = nominal_frequency_hz

    async def connect(self) -> None:
        self._connected = True
        self._last = self._clock.now()

    async def close(self) -> None:
        self._connected = False

    async def read(self) -> Sample:
        self._check_connected()
        return self._sample(self._advance())

    async def write(self, p_kw: float) -> float:
        self._check_connected()
        if not math.isfinite(p_kw):
            raise DeviceWriteFailed(f"{p_kw} is not a number the device accepts")
        self._advance()
        self.setpoint_kw = p_kw
        return self.actual_kw()

    def actual_kw(self) -> float:
        """The power the device delivers right now (kW, export > 0)."""
        raise NotImplementedError

    def _step(self, dt_s: float, now: datetime) -> None:
        """Integrate the state over ``dt_s`` seconds ending at ``now``."""

    def _sample(self, now: datetime) -> Sample:
        raise NotImplementedError

    def _check_connected(self) -> None:
        if not self._connected:
            raise DeviceUnavailable(f"simulated device {self.asset_id} is not connected")

    def _advance(self) -> datetime:
        now = self._clock.now()
        dt = (now - self._last).total_seconds()
        if dt > 0:  # a clock that steps back integrates nothing
            self._step(dt, now)
        self._last = now
        return now

    def _grid(self, now: datetime) -> tuple[float, float]:
        t = now.timestamp()
        voltage = self._v_nom * (1 + 0.004 * math.sin(_TWO_PI * t / 47))
        frequency = self._f_nom + 0.015 * math.sin(_TWO_PI * t / 31)
        return round(voltage, 2), round(frequency, 3)
