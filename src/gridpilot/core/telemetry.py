"""The normalized telemetry sample (v1): a common core plus ``details``.

Every core field is optional; names carry their units. Sign convention of
``p_kw``/``q_kvar`` as in :mod:`gridpilot.core.assets`.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from typing import Any

CORE_FIELDS = (
    "p_kw",
    "q_kvar",
    "soc_pct",
    "available_charge_kw",
    "available_discharge_kw",
    "voltage_v",
    "frequency_hz",
)


@dataclass(frozen=True, slots=True)
class Sample:
    asset_id: str
    ts: datetime
    p_kw: float | None = None
    q_kvar: float | None = None
    soc_pct: float | None = None
    available_charge_kw: float | None = None
    available_discharge_kw: float | None = None
    voltage_v: float | None = None
    frequency_hz: float | None = None
    state: str | None = None
    details: dict[str, Any] = field(default_factory=dict)


def sample_problem(s: Sample, now: datetime, max_future_skew: timedelta) -> str | None:
    """Why a sample must not be stored, or None when it is fine."""
    if not s.asset_id:
        return "asset_id is empty"
    if s.ts.tzinfo is None:
        return "ts has no time zone"
    if s.ts > now + max_future_skew:
        return f"ts {s.ts.isoformat()} is in the future beyond {max_future_skew}"
    for name in CORE_FIELDS:
        value = getattr(s, name)
        if value is not None and not math.isfinite(value):
            return f"{name} is not a finite number"
    return None
