"""A site dispatch's final state, from what its children delivered.

A site dispatch asks for ``requested_kw`` over its window, i.e. an energy. Its
children (one per asset, and the ``.vN`` children of a re-spread) each report
how they ended, the power the agent applied and how long it ran. The site is:

- ``cancelled`` with the operator's reason when the site itself was cancelled;
- ``complete`` when its children delivered at least ``MOSTLY`` of the
  requested energy (a re-spread that made up for a lost asset counts), or when
  every share ran to the end of its window applying at least ``MOSTLY`` of the
  requested power (the energy lost to reaching the assets late is no fault;
  the detail still says how much was delivered);
- otherwise it ends the way most of the undelivered energy was lost: the
  child (its latest one per asset) with the largest undelivered share names
  the reason, and the state is that child's (``cancelled`` for a share taken
  by a newer dispatch or cancelled by an operator, ``expired`` or ``failed``),
  so a site superseded after 53 s is ``cancelled / SUPERSEDED`` with the
  energy of those 53 s, and one whose children mostly failed is ``failed``.

Pure: the workflow gathers the facts, this decides.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

from .lifecycle import DispatchState, ReasonCode

S = DispatchState
# Delivered at least this share of the requested energy: the site dispatch is complete.
MOSTLY = 0.5
_HOUR_S = 3600.0


@dataclass(frozen=True, slots=True)
class ChildRun:
    """How one child ended. ``applied_kw``: what the agent applied (None if it never
    said); ``active_s``: how long it ran applied (for a complete child, its window
    from when it became active: complete means its duration ran out)."""

    dispatch_id: str
    asset_id: str
    state: DispatchState
    reason: ReasonCode | None
    share_kw: float
    applied_kw: float | None
    active_s: float

    @property
    def held_kw(self) -> float:
        """What the agent applied; a complete child that never said held its share."""
        if self.applied_kw is not None:
            return self.applied_kw
        return self.share_kw if self.state is S.COMPLETE else 0.0

    @property
    def delivered_kwh(self) -> float:
        return abs(self.held_kw) * max(self.active_s, 0.0) / _HOUR_S


@dataclass(frozen=True, slots=True)
class SiteOutcome:
    state: DispatchState
    reason: ReasonCode | None
    requested_kw: float
    delivered_kw: float
    requested_kwh: float
    delivered_kwh: float
    detail: str


def site_outcome(
    requested_kw: float,
    duration_s: float,
    children: Sequence[ChildRun],
    cancelled: ReasonCode | None = None,
    prefix: str = "",
) -> SiteOutcome:
    """``children`` in the order they were started (a re-spread child after the one
    it replaces); ``cancelled``: the site's own cancel reason, if it was cancelled;
    ``prefix`` is cut from child ids in the detail."""
    requested_kwh = abs(requested_kw) * duration_s / _HOUR_S
    delivered_kwh = sum(c.delivered_kwh for c in children)
    latest: dict[str, ChildRun] = {}  # per asset, the child that last carried its share
    for c in children:
        latest[c.asset_id] = c
    sign = -1.0 if requested_kw < 0 else 1.0
    delivered_kw = sign * sum(
        abs(c.applied_kw) for c in latest.values() if c.applied_kw is not None
    )
    detail = _detail(requested_kw, delivered_kw, requested_kwh, delivered_kwh, children, prefix)

    def outcome(state: DispatchState, reason: ReasonCode | None) -> SiteOutcome:
        return SiteOutcome(
            state,
            reason,
            requested_kw,
            round(delivered_kw, 3),
            round(requested_kwh, 6),
            round(delivered_kwh, 6),
            detail,
        )

    lost = [c for c in latest.values() if c.state is not S.COMPLETE]
    if cancelled is not None:
        return outcome(S.CANCELLED, cancelled)
    if requested_kwh > 0 and delivered_kwh >= MOSTLY * requested_kwh:
        return outcome(S.COMPLETE, None)
    if requested_kwh == 0 and children and not lost:  # a 0 kW hold: every share held
        return outcome(S.COMPLETE, None)
    if not lost:
        # Every share ran to the end of its window: the energy missing is the
        # time it took to reach the assets, not a fault. Only power the agents
        # did not apply makes it fail.
        if sum(abs(c.held_kw) for c in latest.values()) >= MOSTLY * abs(requested_kw):
            return outcome(S.COMPLETE, None)
        return outcome(S.FAILED, ReasonCode.DEVICE_WRITE_FAILED)
    # The child that lost the most energy names it (ties: asset id order).
    worst = max(
        sorted(lost, key=lambda c: c.asset_id),
        key=lambda c: abs(c.share_kw) * duration_s / _HOUR_S - c.delivered_kwh,
    )
    reason = worst.reason or ReasonCode.DEVICE_WRITE_FAILED
    if worst.state is S.CANCELLED:
        return outcome(S.CANCELLED, reason)
    if all(c.state is S.EXPIRED for c in lost if c.state is not S.CANCELLED):
        return outcome(S.EXPIRED, reason)
    return outcome(S.FAILED, reason)


def _detail(
    requested_kw: float,
    delivered_kw: float,
    requested_kwh: float,
    delivered_kwh: float,
    children: Sequence[ChildRun],
    prefix: str,
) -> str:
    share = f" ({delivered_kwh / requested_kwh:.0%})" if requested_kwh > 0 else ""
    parts = []
    for c in children:
        why = f" {c.reason}" if c.reason is not None and c.state is not S.COMPLETE else ""
        parts.append(f"{c.dispatch_id.removeprefix(prefix)}={c.state}{why}")
    return (
        f"delivered {delivered_kwh:.3f} of {requested_kwh:.3f} kWh{share}, "
        f"{delivered_kw:g} of {requested_kw:g} kW; " + ", ".join(parts)
    )
