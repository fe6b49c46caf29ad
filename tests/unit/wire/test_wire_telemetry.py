"""Protobuf samples as core Samples: same result as the generic conversion."""

from __future__ import annotations

import dataclasses
from datetime import UTC, datetime, timedelta

from gridpilot.core.telemetry import CORE_FIELDS, Sample, sample_problem
from gridpilot.wire.telemetry import sample_from_pb, sample_to_pb

TS = datetime(2026, 3, 1, 12, 0, 0, 123456, tzinfo=UTC)
SKEW = timedelta(minutes=5)


def test_sample_fields_are_in_the_order_the_decoder_fills_them() -> None:
    names = [f.name for f in dataclasses.fields(Sample)]
    assert names == ["asset_id", "ts", *CORE_FIELDS, "state", "details"]


def test_a_sample_survives_the_wire_unchanged() -> None:
    full = Sample(
        "bess-1",
        TS,
        **{name: float(i) - 2.5 for i, name in enumerate(CORE_FIELDS)},
        state="charging",
        details={"soh_pct": 98.5, "cells": [3.3, 3.31], "ok": True, "none": None, "n": {"a": "x"}},
    )
    assert sample_from_pb(sample_to_pb(full)) == full
    bare = Sample("pv-1", TS, p_kw=0.0)
    assert sample_from_pb(sample_to_pb(bare)) == bare  # absent stays absent, 0.0 stays 0.0


def test_what_postgres_cannot_store_is_a_problem_named_precisely() -> None:
    now = TS
    assert sample_problem(Sample("a", TS, soc_pct=float("inf")), now, SKEW) == (
        "soc_pct is not a finite number"
    )
    nan_detail = sample_from_pb(sample_to_pb(Sample("a", TS, details={"x": {"y": [1.0]}})))
    nan_detail.details["x"]["y"][0] = float("nan")
    assert "non-finite" in (sample_problem(nan_detail, now, SKEW) or "")
    assert "NUL" in (sample_problem(Sample("a", TS, details={"k\x00": 1.0}), now, SKEW) or "")
    assert sample_problem(Sample("a", TS + 2 * SKEW), now, SKEW) is not None
    assert sample_problem(Sample("a", TS, p_kw=1.0, details={"s": "fine"}), now, SKEW) is None
