"""Telemetry model v1: the field catalogue, build_sample, and the docs."""

from __future__ import annotations

import math
from datetime import UTC, datetime
from pathlib import Path

from gridpilot.core.assets import AssetType
from gridpilot.core.telemetry import CORE_FIELDS, build_sample
from gridpilot.core.telemetry_fields import BY_NAME, FIELDS, Quality, field_for, mappable_fields

DOC = Path(__file__).parents[3] / "docs" / "telemetry-model.md"
TS = datetime(2026, 1, 1, tzinfo=UTC)


def test_catalogue_core_is_the_sample_core_and_names_are_unique() -> None:
    assert [f.name for f in FIELDS if f.core] == [*CORE_FIELDS, "state"]
    assert len(BY_NAME) == len(FIELDS)


def test_type_specific_fields_belong_to_their_types_only() -> None:
    assert field_for("soc_pct", AssetType.PV) is not None  # core: every type
    assert field_for("soh_pct", AssetType.BESS) is not None
    assert field_for("soh_pct", AssetType.PV) is None
    assert field_for("wind_speed_m_s", AssetType.WIND) is not None
    assert field_for("session_state", AssetType.EV_CHARGER) is not None
    assert "quality" not in mappable_fields(AssetType.BESS)
    assert "irradiance_w_m2" in mappable_fields(AssetType.PV)


def test_build_sample_splits_core_and_details_and_keeps_only_marks_that_are_not_good() -> None:
    s = build_sample(
        "a",
        TS,
        {"p_kw": 3, "state": "charging", "soh_pct": 97.5, "x_vendor": "on", "q_kvar": None},
        {"p_kw": Quality.GOOD, "soh_pct": "stale", "voltage_v": Quality.BAD},
    )
    assert (s.p_kw, s.q_kvar, s.state) == (3.0, None, "charging")
    assert s.details == {
        "soh_pct": 97.5,
        "x_vendor": "on",
        "quality": {"soh_pct": "stale", "voltage_v": "bad"},
    }


def test_non_finite_or_non_numeric_core_values_are_dropped_and_marked_bad() -> None:
    s = build_sample("a", TS, {"p_kw": math.nan, "soc_pct": "full", "voltage_v": 230})
    assert (s.p_kw, s.soc_pct, s.voltage_v) == (None, None, 230.0)
    assert s.details == {"quality": {"p_kw": "bad", "soc_pct": "bad"}}


def test_the_doc_lists_every_field_with_its_unit() -> None:
    text = DOC.read_text()
    for f in FIELDS:
        assert f"| `{f.name}` | {f.unit or '–'} |" in text, f.name


def test_the_doc_lists_every_sunspec_source() -> None:
    from gridpilot.edge_agent.adapters.sunspec.mapping import SOURCES

    text = DOC.read_text()
    for name, sources in SOURCES.items():
        rows = [li for li in text.splitlines() if li.startswith(f"| `{name}` | ")]
        line = next(li for li in rows if "`" in li.split("|")[2])  # the SunSpec table's row
        for _models, point, _factor in sources:
            assert f"`{point}`" in line, (name, point)
