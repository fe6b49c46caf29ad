"""SiteDispatchWorkflow's pure parts, without Temporal: its children's ids,
the state its children imply, how long a child ran, and the allocation
record it makes from the split."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

import pytest

from gridpilot.core.assets import Asset, AssetType, PowerLimits
from gridpilot.core.lifecycle import DispatchState
from gridpilot.core.split import Available
from gridpilot.workflows.models import AllocationRecord, DispatchInput
from gridpilot.workflows.site import SiteDispatchWorkflow
from gridpilot.workflows.site_rules import active_s, allocate, child_dispatch_id, next_state

S = DispatchState
T0 = datetime(2026, 1, 1, 12, 0, tzinfo=UTC)
DURATION = timedelta(minutes=10)


def site(p_kw: float = 120.0) -> SiteDispatchWorkflow:
    inp = DispatchInput(
        dispatch_id="site-d",
        kind="site",
        p_kw=p_kw,
        duration_s=int(DURATION.total_seconds()),
        start_at=T0,
        end_at=T0 + DURATION,
        deliver_by=T0 + timedelta(seconds=60),
        site_id="site-1",
    )
    wf = SiteDispatchWorkflow(inp)
    wf.assets = [
        Asset("bess-1", "site-1", AssetType.BESS, PowerLimits(-100, 100)),
        Asset("bess-2", "site-1", AssetType.BESS, PowerLimits(-50, 50)),
        Asset("pv-1", "site-1", AssetType.PV, PowerLimits(0, 60)),
    ]
    wf.available = {"bess-2": Available(charge_kw=50.0, discharge_kw=20.0)}
    return wf


def ran(wf: SiteDispatchWorkflow, child_id: str, state: DispatchState) -> float:
    """``active_s`` over what the workflow's ``child_state`` handler kept."""
    now = T0 + timedelta(minutes=5)
    at, ended = wf.child_active_at.get(child_id), wf.child_ended_at.get(child_id)
    return active_s(wf.inp, state, at, ended, now)


def allocation(wf: SiteDispatchWorkflow, version: int, excluded: set[str]) -> AllocationRecord:
    return allocate(wf.inp, wf.assets, wf.available, version, excluded)


def test_a_child_is_named_after_its_parent_and_asset() -> None:
    assert child_dispatch_id("site-d", "bess-1") == "site-d.bess-1"


# ------------------------------------------------------------------ state from the children


@pytest.mark.parametrize(
    ("parent", "children", "expected"),
    [
        # sent: acked once every live child is acked or active
        (S.SENT, [S.ACKED, S.ACKED], S.ACKED),
        (S.SENT, [S.ACKED, S.ACTIVE], S.ACKED),
        (S.SENT, [S.ACTIVE], S.ACKED),  # acked first, then active
        (S.SENT, [S.ACKED, S.FAILED], S.ACKED),  # ended children do not hold it back
        (S.SENT, [S.ACKED, S.SENT], None),
        (S.SENT, [S.ACKED, None], None),  # a child not heard of yet counts as submitted
        (S.SENT, [S.FAILED, S.EXPIRED], None),  # nothing live: the end decides
        # acked: active as soon as any child is
        (S.ACKED, [S.ACKED, S.ACTIVE], S.ACTIVE),
        (S.ACKED, [S.SENT, S.ACTIVE], S.ACTIVE),
        (S.ACKED, [S.ACKED, S.ACKED], None),
        # active, or not yet sent: the children move it no further forward
        (S.ACTIVE, [S.ACTIVE, S.ACKED], None),
        (S.SUBMITTED, [S.ACKED, S.ACTIVE], None),
    ],
)
def test_the_parent_follows_its_children_forward(
    parent: DispatchState, children: list[DispatchState | None], expected: DispatchState | None
) -> None:
    assert next_state(parent, children) is expected


# ------------------------------------------------------------------ how long a child ran


def test_a_complete_child_ran_from_when_it_went_active_to_the_end_of_the_window() -> None:
    wf = site()
    wf.child_active_at["c"] = T0 + timedelta(minutes=4)
    assert ran(wf, "c", S.COMPLETE) == 6 * 60


def test_a_complete_child_never_seen_active_ran_the_whole_window() -> None:
    assert ran(site(), "c", S.COMPLETE) == DURATION.total_seconds()


def test_a_child_never_active_ran_for_nothing() -> None:
    wf = site()
    wf.child_ended_at["c"] = T0 + timedelta(minutes=3)
    assert ran(wf, "c", S.CANCELLED) == 0.0


# ------------------------------------------------------------------ allocation records


def test_the_first_allocation_names_one_child_per_asset_and_adds_up() -> None:
    record = allocation(site(p_kw=120.0), version=1, excluded=set())
    assert (record.dispatch_id, record.version, record.target_kw) == ("site-d", 1, 120.0)
    assert {line.asset_id: line.child_dispatch_id for line in record.lines} == {
        "bess-1": "site-d.bess-1",
        "bess-2": "site-d.bess-2",
        "pv-1": "site-d.pv-1",
    }
    assert sum(line.p_kw for line in record.lines) == pytest.approx(record.allocated_kw)
    assert record.allocated_kw + record.unallocated_kw == pytest.approx(120.0)
    (bess_2,) = [line for line in record.lines if line.asset_id == "bess-2"]
    assert bess_2.p_kw <= 20.0  # what its telemetry says it can discharge


def test_a_respread_leaves_out_the_excluded_and_versions_its_children() -> None:
    record = allocation(site(p_kw=120.0), version=2, excluded={"bess-1"})
    assert record.version == 2
    assert {line.asset_id: line.child_dispatch_id for line in record.lines} == {
        "bess-2": "site-d.bess-2.v2",
        "pv-1": "site-d.pv-1.v2",
    }
    assert record.allocated_kw <= 20.0 + 60.0
