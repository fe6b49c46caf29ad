"""Assets, their types and their power limits.

Sign convention, written once: ``p_kw > 0`` exports to the grid
(discharge / generate), ``p_kw < 0`` imports (charge / consume).
Every asset accepts ``p_min_kw <= p_kw <= p_max_kw``:

- BESS: ``-charge rating … +discharge rating``
- PV and wind: ``0 … rating`` (a setpoint below the rating curtails)
- EV charger: ``-max charge … 0`` (or up to ``+V2G`` export)
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from enum import StrEnum


class AssetType(StrEnum):
    BESS = "bess"
    PV = "pv"
    WIND = "wind"
    EV_CHARGER = "ev_charger"


@dataclass(frozen=True, slots=True)
class PowerLimits:
    p_min_kw: float
    p_max_kw: float

    def __post_init__(self) -> None:
        if not (math.isfinite(self.p_min_kw) and math.isfinite(self.p_max_kw)):
            raise ValueError("limits must be finite numbers")
        if self.p_min_kw > self.p_max_kw:
            raise ValueError(f"p_min_kw ({self.p_min_kw}) is above p_max_kw ({self.p_max_kw})")

    def contains(self, p_kw: float) -> bool:
        return self.p_min_kw <= p_kw <= self.p_max_kw

    def clamp(self, p_kw: float) -> float:
        return min(max(p_kw, self.p_min_kw), self.p_max_kw)

    def tightest(self, other: PowerLimits) -> PowerLimits:
        """The intersection of two limit sets (the most restrictive wins)."""
        lo, hi = max(self.p_min_kw, other.p_min_kw), min(self.p_max_kw, other.p_max_kw)
        if lo > hi:  # disjoint: nothing is safe but zero where zero is in either
            lo = hi = 0.0
        return PowerLimits(lo, hi)


@dataclass(frozen=True, slots=True)
class Asset:
    asset_id: str
    site_id: str
    asset_type: AssetType
    limits: PowerLimits
    name: str = ""
    capacity_kwh: float = 0.0
    default_p_kw: float = 0.0

    def capacity_kw(self, direction: int) -> float:
        """Power capacity in a direction: +1 export (p_max_kw), -1 import (|p_min_kw|)."""
        if direction > 0:
            return max(self.limits.p_max_kw, 0.0)
        return max(-self.limits.p_min_kw, 0.0)
