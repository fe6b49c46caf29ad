"""core.site_outcome: a site dispatch's end state from what its children delivered."""

from __future__ import annotations

import pytest

from gridpilot.core.lifecycle import DispatchState, ReasonCode
from gridpilot.core.site_outcome import MOSTLY, ChildRun, site_outcome

S = DispatchState
R = ReasonCode
WINDOW = 3600.0  # 1 h: kW and kWh read the same


def run(asset, state, share, applied=None, active_s=0.0, reason=None, suffix=""):
    if state is S.COMPLETE and not active_s:
        active_s = WINDOW
    return ChildRun(f"p.{asset}{suffix}", asset, state, reason, share, applied, active_s)


def test_all_children_complete_is_complete_with_requested_and_delivered_energy():
    out = site_outcome(
        100, WINDOW, [run("a", S.COMPLETE, 60, 60), run("b", S.COMPLETE, 40, 40)], prefix="p."
    )
    assert (out.state, out.reason) == (S.COMPLETE, None)
    assert (out.requested_kw, out.delivered_kw) == (100, 100)
    assert (out.requested_kwh, out.delivered_kwh) == (100, 100)
    assert out.detail.startswith("delivered 100.000 of 100.000 kWh (100%), 100 of 100 kW; ")
    assert "a=complete, b=complete" in out.detail


def test_mostly_failed_children_are_failed_named_by_the_largest_loss():
    out = site_outcome(
        150,
        WINDOW,
        [
            run("bess-1", S.FAILED, 80, reason=R.DEVICE_UNREACHABLE),
            run("bess-2", S.COMPLETE, 20, 20),
            run("pv-1", S.FAILED, 50, reason=R.OUT_OF_LIMITS),
        ],
    )
    assert (out.state, out.reason) == (S.FAILED, R.DEVICE_UNREACHABLE)
    assert out.delivered_kwh == pytest.approx(20)
    assert "bess-1=failed DEVICE_UNREACHABLE" in out.detail


def test_at_least_mostly_delivered_is_complete_despite_a_failed_child():
    out = site_outcome(
        100,
        WINDOW,
        [run("a", S.COMPLETE, 60, 60), run("b", S.FAILED, 40, reason=R.DEVICE_WRITE_FAILED)],
    )
    assert out.state is S.COMPLETE
    assert MOSTLY == 0.5


def test_superseded_after_running_is_cancelled_superseded_with_its_energy():
    # ran 53 s of a 300 s window at 100 kW, then a newer dispatch took the asset
    out = site_outcome(100, 300, [run("a", S.CANCELLED, 100, 100, 53, R.SUPERSEDED)])
    assert (out.state, out.reason) == (S.CANCELLED, R.SUPERSEDED)
    assert out.delivered_kw == 100
    assert out.delivered_kwh == pytest.approx(100 * 53 / 3600, abs=1e-6)


def test_all_lost_to_expiry_is_expired():
    out = site_outcome(
        100,
        WINDOW,
        [
            run("a", S.EXPIRED, 60, reason=R.AGENT_OFFLINE),
            run("b", S.EXPIRED, 40, reason=R.DEADLINE_PASSED),
        ],
    )
    assert (out.state, out.reason) == (S.EXPIRED, R.AGENT_OFFLINE)
    assert out.delivered_kw == 0


def test_site_cancel_wins_whatever_was_delivered():
    out = site_outcome(100, WINDOW, [run("a", S.COMPLETE, 100, 100)], R.CANCELLED_BY_OPERATOR)
    assert (out.state, out.reason) == (S.CANCELLED, R.CANCELLED_BY_OPERATOR)
    assert out.delivered_kwh == 100


def test_respread_child_replaces_the_lost_one_and_counts():
    out = site_outcome(
        100,
        WINDOW,
        [
            run("a", S.FAILED, 50, reason=R.DEVICE_WRITE_FAILED),
            run("b", S.CANCELLED, 50, 50, 10, R.SUPERSEDED),  # replaced by b.v2
            run("b", S.COMPLETE, 100, 100, WINDOW - 10, suffix=".v2"),
        ],
        prefix="p.",
    )
    assert out.state is S.COMPLETE
    assert out.delivered_kw == 100  # per asset, the child that last carried its share
    assert out.delivered_kwh == pytest.approx(50 * 10 / 3600 + 100 * (WINDOW - 10) / 3600)
    assert "b.v2=complete" in out.detail


def test_import_target_keeps_its_sign():
    out = site_outcome(-40, WINDOW, [run("a", S.COMPLETE, -40, -40)])
    assert (out.state, out.delivered_kw, out.requested_kwh) == (S.COMPLETE, -40, 40)


def test_complete_child_without_applied_value_counts_its_share():
    assert run("a", S.COMPLETE, 30).delivered_kwh == pytest.approx(30)
    assert run("a", S.FAILED, 30, active_s=100).delivered_kwh == 0


def test_zero_target_held_by_every_child_is_complete():
    out = site_outcome(0, WINDOW, [run("a", S.COMPLETE, 0, 0), run("b", S.COMPLETE, 0, 0)])
    assert out.state is S.COMPLETE
    failed = site_outcome(0, WINDOW, [run("a", S.FAILED, 0, reason=R.DEVICE_UNREACHABLE)])
    assert (failed.state, failed.reason) == (S.FAILED, R.DEVICE_UNREACHABLE)


def test_every_share_complete_but_activated_late_is_complete_with_the_energy_it_delivered():
    # A short window mostly spent reaching the assets: the agents applied all of it.
    out = site_outcome(
        90, 3.0, [run("a", S.COMPLETE, 60, 60, active_s=1.4), run("b", S.COMPLETE, 30, 30, 1.4)]
    )
    assert (out.state, out.reason) == (S.COMPLETE, None)
    assert out.delivered_kwh < MOSTLY * out.requested_kwh
    assert "(47%)" in out.detail


def test_every_share_complete_but_mostly_not_applied_is_device_write_failed():
    out = site_outcome(100, WINDOW, [run("a", S.COMPLETE, 60, 20), run("b", S.COMPLETE, 40, 10)])
    assert (out.state, out.reason) == (S.FAILED, R.DEVICE_WRITE_FAILED)
