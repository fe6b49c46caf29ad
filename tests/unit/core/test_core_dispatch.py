"""Dispatch commands: target resolution, bounds and limit checks (gridpilot.core.dispatch)."""

from __future__ import annotations

import math
from datetime import UTC, datetime, timedelta

import pytest

from gridpilot.core.assets import Asset, AssetType, PowerLimits
from gridpilot.core.dispatch import (
    BOTH_TARGETS_WARNING,
    MAX_START_AHEAD,
    DispatchKind,
    DurationBounds,
    Target,
    check_duration,
    check_limits,
    check_power,
    check_window,
    resolve_target,
)
from gridpilot.core.errors import DomainError, OutOfLimits, ValidationFailed

NOW = datetime(2025, 6, 1, 12, 0, 0, tzinfo=UTC)
BESS = Asset("bess-1", "site-1", AssetType.BESS, PowerLimits(-50.0, 100.0))
PV = Asset("pv-1", "site-1", AssetType.PV, PowerLimits(0.0, 80.0))


# --- target precedence ------------------------------------------------------------


def test_asset_id_alone_targets_the_asset_without_warning():
    assert resolve_target("bess-1", None) == (Target(DispatchKind.ASSET, "bess-1"), [])


def test_asset_id_wins_over_site_id_with_a_warning():
    target, warnings = resolve_target("bess-1", "site-1")

    assert target == Target(DispatchKind.ASSET, "bess-1")
    assert warnings == [BOTH_TARGETS_WARNING]
    assert "asset_id wins" in warnings[0]


def test_site_id_alone_targets_the_site_without_warning():
    assert resolve_target(None, "site-1") == (Target(DispatchKind.SITE, "site-1"), [])


def test_empty_asset_id_falls_back_to_site_id():
    assert resolve_target("", "site-1") == (Target(DispatchKind.SITE, "site-1"), [])


@pytest.mark.parametrize(("asset_id", "site_id"), [(None, None), ("", ""), ("", None), (None, "")])
def test_neither_target_is_a_validation_failure_naming_asset_id(asset_id, site_id):
    with pytest.raises(ValidationFailed) as exc:
        resolve_target(asset_id, site_id)

    assert exc.value.field == "asset_id"
    assert exc.value.code == "validation_failed"
    assert isinstance(exc.value, DomainError)


# --- check_power ------------------------------------------------------------------


@pytest.mark.parametrize("p_kw", [0.0, -0.0, 0, 5, -5, 12.345, -1e6, 1e-9])
def test_finite_numbers_pass_check_power(p_kw):
    check_power(p_kw)


@pytest.mark.parametrize(
    "p_kw",
    [math.nan, math.inf, -math.inf, True, False, "1.0", None, [1.0]],
    ids=["nan", "inf", "-inf", "true", "false", "str", "none", "list"],
)
def test_check_power_rejects_nan_inf_bool_and_non_numbers(p_kw):
    with pytest.raises(ValidationFailed) as exc:
        check_power(p_kw)

    assert exc.value.field == "p_kw"
    assert "finite" in exc.value.message


def test_check_power_names_the_given_field():
    with pytest.raises(ValidationFailed) as exc:
        check_power(math.nan, field="target_kw")

    assert exc.value.field == "target_kw"
    assert "target_kw" in exc.value.message


# --- check_duration ---------------------------------------------------------------


def test_default_duration_bounds_are_one_second_to_one_day():
    assert DurationBounds() == DurationBounds(min_s=1, max_s=86_400)


@pytest.mark.parametrize("duration_s", [1, 60, 86_400])
def test_duration_within_bounds_inclusive_passes(duration_s):
    check_duration(duration_s, DurationBounds())


@pytest.mark.parametrize("duration_s", [0, -1, 86_401, 10**9])
def test_duration_outside_bounds_is_refused_naming_duration_s(duration_s):
    with pytest.raises(ValidationFailed) as exc:
        check_duration(duration_s, DurationBounds())

    assert exc.value.field == "duration_s"
    assert "1" in exc.value.message and "86400" in exc.value.message


def test_custom_duration_bounds_are_honoured():
    bounds = DurationBounds(min_s=60, max_s=900)
    check_duration(60, bounds)
    check_duration(900, bounds)
    for bad in (59, 901):
        with pytest.raises(ValidationFailed):
            check_duration(bad, bounds)


# --- check_limits -----------------------------------------------------------------


@pytest.mark.parametrize("p_kw", [-50.0, -12.5, 0.0, 99.999, 100.0, 100])
def test_power_within_limits_inclusive_passes(p_kw):
    check_limits(p_kw, BESS)


@pytest.mark.parametrize("p_kw", [-50.001, 100.001, 1e9, -1e9])
def test_power_outside_limits_is_out_of_limits_on_field_p_kw(p_kw):
    with pytest.raises(OutOfLimits) as exc:
        check_limits(p_kw, BESS)

    assert exc.value.field == "p_kw"
    assert exc.value.code == "out_of_limits"
    assert "bess-1" in exc.value.message
    assert "-50.0" in exc.value.message and "100.0" in exc.value.message


def test_pv_cannot_be_dispatched_to_import():
    with pytest.raises(OutOfLimits):
        check_limits(-1.0, PV)


@pytest.mark.parametrize("p_kw", [math.nan, math.inf, -math.inf, True])
def test_check_limits_rejects_non_finite_power_as_validation_not_limits(p_kw):
    with pytest.raises(ValidationFailed) as exc:
        check_limits(p_kw, BESS)

    assert not isinstance(exc.value, OutOfLimits)
    assert exc.value.field == "p_kw"


# --- check_window -----------------------------------------------------------------


def test_window_without_start_starts_now():
    assert check_window(NOW, None, 600, None) == (NOW, NOW + timedelta(seconds=600))


def test_window_with_future_start_ends_duration_after_start():
    start = NOW + timedelta(hours=1)
    assert check_window(NOW, start, 60, None) == (start, start + timedelta(seconds=60))


def test_past_start_within_tolerance_is_accepted_as_given():
    start = NOW - timedelta(seconds=10)
    assert check_window(NOW, start, 60, None) == (start, start + timedelta(seconds=60))


def test_past_start_exactly_at_tolerance_is_accepted():
    start = NOW - timedelta(seconds=30)
    assert check_window(NOW, start, 60, None)[0] == start


def test_past_start_beyond_tolerance_is_refused_naming_start_at():
    with pytest.raises(ValidationFailed) as exc:
        check_window(NOW, NOW - timedelta(seconds=31), 60, None)

    assert exc.value.field == "start_at"


def test_start_up_to_max_ahead_is_accepted_beyond_it_refused_naming_start_at():
    assert check_window(NOW, NOW + MAX_START_AHEAD, 60, None)[0] == NOW + MAX_START_AHEAD
    with pytest.raises(ValidationFailed) as exc:
        check_window(NOW, NOW + MAX_START_AHEAD + timedelta(seconds=1), 60, None)

    assert exc.value.field == "start_at"


def test_past_start_tolerance_is_configurable():
    start = NOW - timedelta(seconds=10)
    with pytest.raises(ValidationFailed):
        check_window(NOW, start, 60, None, past_tolerance=timedelta(seconds=5))
    assert check_window(NOW, start, 60, None, past_tolerance=timedelta(minutes=1))[0] == start


def test_deliver_by_between_now_and_end_is_accepted():
    start, end = check_window(NOW, None, 600, NOW + timedelta(seconds=30))
    assert (start, end) == (NOW, NOW + timedelta(seconds=600))


def test_deliver_by_exactly_at_the_end_is_accepted():
    check_window(NOW, None, 600, NOW + timedelta(seconds=600))


@pytest.mark.parametrize("offset_s", [0, -1, -3600])
def test_deliver_by_now_or_in_the_past_is_refused(offset_s):
    with pytest.raises(ValidationFailed, match="past") as exc:
        check_window(NOW, None, 600, NOW + timedelta(seconds=offset_s))

    assert exc.value.field == "deliver_by"


def test_deliver_by_after_the_dispatch_ends_is_refused():
    with pytest.raises(ValidationFailed, match="after") as exc:
        check_window(NOW, None, 600, NOW + timedelta(seconds=601))

    assert exc.value.field == "deliver_by"


def test_deliver_by_is_measured_against_the_end_of_a_future_start():
    start = NOW + timedelta(hours=1)
    # ends at start + 10 min; a deadline before that end is fine, after it is not
    check_window(NOW, start, 600, start + timedelta(seconds=600))
    with pytest.raises(ValidationFailed):
        check_window(NOW, start, 600, start + timedelta(seconds=601))
