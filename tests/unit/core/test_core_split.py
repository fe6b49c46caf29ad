"""Site split policy ``capacity_weighted_clamped/v1`` (gridpilot.core.split)."""

from __future__ import annotations

import math

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from gridpilot.core.assets import Asset, AssetType, PowerLimits
from gridpilot.core.split import POLICY, Available, SplitResult, split

WATT = 0.001  # kW
EPS = 1e-9


def bess(asset_id: str, p_min_kw: float, p_max_kw: float) -> Asset:
    return Asset(asset_id, "site-1", AssetType.BESS, PowerLimits(p_min_kw, p_max_kw))


def pv(asset_id: str, rating_kw: float) -> Asset:
    return Asset(asset_id, "site-1", AssetType.PV, PowerLimits(0.0, rating_kw))


def ev(asset_id: str, max_charge_kw: float, v2g_kw: float = 0.0) -> Asset:
    return Asset(asset_id, "site-1", AssetType.EV_CHARGER, PowerLimits(-max_charge_kw, v2g_kw))


def by_id(result: SplitResult) -> dict[str, float]:
    return {a.asset_id: a.p_kw for a in result.allocations}


def is_whole_watts(p_kw: float) -> bool:
    return abs(p_kw / WATT - round(p_kw / WATT)) < 1e-6


# --- proportional shares ----------------------------------------------------------


def test_export_target_is_shared_in_proportion_to_p_max():
    result = split(150.0, [bess("a", -100, 200), bess("b", -300, 100)])

    assert by_id(result) == {"a": 100.0, "b": 50.0}
    assert {a.asset_id: a.weight_kw for a in result.allocations} == {"a": 200, "b": 100}
    assert result.allocated_kw == 150.0
    assert result.unallocated_kw == 0.0


def test_import_target_is_shared_in_proportion_to_abs_p_min():
    result = split(-200.0, [bess("a", -100, 200), bess("b", -300, 100)])

    assert by_id(result) == {"a": -50.0, "b": -150.0}
    assert {a.asset_id: a.weight_kw for a in result.allocations} == {"a": 100, "b": 300}
    assert result.allocated_kw == -200.0
    assert result.unallocated_kw == 0.0


def test_pv_gets_nothing_on_an_import_target():
    result = split(-60.0, [bess("bess", -100, 100), pv("pv", 500)])

    alloc = {a.asset_id: a for a in result.allocations}
    assert alloc["pv"].p_kw == 0.0
    assert alloc["pv"].weight_kw == 0.0
    assert alloc["pv"].bound_kw == 0.0
    assert alloc["pv"].clamped is False  # no capacity is not "clamped"
    assert alloc["bess"].p_kw == -60.0


def test_pv_takes_its_capacity_weighted_share_of_an_export_target():
    result = split(300.0, [bess("bess", -100, 100), pv("pv", 200)])

    assert by_id(result) == {"bess": 100.0, "pv": 200.0}


def test_ev_charger_without_v2g_gets_nothing_on_an_export_target():
    result = split(50.0, [bess("bess", -100, 100), ev("ev", 22)])

    assert by_id(result) == {"bess": 50.0, "ev": 0.0}


def test_ev_charger_with_v2g_shares_an_export_target_by_its_v2g_rating():
    result = split(60.0, [bess("bess", -100, 100), ev("ev", 22, v2g_kw=20)])

    assert by_id(result) == {"bess": 50.0, "ev": 10.0}


def test_allocations_never_have_the_opposite_sign_of_the_target():
    assets = [bess("a", -100, 100), pv("pv", 100), ev("ev", 50)]
    for target in (80.0, -80.0):
        for alloc in split(target, assets).allocations:
            assert alloc.p_kw * target >= 0


# --- clamping and re-spreading ----------------------------------------------------


def test_site_split_clamps_to_availability_and_respreads_remainder():
    assets = [bess("a", -100, 100), bess("b", -100, 100), bess("c", -200, 200)]
    result = split(200.0, assets, {"a": Available(discharge_kw=10)})

    alloc = {a.asset_id: a for a in result.allocations}
    assert alloc["a"].p_kw == 10.0
    assert alloc["a"].clamped is True
    assert alloc["a"].bound_kw == 10.0
    assert alloc["a"].weight_kw == 100  # nominal weight stays the rating
    # the 190 kW left over is re-spread 1:2 over b and c, whole watts, residue to b
    assert alloc["b"].p_kw == 63.334
    assert alloc["c"].p_kw == 126.666
    assert alloc["b"].clamped is False
    assert alloc["c"].clamped is False
    assert result.allocated_kw == 200.0
    assert result.unallocated_kw == 0.0


def test_respread_cascades_until_no_share_exceeds_its_bound():
    # pass 1: 50/50/50, a is over (40); pass 2: 55/55, b is over (54); pass 3: c takes 56
    assets = [bess("a", -100, 100), bess("b", -100, 100), bess("c", -100, 100)]
    available = {"a": Available(discharge_kw=40), "b": Available(discharge_kw=54)}

    result = split(150.0, assets, available)

    assert by_id(result) == {"a": 40.0, "b": 54.0, "c": 56.0}
    assert [a.clamped for a in result.allocations] == [True, True, False]
    assert result.unallocated_kw == 0.0


def test_import_target_is_clamped_by_available_charge_not_discharge():
    assets = [bess("a", -100, 100), bess("b", -100, 100)]
    available = {"a": Available(charge_kw=20, discharge_kw=0)}

    result = split(-100.0, assets, available)

    assert by_id(result) == {"a": -20.0, "b": -80.0}


def test_export_target_is_clamped_by_available_discharge_not_charge():
    assets = [bess("a", -100, 100), bess("b", -100, 100)]
    available = {"a": Available(charge_kw=0, discharge_kw=30)}

    result = split(100.0, assets, available)

    assert by_id(result) == {"a": 30.0, "b": 70.0}


def test_zero_availability_takes_nothing_and_is_reported_clamped():
    assets = [bess("a", -100, 100), bess("b", -100, 100)]

    result = split(80.0, assets, {"a": Available(discharge_kw=0)})

    alloc = {a.asset_id: a for a in result.allocations}
    assert alloc["a"].p_kw == 0.0
    assert alloc["a"].clamped is True
    assert alloc["b"].p_kw == 80.0


def test_negative_availability_is_treated_as_zero():
    assets = [bess("a", -100, 100), bess("b", -100, 100)]

    result = split(80.0, assets, {"a": Available(discharge_kw=-5)})

    assert by_id(result) == {"a": 0.0, "b": 80.0}
    assert result.allocations[0].bound_kw == 0.0


def test_availability_above_the_limits_does_not_raise_the_bound():
    result = split(500.0, [bess("a", -100, 100)], {"a": Available(discharge_kw=400)})

    assert result.allocations[0].bound_kw == 100
    assert result.allocations[0].p_kw == 100.0
    assert result.unallocated_kw == 400.0


def test_availability_without_the_relevant_direction_falls_back_to_the_limits():
    assets = [bess("a", -100, 100), bess("b", -100, 100)]

    result = split(100.0, assets, {"a": Available(charge_kw=5, discharge_kw=None)})

    assert by_id(result) == {"a": 50.0, "b": 50.0}


def test_availability_for_an_asset_not_in_the_split_is_ignored():
    result = split(100.0, [bess("a", -100, 100)], {"zzz": Available(discharge_kw=0)})

    assert by_id(result) == {"a": 100.0}


# --- insufficient capacity --------------------------------------------------------


def test_export_beyond_capacity_clamps_all_and_reports_positive_unallocated_rest():
    result = split(500.0, [bess("a", -100, 100), pv("b", 150)])

    assert by_id(result) == {"a": 100.0, "b": 150.0}
    assert all(a.clamped for a in result.allocations)
    assert result.allocated_kw == 250.0
    assert result.unallocated_kw == 250.0


def test_import_beyond_capacity_reports_negative_unallocated_rest():
    result = split(-300.0, [bess("a", -100, 100), bess("b", -100, 100), pv("pv", 100)])

    assert by_id(result) == {"a": -100.0, "b": -100.0, "pv": 0.0}
    assert result.allocated_kw == -200.0
    assert result.unallocated_kw == -100.0


def test_unallocated_rest_accounts_for_availability_limits():
    assets = [bess("a", -100, 100), bess("b", -100, 100)]
    available = {"a": Available(discharge_kw=10), "b": Available(discharge_kw=15)}

    result = split(100.0, assets, available)

    assert by_id(result) == {"a": 10.0, "b": 15.0}
    assert result.unallocated_kw == 75.0


def test_target_with_no_capable_asset_is_entirely_unallocated():
    result = split(-40.0, [pv("pv1", 100), pv("pv2", 50)])

    assert by_id(result) == {"pv1": 0.0, "pv2": 0.0}
    assert result.allocated_kw == 0.0
    assert result.unallocated_kw == -40.0


def test_empty_site_leaves_the_whole_target_unallocated():
    result = split(75.0, [])

    assert result.allocations == ()
    assert result.allocated_kw == 0.0
    assert result.unallocated_kw == 75.0


# --- zero target ------------------------------------------------------------------


@pytest.mark.parametrize("target", [0.0, -0.0, 0])
def test_zero_target_allocates_zero_to_every_asset(target):
    result = split(target, [bess("a", -100, 100), pv("b", 50), ev("c", 11)])

    assert [a.p_kw for a in result.allocations] == [0.0, 0.0, 0.0]
    assert result.allocated_kw == 0.0
    assert result.unallocated_kw == 0.0
    # no negative zeros leak into the result
    values = [result.allocated_kw, result.unallocated_kw, *by_id(result).values()]
    assert all(math.copysign(1.0, v) == 1.0 for v in values)
    assert not any(a.clamped for a in result.allocations)


# --- determinism ------------------------------------------------------------------


def test_same_input_in_any_order_gives_identical_split():
    assets = [bess("c", -70, 70), pv("a", 33), bess("b", -10, 10), ev("d", 7, 3)]
    available = {"b": Available(discharge_kw=2.5, charge_kw=1)}
    reference = split(101.0, assets, available)

    for order in ([3, 2, 1, 0], [1, 3, 0, 2], [2, 0, 3, 1]):
        assert split(101.0, [assets[i] for i in order], available) == reference


def test_allocations_are_listed_in_asset_id_order():
    result = split(10.0, [bess("zeta", -5, 5), bess("alpha", -5, 5), bess("mid", -5, 5)])

    assert [a.asset_id for a in result.allocations] == ["alpha", "mid", "zeta"]


# --- rounding to whole watts ------------------------------------------------------


def test_rounding_residue_goes_to_the_first_asset_id_and_sums_exactly():
    result = split(100.0, [bess("c", -50, 50), bess("a", -50, 50), bess("b", -50, 50)])

    assert by_id(result) == {"a": 33.334, "b": 33.333, "c": 33.333}
    assert result.allocated_kw == 100.0
    assert result.unallocated_kw == 0.0
    assert round(sum(a.p_kw for a in result.allocations), 6) == 100.0


def test_rounding_of_an_import_target_sums_exactly_with_negative_sign():
    result = split(-0.1, [bess("a", -50, 50), bess("b", -50, 50), bess("c", -50, 50)])

    assert by_id(result) == {"a": -0.034, "b": -0.033, "c": -0.033}
    assert result.allocated_kw == -0.1
    assert result.unallocated_kw == 0.0


def test_every_allocation_is_a_whole_number_of_watts():
    assets = [bess("a", -13.7, 13.7), bess("b", -29.3, 29.3), pv("c", 41.9)]
    result = split(77.777, assets)

    assert all(is_whole_watts(a.p_kw) for a in result.allocations)
    assert round(sum(a.p_kw for a in result.allocations), 6) == 77.777


def test_rounding_never_pushes_an_allocation_past_its_bound():
    # each asset can take 333.5 W: in whole watts only 333 W each, 999 W together
    assets = [bess("a", -10, 10), bess("b", -10, 10), bess("c", -10, 10)]
    available = {aid: Available(discharge_kw=0.3335) for aid in "abc"}

    result = split(1.0, assets, available)

    for alloc in result.allocations:
        assert alloc.p_kw <= alloc.bound_kw
        assert alloc.p_kw == 0.333
    assert result.allocated_kw == 0.999
    assert result.unallocated_kw == 0.001


def test_rounding_residue_skips_assets_already_at_their_bound():
    # a is clamped to exactly 1.000 kW; the watt of residue must go to b, not a
    assets = [bess("a", -100, 100), bess("b", -100, 100), bess("c", -100, 100)]
    result = split(10.0, assets, {"a": Available(discharge_kw=1.0)})

    assert by_id(result) == {"a": 1.0, "b": 4.5, "c": 4.5}

    result = split(10.001, assets, {"a": Available(discharge_kw=1.0)})
    assert by_id(result) == {"a": 1.0, "b": 4.501, "c": 4.5}
    assert result.allocated_kw == 10.001


# --- recorded metadata and input validation ---------------------------------------


def test_result_records_policy_name_and_version_and_target():
    result = split(-12.5, [bess("a", -100, 100)])

    assert result.policy == POLICY == "capacity_weighted_clamped/v1"
    assert result.target_kw == -12.5


@pytest.mark.parametrize("target", [math.nan, math.inf, -math.inf])
def test_non_finite_target_is_refused(target):
    with pytest.raises(ValueError, match="finite"):
        split(target, [bess("a", -100, 100)])


def test_duplicate_asset_ids_are_refused():
    with pytest.raises(ValueError, match="unique"):
        split(10.0, [bess("a", -100, 100), pv("a", 50)])


# --- properties -------------------------------------------------------------------

PROPS = settings(max_examples=100, deadline=None, database=None)

kw = st.floats(min_value=0.0, max_value=1000.0, allow_nan=False, allow_infinity=False)


@st.composite
def limits(draw) -> PowerLimits:
    kind = draw(st.sampled_from(["bess", "pv", "ev", "any"]))
    if kind == "bess":
        return PowerLimits(-draw(kw), draw(kw))
    if kind == "pv":
        return PowerLimits(0.0, draw(kw))
    if kind == "ev":
        return PowerLimits(-draw(kw), draw(st.sampled_from([0.0, 5.0, 11.0])))
    lo, hi = sorted(
        draw(st.lists(st.floats(-1000.0, 1000.0, allow_nan=False), min_size=2, max_size=2))
    )
    return PowerLimits(lo, hi)


@st.composite
def sites(draw, with_availability: bool = True):
    ids = draw(
        st.lists(
            st.text(alphabet="abcdefghij0123456789-", min_size=1, max_size=6),
            max_size=8,
            unique=True,
        )
    )
    assets = [Asset(aid, "site-1", AssetType.BESS, draw(limits())) for aid in ids]
    available: dict[str, Available] = {}
    if with_availability:
        for aid in ids:
            if draw(st.booleans()):
                available[aid] = Available(
                    charge_kw=draw(st.none() | kw), discharge_kw=draw(st.none() | kw)
                )
    return assets, available


targets = st.floats(min_value=-5000.0, max_value=5000.0, allow_nan=False, allow_infinity=False)


def direction_of(target: float) -> int:
    return 1 if target >= 0 else -1


@PROPS
@given(site=sites(), target=targets)
def test_property_allocations_plus_unallocated_equal_the_target(site, target):
    assets, available = site
    result = split(target, assets, available)

    total = sum(a.p_kw for a in result.allocations)
    assert total + result.unallocated_kw == pytest.approx(target, abs=WATT)
    assert result.allocated_kw == pytest.approx(total, abs=1e-6)
    assert result.unallocated_kw * direction_of(target) >= 0  # the target's sign


@PROPS
@given(site=sites(), target=targets)
def test_property_every_allocation_is_within_zero_and_its_bound(site, target):
    assets, available = site
    result = split(target, assets, available)
    direction = direction_of(target)
    by_asset = {a.asset_id: a for a in assets}

    for alloc in result.allocations:
        magnitude = alloc.p_kw * direction
        assert magnitude >= 0
        assert magnitude <= alloc.bound_kw + EPS
        assert alloc.bound_kw <= by_asset[alloc.asset_id].capacity_kw(direction) + EPS
        avail = available.get(alloc.asset_id)
        if avail is not None:
            side = avail.discharge_kw if direction > 0 else avail.charge_kw
            if side is not None:
                assert alloc.bound_kw <= side + EPS
        assert is_whole_watts(alloc.p_kw)


@PROPS
@given(data=st.data(), site=sites(), target=targets)
def test_property_split_is_invariant_under_input_permutation(data, site, target):
    assets, available = site
    shuffled = data.draw(st.permutations(assets))

    assert split(target, shuffled, available) == split(target, assets, available)


@PROPS
@given(site=sites(), target=targets)
def test_property_a_remainder_is_left_only_when_every_capable_asset_is_full(site, target):
    assets, available = site
    result = split(target, assets, available)

    if abs(result.unallocated_kw) > 1.5 * WATT:
        direction = direction_of(target)
        for alloc in result.allocations:
            assert alloc.p_kw * direction >= alloc.bound_kw - WATT - EPS


@PROPS
@given(site=sites(with_availability=False), target=targets)
def test_property_unclamped_shares_are_proportional_to_capacity(site, target):
    assets, _ = site
    direction = direction_of(target)
    total_weight = sum(a.capacity_kw(direction) for a in assets)
    if total_weight == 0 or abs(target) > total_weight:
        return
    result = split(target, assets)

    for alloc in result.allocations:
        expected = abs(target) * alloc.weight_kw / total_weight
        assert alloc.p_kw * direction == pytest.approx(expected, abs=WATT + EPS)


# --- sub-watt targets -------------------------------------------------------


def test_sub_watt_target_with_ample_capacity_reports_no_unallocated_rest():
    result = split(10.0007, [bess("a", -100, 100), bess("b", -100, 100)])

    assert result.unallocated_kw == 0.0
    assert sum(a.p_kw for a in result.allocations) == pytest.approx(10.0007, abs=WATT)
