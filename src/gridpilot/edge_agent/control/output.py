"""What a controller writes to its device: setpoints, ramp steps toward
them, and the default; the last value written is where a ramp starts."""

from __future__ import annotations

from typing import Any

from ..adapters import DeviceError
from ..device import ManagedDevice

# A ramp is written in steps this far apart.
RAMP_STEP_S = 1.0


def ramp_step(current: float, target: float, ramp_kw_per_s: float, dt_s: float) -> float:
    """The next value from ``current`` toward ``target`` at most ``ramp * dt`` away."""
    room = ramp_kw_per_s * dt_s
    if abs(target - current) <= room:
        return target
    return current + room if target > current else current - room


class DeviceOutput:
    def __init__(self, device: ManagedDevice, log: Any) -> None:
        self._device = device
        self._log = log
        self.last_written: float | None = None

    async def write(self, p_kw: float) -> float:
        """Write ``p_kw``; what the device reports it applied. Raises what the
        device raised (the caller decides what it means and logs it)."""
        applied = await self._device.write(p_kw)
        self.last_written = p_kw
        return applied

    def log_error(self, what: str, p_kw: float, exc: Exception) -> None:
        if isinstance(exc, DeviceError):  # expected: no traceback
            self._log.warning("device write failed", what=what, p_kw=p_kw, error=str(exc))
        else:
            self._log.error("device write failed", what=what, p_kw=p_kw, exc_info=exc)
