"""Assets and power limits (gridpilot.core.assets)."""

from __future__ import annotations

import dataclasses
import math

import pytest

from gridpilot.core.assets import Asset, AssetType, PowerLimits


def asset(p_min_kw: float, p_max_kw: float, kind: AssetType = AssetType.BESS) -> Asset:
    return Asset("a-1", "site-1", kind, PowerLimits(p_min_kw, p_max_kw))


# --- PowerLimits validation -------------------------------------------------------


@pytest.mark.parametrize(("lo", "hi"), [(-100.0, 100.0), (0.0, 50.0), (-22.0, 0.0), (5.0, 5.0)])
def test_valid_limits_are_accepted(lo, hi):
    limits = PowerLimits(lo, hi)
    assert (limits.p_min_kw, limits.p_max_kw) == (lo, hi)


def test_p_min_above_p_max_is_refused():
    with pytest.raises(ValueError, match="above"):
        PowerLimits(10.0, -10.0)


@pytest.mark.parametrize("bad", [math.nan, math.inf, -math.inf])
@pytest.mark.parametrize("which", ["p_min_kw", "p_max_kw"])
def test_non_finite_limits_are_refused(which, bad):
    kwargs = {"p_min_kw": -1.0, "p_max_kw": 1.0, which: bad}
    with pytest.raises(ValueError, match="finite"):
        PowerLimits(**kwargs)


def test_limits_and_assets_are_immutable():
    with pytest.raises(dataclasses.FrozenInstanceError):
        PowerLimits(0.0, 1.0).p_max_kw = 2.0  # type: ignore[misc]
    with pytest.raises(dataclasses.FrozenInstanceError):
        asset(0.0, 1.0).limits = PowerLimits(0.0, 2.0)  # type: ignore[misc]


# --- contains / clamp -------------------------------------------------------------


@pytest.mark.parametrize(
    ("p", "inside"), [(-50, True), (0, True), (100, True), (-50.1, False), (100.1, False)]
)
def test_contains_is_inclusive_of_both_bounds(p, inside):
    assert PowerLimits(-50.0, 100.0).contains(p) is inside


@pytest.mark.parametrize(
    ("p", "clamped"), [(-80.0, -50.0), (-50.0, -50.0), (7.5, 7.5), (100.0, 100.0), (130.0, 100.0)]
)
def test_clamp_pins_values_to_the_nearest_bound(p, clamped):
    assert PowerLimits(-50.0, 100.0).clamp(p) == clamped


def test_clamp_on_a_single_point_range_always_returns_that_point():
    limits = PowerLimits(3.0, 3.0)
    assert [limits.clamp(p) for p in (-10.0, 3.0, 10.0)] == [3.0, 3.0, 3.0]


# --- tightest ---------------------------------------------------------------------


def test_tightest_of_overlapping_limits_is_their_intersection():
    assert PowerLimits(-100, 50).tightest(PowerLimits(-30, 200)) == PowerLimits(-30, 50)


def test_tightest_is_commutative():
    a, b = PowerLimits(-100, 50), PowerLimits(-30, 200)
    assert a.tightest(b) == b.tightest(a)


def test_tightest_of_nested_limits_is_the_inner_one():
    inner = PowerLimits(-10, 10)
    assert PowerLimits(-100, 100).tightest(inner) == inner
    assert inner.tightest(PowerLimits(-100, 100)) == inner


def test_tightest_of_touching_limits_is_the_single_shared_point():
    assert PowerLimits(-10, 5).tightest(PowerLimits(5, 20)) == PowerLimits(5, 5)


def test_tightest_of_disjoint_limits_allows_only_zero():
    # cloud says import only, the edge says export 10..20: nothing is safe but zero
    assert PowerLimits(-50, 0).tightest(PowerLimits(10, 20)) == PowerLimits(0.0, 0.0)
    assert PowerLimits(10, 20).tightest(PowerLimits(-50, 0)) == PowerLimits(0.0, 0.0)


def test_tightest_result_never_allows_more_than_either_side_when_they_overlap():
    a, b = PowerLimits(-7.5, 3.0), PowerLimits(-2.0, 11.0)
    t = a.tightest(b)
    for p in (-7.5, -2.0, 0.0, 3.0, 11.0):
        if t.contains(p):
            assert a.contains(p) and b.contains(p)


# --- capacity_kw ------------------------------------------------------------------


def test_bess_capacity_is_p_max_for_export_and_abs_p_min_for_import():
    bess = asset(-60.0, 100.0)
    assert bess.capacity_kw(+1) == 100.0
    assert bess.capacity_kw(-1) == 60.0


def test_pv_has_export_capacity_only():
    pv = asset(0.0, 250.0, AssetType.PV)
    assert pv.capacity_kw(+1) == 250.0
    assert pv.capacity_kw(-1) == 0.0


def test_ev_charger_has_import_capacity_and_export_only_with_v2g():
    assert asset(-22.0, 0.0, AssetType.EV_CHARGER).capacity_kw(+1) == 0.0
    assert asset(-22.0, 0.0, AssetType.EV_CHARGER).capacity_kw(-1) == 22.0
    assert asset(-22.0, 11.0, AssetType.EV_CHARGER).capacity_kw(+1) == 11.0


def test_capacity_is_never_negative_for_limits_that_exclude_zero():
    must_export = asset(10.0, 50.0)
    must_import = asset(-50.0, -10.0)
    assert must_export.capacity_kw(-1) == 0.0
    assert must_export.capacity_kw(+1) == 50.0
    assert must_import.capacity_kw(+1) == 0.0
    assert must_import.capacity_kw(-1) == 50.0


def test_capacity_direction_uses_only_the_sign_of_direction():
    bess = asset(-60.0, 100.0)
    assert bess.capacity_kw(5) == 100.0
    assert bess.capacity_kw(-3) == 60.0


def test_asset_type_values_are_stable_wire_strings():
    assert {t.value for t in AssetType} == {"bess", "pv", "wind", "ev_charger"}


def test_asset_defaults():
    a = asset(-1.0, 1.0)
    assert (a.name, a.capacity_kwh, a.default_p_kw) == ("", 0.0, 0.0)
