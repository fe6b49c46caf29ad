"""The agent's own safety rail: may this setpoint touch the device? (pure)

The edge never trusts the cloud blindly: every setpoint is checked against
the limits in the agent's *local* config, whatever the headend checked
before. A setpoint outside them is rejected, never clamped, so the cloud
learns it was refused.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from datetime import datetime

from gridpilot.core.assets import PowerLimits
from gridpilot.core.lifecycle import ReasonCode


@dataclass(frozen=True, slots=True)
class Decision:
    """``p_kw`` to write, or None with the ``reason`` it was refused.
    ``detail`` is a human sentence either way (may be empty when accepted)."""

    p_kw: float | None
    reason: ReasonCode | None = None
    detail: str = ""

    @property
    def accepted(self) -> bool:
        return self.p_kw is not None


def _reject(reason: ReasonCode, detail: str) -> Decision:
    return Decision(None, reason, detail)


def decide(
    setpoint_kw: float,
    limits_local: PowerLimits,
    now: datetime,
    start: datetime | None,
    end: datetime | None,
    *,
    q_kvar: float | None = None,
    ramp_kw_per_s: float | None = None,
) -> Decision:
    """Checks, in order: a malformed command (INVALID_COMMAND), a lease that
    is already over (DEADLINE_PASSED), then the local limits (OUT_OF_LIMITS).

    ``start`` None means now. ``end`` is required: every setpoint is a lease.
    ``ramp_kw_per_s`` is applied by the controller in steps; ``q_kvar`` is
    validated but not acted on, which ``detail`` says.
    """
    if not _is_number(setpoint_kw):
        return _reject(ReasonCode.INVALID_COMMAND, f"p_kw {setpoint_kw!r} is not a finite number")
    if q_kvar is not None and not _is_number(q_kvar):
        return _reject(ReasonCode.INVALID_COMMAND, f"q_kvar {q_kvar!r} is not a finite number")
    if ramp_kw_per_s is not None and not (_is_number(ramp_kw_per_s) and ramp_kw_per_s >= 0):
        return _reject(
            ReasonCode.INVALID_COMMAND, f"ramp_kw_per_s {ramp_kw_per_s!r} must be a number >= 0"
        )
    if end is None:
        return _reject(ReasonCode.INVALID_COMMAND, "no end time: every setpoint is a lease")
    if start is not None and end <= start:
        return _reject(
            ReasonCode.INVALID_COMMAND,
            f"end {end.isoformat()} is not after start {start.isoformat()}",
        )
    if end <= now:
        return _reject(
            ReasonCode.DEADLINE_PASSED,
            f"the lease ended at {end.isoformat()}, before the agent got it ({now.isoformat()})",
        )
    if not limits_local.contains(setpoint_kw):
        return _reject(
            ReasonCode.OUT_OF_LIMITS,
            f"p_kw {setpoint_kw:g} is outside the agent's local limits "
            f"[{limits_local.p_min_kw:g}, {limits_local.p_max_kw:g}] kW",
        )
    detail = "q_kvar ignored: this agent controls active power only" if q_kvar is not None else ""
    return Decision(float(setpoint_kw), None, detail)


def _is_number(value: object) -> bool:
    return isinstance(value, int | float) and not isinstance(value, bool) and math.isfinite(value)
