"""Dispatch commands: targets, bounds and the limit check (pure)."""

from __future__ import annotations

import math
from dataclasses import dataclass
from datetime import datetime, timedelta
from enum import StrEnum

from .assets import Asset
from .errors import OutOfLimits, ValidationFailed

# A dispatch written on site (a local operator, reported by the agent) has an
# agent-made id with this prefix; the API's own ids start with "dsp-".
LOCAL_DISPATCH_PREFIX = "loc-"
# A dispatch may be scheduled at most this far ahead (a year and a day).
MAX_START_AHEAD = timedelta(days=366)
BOTH_TARGETS_WARNING = (
    "both asset_id and site_id given: asset_id wins, dispatched to the asset only"
)


class DispatchKind(StrEnum):
    ASSET = "asset"
    SITE = "site"


@dataclass(frozen=True, slots=True)
class Target:
    kind: DispatchKind
    id: str


@dataclass(frozen=True, slots=True)
class DurationBounds:
    min_s: int = 1
    max_s: int = 24 * 3600


def resolve_target(asset_id: str | None, site_id: str | None) -> tuple[Target, list[str]]:
    """``asset_id`` wins over ``site_id`` (with a warning); neither is an error."""
    if asset_id:
        warnings = [BOTH_TARGETS_WARNING] if site_id else []
        return Target(DispatchKind.ASSET, asset_id), warnings
    if site_id:
        return Target(DispatchKind.SITE, site_id), []
    raise ValidationFailed("give asset_id or site_id", field="asset_id")


def check_power(p_kw: float, field: str = "p_kw") -> None:
    if isinstance(p_kw, bool) or not isinstance(p_kw, int | float) or not math.isfinite(p_kw):
        raise ValidationFailed(f"{field} must be a finite number", field=field)


def check_duration(duration_s: int, bounds: DurationBounds) -> None:
    if isinstance(duration_s, bool) or not isinstance(duration_s, int):
        raise ValidationFailed("duration_s must be a whole number of seconds", field="duration_s")
    if not bounds.min_s <= duration_s <= bounds.max_s:
        raise ValidationFailed(
            f"duration_s must be between {bounds.min_s} and {bounds.max_s} seconds",
            field="duration_s",
        )


def check_limits(p_kw: float, asset: Asset) -> None:
    check_power(p_kw)
    if not asset.limits.contains(p_kw):
        raise OutOfLimits(
            f"p_kw {p_kw} is outside {asset.asset_id}'s limits "
            f"[{asset.limits.p_min_kw}, {asset.limits.p_max_kw}] kW",
            field="p_kw",
        )


def check_window(
    now: datetime,
    start_at: datetime | None,
    duration_s: int,
    deliver_by: datetime | None,
    past_tolerance: timedelta = timedelta(seconds=30),
) -> tuple[datetime, datetime]:
    """Returns (start, end). A start in the past beyond the tolerance, or more
    than MAX_START_AHEAD ahead, is refused."""
    start = start_at or now
    if start_at is not None and start_at < now - past_tolerance:
        raise ValidationFailed("start_at is in the past", field="start_at")
    if start_at is not None and start_at > now + MAX_START_AHEAD:
        raise ValidationFailed(
            f"start_at is more than {MAX_START_AHEAD.days} days ahead", field="start_at"
        )
    end = start + timedelta(seconds=duration_s)
    if deliver_by is not None and deliver_by <= now:
        raise ValidationFailed("deliver_by is in the past", field="deliver_by")
    if deliver_by is not None and deliver_by > end:
        raise ValidationFailed("deliver_by is after the dispatch ends", field="deliver_by")
    return start, end
