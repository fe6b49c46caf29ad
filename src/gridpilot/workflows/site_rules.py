"""SiteDispatchWorkflow's pure parts: its children's ids and inputs, the
allocation record it makes from the split, the state its children imply, and
the runs it folds their endings into for ``core.site_outcome``. No Temporal
calls here (``site.py`` makes them), so these run and test without a worker.
"""

from __future__ import annotations

from collections.abc import Mapping
from datetime import datetime, timedelta

from gridpilot.core.assets import Asset, AssetType, PowerLimits
from gridpilot.core.dispatch import DispatchKind
from gridpilot.core.lifecycle import DispatchState
from gridpilot.core.site_outcome import ChildRun
from gridpilot.core.split import Available, split

from .models import (
    AllocationLine,
    AllocationRecord,
    ChildState,
    DispatchInput,
    DispatchResult,
    SplitInputs,
)

S = DispatchState
# A re-spread child may wait this long for its agent (within the window).
RESPREAD_DELIVERY = timedelta(seconds=60)


def child_dispatch_id(parent_id: str, asset_id: str) -> str:
    return f"{parent_id}.{asset_id}"


def site_assets(loaded: SplitInputs, site_id: str) -> tuple[list[Asset], dict[str, Available]]:
    """The site's assets and what each can give now, as ``core.split`` takes them."""
    assets = [
        Asset(
            asset_id=a.asset_id,
            site_id=site_id,
            asset_type=AssetType(a.asset_type),
            limits=PowerLimits(a.p_min_kw, a.p_max_kw),
        )
        for a in loaded.assets
    ]
    available = {
        a.asset_id: Available(a.available_charge_kw, a.available_discharge_kw)
        for a in loaded.assets
    }
    return assets, available


def allocate(
    inp: DispatchInput,
    assets: list[Asset],
    available: dict[str, Available],
    version: int,
    excluded: set[str],
) -> AllocationRecord:
    """Allocation ``version`` of the site's target over its assets but ``excluded``;
    a re-spread's children are named ``<parent>.<asset>.v<version>``."""
    result = split(inp.p_kw, [a for a in assets if a.asset_id not in excluded], available)
    suffix = "" if version == 1 else f".v{version}"
    return AllocationRecord(
        dispatch_id=inp.dispatch_id,
        policy=result.policy,
        version=version,
        target_kw=result.target_kw,
        allocated_kw=result.allocated_kw,
        unallocated_kw=result.unallocated_kw,
        lines=[
            AllocationLine(
                asset_id=a.asset_id,
                p_kw=a.p_kw,
                weight_kw=a.weight_kw,
                bound_kw=a.bound_kw,
                clamped=a.clamped,
                child_dispatch_id=child_dispatch_id(inp.dispatch_id, a.asset_id) + suffix,
            )
            for a in result.allocations
        ],
    )


def child_input(
    inp: DispatchInput, line: AllocationLine, respread_at: datetime | None = None
) -> DispatchInput:
    """The child dispatch that carries ``line``'s share. A re-spread one
    (``respread_at``: now) starts then, or at the start, with its own delivery window."""
    timing = {}
    if respread_at is not None:
        start = max(inp.start_at, respread_at)
        deliver_by = max(inp.deliver_by, min(start + RESPREAD_DELIVERY, inp.end_at))
        timing = {"start_at": start, "deliver_by": deliver_by}
    return inp.model_copy(
        update={
            **timing,
            "dispatch_id": line.child_dispatch_id,
            "kind": DispatchKind.ASSET.value,
            "asset_id": line.asset_id,
            "p_kw": line.p_kw,
            "parent_id": inp.dispatch_id,
            "warnings": [],
            "idempotency_key": None,
            "request_hash": None,
        }
    )


def next_state(
    parent: DispatchState | None, known: list[DispatchState | None]
) -> DispatchState | None:
    """The parent's next forward state implied by its children's (None: not heard
    of yet, counted as submitted): acked once every live child is acked or active,
    active as soon as any child is."""
    states = [s if s is not None else S.SUBMITTED for s in known]
    live = [s for s in states if not s.terminal]
    if parent is S.SENT and live and all(s in (S.ACKED, S.ACTIVE) for s in live):
        return S.ACKED
    if parent in (S.SENT, S.ACKED) and S.ACTIVE in states:
        return S.ACTIVE
    return None


def active_s(
    inp: DispatchInput,
    state: DispatchState,
    active_at: datetime | None,
    ended_at: datetime | None,
    now: datetime,
) -> float:
    """How long a child ran applied; a complete one ran to the end of its window."""
    if state is S.COMPLETE:
        since = active_at or inp.start_at
        return max((inp.end_at - since).total_seconds(), 0.0)
    if active_at is None:
        return 0.0
    ended = ended_at if ended_at is not None else now
    return max((ended - active_at).total_seconds(), 0.0)


def child_runs(
    inp: DispatchInput,
    lines: Mapping[str, AllocationLine],
    results: list[DispatchResult],
    last: Mapping[str, ChildState],
    active_at: Mapping[str, datetime],
    ended_at: Mapping[str, datetime],
    now: datetime,
) -> list[ChildRun]:
    """Every child started (``lines``, re-spread ones too, in order) with how it
    ended: its result, else the terminal state it signalled last. A child that
    never said how it ended delivered nothing that we know of and is left out."""
    final = {r.dispatch_id: r for r in results}
    runs = []
    for cid, line in lines.items():
        r = final.get(cid)
        said = last.get(cid)
        if r is None and said is not None and said.state.terminal:
            r = DispatchResult(
                dispatch_id=cid,
                state=said.state,
                reason=said.reason,
                applied_p_kw=said.applied_p_kw,
            )
        if r is None:
            continue
        runs.append(
            ChildRun(
                dispatch_id=cid,
                asset_id=line.asset_id,
                state=r.state,
                reason=r.reason,
                share_kw=line.p_kw,
                applied_kw=r.applied_p_kw,
                active_s=active_s(inp, r.state, active_at.get(cid), ended_at.get(cid), now),
            )
        )
    return runs
