"""Shared adapter pieces: normalization, backoff, the push-value cache, and
SunSpec decoding/mapping from pysunspec2 model definitions (offline)."""

from __future__ import annotations

import random
import time

from gp_testing.sunspec_image import model_registers

from gridpilot.core.assets import AssetType
from gridpilot.core.telemetry_fields import Quality
from gridpilot.edge_agent.adapters.common import Backoff, ValueCache, normalize, raw_for
from gridpilot.edge_agent.adapters.sunspec.mapping import bind
from gridpilot.edge_agent.adapters.sunspec.models import (
    FoundModel,
    model_def,
    raw_value,
    scaled_value,
)
from gridpilot.edge_agent.config import MqttPoint


def point(**kw: object) -> MqttPoint:
    return MqttPoint.model_validate({"field": "p_kw", "topic": "t", **kw})


def test_normalize_scales_maps_enums_and_passes_bools_and_text() -> None:
    assert normalize(point(scale=0.1, offset=-1), 125) == (11.5, Quality.GOOD)
    assert normalize(point(scale=0.1), 3) == (0.3, Quality.GOOD)  # no binary noise
    assert normalize(point(), 2**63 + 1) == (2**63 + 1, Quality.GOOD)  # counters stay exact
    assert normalize(point(enum={3: "charging"}), 3) == ("charging", Quality.GOOD)
    assert normalize(point(enum={3: "charging"}), 4) == (4, Quality.GOOD)
    assert normalize(point(scale=2), True) == (True, Quality.GOOD)
    assert normalize(point(), "Charging") == ("Charging", Quality.GOOD)
    assert normalize(point(), float("nan")) == (None, Quality.BAD)
    assert normalize(point(), None) == (None, Quality.BAD)
    assert raw_for(point(scale=-0.001, offset=1), -6.4) == 7400.0


def test_backoff_grows_to_its_cap_and_resets() -> None:
    b = Backoff(0.5, 4.0, jitter=0.0, rng=random.Random(1))
    assert [b.next_delay() for _ in range(5)] == [0.5, 1.0, 2.0, 4.0, 4.0]
    b.reset()
    assert b.next_delay() == 0.5
    jittered = Backoff(1.0, 10.0, rng=random.Random(2)).next_delay()
    assert 0.8 <= jittered <= 1.2


def test_value_cache_marks_old_values_and_all_values_of_a_lost_link_stale() -> None:
    cache = ValueCache(stale_after_s=60)
    cache.put("p_kw", 1.0)
    cache.put("voltage_v", None, Quality.BAD)
    assert cache.snapshot(link_up=True)[1] == {"p_kw": Quality.GOOD, "voltage_v": Quality.BAD}
    assert cache.snapshot(link_up=False)[1]["p_kw"] == Quality.STALE
    entry = cache.get("p_kw")
    assert entry is not None
    entry.at = time.monotonic() - 61
    assert cache.snapshot(link_up=True)[1]["p_kw"] == Quality.STALE


def test_sunspec_points_decode_with_scale_factors_and_unimplemented_values() -> None:
    regs = model_registers(103, {"W": 4200, "W_SF": -1, "Hz": 5001, "Hz_SF": -2})
    d = model_def(103)
    assert d is not None and d.name == "inverter_three_phase"
    assert scaled_value(d, d.points["W"], regs) == 420.0
    assert scaled_value(d, d.points["Hz"], regs) == 50.01
    assert raw_value(d.points["TmpCab"], regs) is None  # 0x8000: not implemented
    assert scaled_value(d, d.points["VA"], regs) is None  # its VA_SF is not implemented either
    assert model_def(64999) is None


def test_sunspec_binding_prefers_7xx_models_and_respects_the_asset_type() -> None:
    found = [
        FoundModel(1, 40002, 66),
        FoundModel(103, 40070, 50),
        FoundModel(701, 40122, 153),
        FoundModel(802, 40277, 62),
    ]
    bess = {b.field: b.source for b in bind(found, AssetType.BESS)}
    assert bess["p_kw"] == "701.W" and bess["soc_pct"] == "802.SoC"
    assert bess["state"] == "701.InvSt"
    pv = {b.field: b.source for b in bind(found[:2], AssetType.PV)}
    assert pv["p_kw"] == "103.W" and pv["dc_power_kw"] == "103.DCW"
    assert "soh_pct" not in {b.field for b in bind(found, AssetType.PV)}
