"""Normalized telemetry sample checks (gridpilot.core.telemetry)."""

from __future__ import annotations

import math
from datetime import UTC, datetime, timedelta, timezone

import pytest

from gridpilot.core.telemetry import CORE_FIELDS, Sample, sample_problem

NOW = datetime(2025, 6, 1, 12, 0, 0, tzinfo=UTC)
SKEW = timedelta(seconds=60)


def good_sample(**overrides) -> Sample:
    fields = {
        "asset_id": "bess-1",
        "ts": NOW - timedelta(seconds=1),
        "p_kw": -12.5,
        "q_kvar": 0.3,
        "soc_pct": 55.0,
        "available_charge_kw": 40.0,
        "available_discharge_kw": 60.0,
        "voltage_v": 400.2,
        "frequency_hz": 50.01,
        "state": "running",
        "details": {"cell_temp_c": 25.1},
    }
    fields.update(overrides)
    return Sample(**fields)


def test_a_complete_good_sample_passes():
    assert sample_problem(good_sample(), NOW, SKEW) is None


def test_a_sample_with_only_id_and_timestamp_passes():
    assert sample_problem(Sample("pv-1", NOW), NOW, SKEW) is None


def test_an_old_sample_passes():
    assert sample_problem(good_sample(ts=NOW - timedelta(days=30)), NOW, SKEW) is None


def test_a_sample_exactly_at_the_future_skew_passes():
    assert sample_problem(good_sample(ts=NOW + SKEW), NOW, SKEW) is None


def test_a_sample_in_another_time_zone_is_compared_by_instant():
    plus_two = timezone(timedelta(hours=2))
    ts = (NOW + timedelta(seconds=30)).astimezone(plus_two)  # wall clock looks 2h ahead
    assert sample_problem(good_sample(ts=ts), NOW, SKEW) is None


def test_empty_asset_id_is_a_problem():
    assert sample_problem(good_sample(asset_id=""), NOW, SKEW) == "asset_id is empty"


def test_naive_timestamp_is_a_problem():
    problem = sample_problem(good_sample(ts=datetime(2025, 6, 1, 11, 59)), NOW, SKEW)
    assert problem is not None and "time zone" in problem


def test_far_future_timestamp_is_a_problem():
    problem = sample_problem(good_sample(ts=NOW + SKEW + timedelta(seconds=1)), NOW, SKEW)
    assert problem is not None and "future" in problem


@pytest.mark.parametrize("bad", [math.nan, math.inf, -math.inf], ids=["nan", "inf", "-inf"])
@pytest.mark.parametrize("name", CORE_FIELDS)
def test_non_finite_core_field_is_a_problem_naming_the_field(name, bad):
    problem = sample_problem(good_sample(**{name: bad}), NOW, SKEW)
    assert problem == f"{name} is not a finite number"


def test_core_fields_are_the_documented_unit_suffixed_names():
    assert CORE_FIELDS == (
        "p_kw",
        "q_kvar",
        "soc_pct",
        "available_charge_kw",
        "available_discharge_kw",
        "voltage_v",
        "frequency_hz",
    )
