"""The normalized telemetry sample (v1): a common core plus ``details``.

Every core field is optional; names carry their units. Sign convention of
``p_kw``/``q_kvar`` as in :mod:`gridpilot.core.assets`. The field catalogue
(units, per-type ``details`` sets, quality) is :mod:`.telemetry_fields`.
"""

from __future__ import annotations

import math
from collections.abc import Mapping
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from math import isfinite
from operator import attrgetter
from typing import Any

from .telemetry_fields import CORE_VALUE_FIELDS, Quality

# The Sample's value fields, in its (and the telemetry table's) order.
CORE_FIELDS = CORE_VALUE_FIELDS


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


def build_sample(
    asset_id: str,
    ts: datetime,
    values: Mapping[str, Any],
    quality: Mapping[str, Quality | str] | None = None,
) -> Sample:
    """A sample from normalized ``{field: value}``: core fields go to their
    slots, everything else to ``details``; qualities other than good go to
    ``details.quality``. A core value that is not a finite number is dropped
    and marked bad rather than poisoning the sample."""
    core: dict[str, Any] = {}
    details: dict[str, Any] = {}
    marks = {k: Quality(v) for k, v in (quality or {}).items() if Quality(v) != Quality.GOOD}
    for name, value in values.items():
        if name in CORE_FIELDS:
            if value is None:
                continue
            try:
                number = float(value)
            except (TypeError, ValueError):
                number = math.nan
            if math.isfinite(number):
                core[name] = number
            else:
                marks[name] = Quality.BAD
        elif name == "state":
            core["state"] = None if value is None else str(value)
        else:
            details[name] = value
    if marks:
        details["quality"] = {k: str(v) for k, v in sorted(marks.items())}
    return Sample(asset_id=asset_id, ts=ts, details=details, **core)


def sample_problem(s: Sample, now: datetime, max_future_skew: timedelta) -> str | None:
    """Why a sample must not be stored, or None when it is fine."""
    if not s.asset_id:
        return "asset_id is empty"
    if s.ts.tzinfo is None:
        return "ts has no time zone"
    if s.ts > now + max_future_skew:
        return f"ts {s.ts.isoformat()} is in the future beyond {max_future_skew}"
    for value in _core_values(s):  # every sample passes here: kept cheap
        if value is not None and not isfinite(value):
            name = next(n for n in CORE_FIELDS if getattr(s, n) is value)
            return f"{name} is not a finite number"
    # PostgreSQL text and jsonb hold neither U+0000 nor NaN/Infinity: the row
    # would be refused.
    if "\x00" in s.asset_id or (s.state is not None and "\x00" in s.state):
        return "asset_id or state contains a NUL character"
    if s.details and _unstorable(s.details):
        return "details contain a NUL character or a non-finite number"
    return None


_core_values = attrgetter(*CORE_FIELDS)


def _unstorable(value: Any) -> bool:
    items = value.items() if isinstance(value, dict) else enumerate(value)
    for k, v in items:
        kind = type(v)
        if kind is float:  # the common case first: flat numbers and text
            if not isfinite(v):
                return True
        elif kind is str:
            if "\x00" in v:
                return True
        elif isinstance(v, dict | list | tuple):
            if _unstorable(v):
                return True
        elif isinstance(v, float) and not isfinite(v):
            return True
        if type(k) is str and "\x00" in k:
            return True
    return False
