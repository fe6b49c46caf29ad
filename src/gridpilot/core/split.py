"""Site split policy ``capacity_weighted_clamped/v1``.

Each asset's share of a site target is proportional to its capacity in the
target's direction (``p_max_kw`` for export, ``|p_min_kw|`` for import),
clamped to its limits and, where fresh telemetry says so, to its available
power. What clamping leaves over is re-spread over the unclamped assets until
nothing is left or every asset is clamped. Ties and rounding are resolved in
``asset_id`` order, so the same input always gives the same split; the
remainder nobody could take is reported, never silently dropped.
"""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from dataclasses import dataclass

from .assets import Asset
from .errors import OutOfLimits

POLICY = "capacity_weighted_clamped/v1"
RESOLUTION_KW = 0.001  # shares are rounded to whole watts


@dataclass(frozen=True, slots=True)
class Available:
    """What fresh telemetry says an asset can do right now (kW, both >= 0)."""

    charge_kw: float | None = None
    discharge_kw: float | None = None


@dataclass(frozen=True, slots=True)
class Allocation:
    asset_id: str
    p_kw: float
    weight_kw: float  # nominal capacity in the target's direction
    bound_kw: float  # the most it could take (limits and availability)
    clamped: bool


@dataclass(frozen=True, slots=True)
class SplitResult:
    policy: str
    target_kw: float
    allocations: tuple[Allocation, ...]
    allocated_kw: float
    unallocated_kw: float


def _bound(asset: Asset, direction: int, available: Available | None) -> float:
    bound = asset.capacity_kw(direction)
    if available is not None:
        avail = available.discharge_kw if direction > 0 else available.charge_kw
        if avail is not None and math.isfinite(avail):
            bound = min(bound, max(avail, 0.0))
    return bound


def split(
    target_kw: float,
    assets: Sequence[Asset],
    available: Mapping[str, Available] | None = None,
) -> SplitResult:
    if not math.isfinite(target_kw):
        raise ValueError("target_kw must be a finite number")
    if len({a.asset_id for a in assets}) != len(assets):
        raise ValueError("asset ids must be unique")
    ordered = sorted(assets, key=lambda a: a.asset_id)
    direction = 1 if target_kw >= 0 else -1
    magnitude = abs(target_kw)
    avail = available or {}

    weight = {a.asset_id: a.capacity_kw(direction) for a in ordered}
    bound = {a.asset_id: _bound(a, direction, avail.get(a.asset_id)) for a in ordered}
    share = {a.asset_id: 0.0 for a in ordered}
    clamped: set[str] = set()

    # Re-spread: each pass shares what is left over the unclamped assets by
    # weight; any share over its bound is clamped and leaves the pool. At most
    # one pass per asset, since every pass that does not finish clamps one.
    free = [aid for aid in weight if weight[aid] > 0 and bound[aid] > 0]
    for aid in weight:
        if aid not in free:
            clamped.add(aid)
    while free:
        left = magnitude - sum(share[aid] for aid in clamped)
        total_weight = sum(weight[aid] for aid in free)
        over = [aid for aid in free if left * weight[aid] / total_weight > bound[aid]]
        if not over:
            for aid in free:
                share[aid] = left * weight[aid] / total_weight
            break
        for aid in over:
            share[aid] = bound[aid]
            clamped.add(aid)
        free = [aid for aid in free if aid not in over]

    # Work in whole watts of the target (nearest), so a sub-watt target is not
    # floored for the shares yet rounded up for the remainder.
    whole_kw = round(magnitude / RESOLUTION_KW) * RESOLUTION_KW
    rounded = _round_to_resolution(share, bound, min(whole_kw, sum(bound.values())))
    allocations = tuple(
        Allocation(
            asset_id=aid,
            p_kw=_signed(rounded[aid], direction),
            weight_kw=weight[aid],
            bound_kw=bound[aid],
            clamped=aid in clamped and weight[aid] > 0,
        )
        for aid in rounded
    )
    allocated = _round(sum(rounded.values()))
    return SplitResult(
        policy=POLICY,
        target_kw=target_kw,
        allocations=allocations,
        allocated_kw=_signed(allocated, direction),
        unallocated_kw=_signed(_round(max(whole_kw - allocated, 0.0)), direction),
    )


def _round(x: float) -> float:
    return round(x / RESOLUTION_KW) * RESOLUTION_KW if x else 0.0


def _signed(magnitude: float, direction: int) -> float:
    value = round(magnitude * direction, 6)
    return 0.0 if value == 0 else value


def _round_to_resolution(
    share: dict[str, float], bound: dict[str, float], total: float
) -> dict[str, float]:
    """Round every share down to whole watts, then hand the rounding residue
    out one watt at a time in asset_id order, never past an asset's bound."""
    steps = {aid: math.floor(s / RESOLUTION_KW + 1e-6) for aid, s in share.items()}
    residue = math.floor(total / RESOLUTION_KW + 1e-6) - sum(steps.values())
    caps = {aid: math.floor(b / RESOLUTION_KW + 1e-6) for aid, b in bound.items()}
    while residue > 0:
        progressed = False
        for aid in steps:
            if residue == 0:
                break
            if share[aid] > 0 and steps[aid] < caps[aid]:
                steps[aid] += 1
                residue -= 1
                progressed = True
        if not progressed:
            break
    return {aid: round(n * RESOLUTION_KW, 3) for aid, n in steps.items()}


def check_capacity(result: SplitResult, site_id: str, accept_partial: bool = False) -> str | None:
    """A site target the site cannot deliver (limits, and available power where fresh
    telemetry says so) is refused, naming the site's capacity: it would otherwise be
    shown "active" at a power nobody delivers. ``accept_partial`` takes what the site
    can do instead; the answer is then the warning to show. None when it all fits."""
    if abs(result.unallocated_kw) < RESOLUTION_KW:
        return None
    direction = "export" if result.target_kw >= 0 else "import"
    capacity = (
        f"site {site_id} can {direction} at most {abs(result.allocated_kw):g} kW now "
        f"(the limits and available power of its {len(result.allocations)} assets)"
    )
    if not accept_partial:
        raise OutOfLimits(
            f"p_kw {result.target_kw:g} is beyond what the site can deliver: {capacity}; "
            "send accept_partial: true to dispatch what it can",
            field="p_kw",
        )
    return (
        f"partial allocation accepted: {capacity}, "
        f"{abs(result.unallocated_kw):g} kW of the target is not allocated"
    )
