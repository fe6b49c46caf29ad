"""The pure parts behind /metrics: refused samples' reason labels, the
commit-lag histogram."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

import pytest

from gridpilot.core.telemetry import Sample, sample_problem
from gridpilot.ingest.edge_reports import REJECTION_REASONS, StreamCounts, rejection_reason
from gridpilot.ingest.histogram import Histogram

NOW = datetime(2026, 12, 6, tzinfo=UTC)


def _problem(**kw: object) -> str:
    fields: dict[str, object] = {"asset_id": "bess-1", "ts": NOW, **kw}
    problem = sample_problem(Sample(**fields), NOW, timedelta(minutes=5))  # type: ignore[arg-type]
    assert problem is not None
    return f"3: {problem}"


@pytest.mark.parametrize(
    ("text", "reason"),
    [
        ("0: asset 'x' is not one of this gateway's", "unknown_asset"),
        (lambda: _problem(ts=NOW + timedelta(hours=1)), "future_ts"),
        (lambda: _problem(p_kw=float("nan")), "non_finite"),
        (lambda: _problem(state="a\x00"), "invalid_text"),
        (lambda: _problem(asset_id=""), "invalid_text"),
        (lambda: _problem(details={"x": float("inf")}), "non_finite"),
        ("5000: over 5000 samples in one batch", "batch_too_large"),
        ("1: ts 99999999999s from the Unix epoch is out of range", "ts_out_of_range"),
        ("2: something new", "other"),
    ],
)
def test_each_rejection_text_maps_to_one_bounded_reason(text: object, reason: str) -> None:
    got = rejection_reason(text() if callable(text) else str(text))
    assert got == reason and got in REJECTION_REASONS


def test_stream_counts_tally_rejections_per_site_and_reason() -> None:
    counts = StreamCounts()
    counts.rejections("s1", ["0: p_kw is not a finite number", "1: q_kvar is not a finite number"])
    counts.rejections("s2", ["0: asset 'x' is not one of this gateway's"])
    assert counts.rejected == {("s1", "non_finite"): 2, ("s2", "unknown_asset"): 1}


def test_histogram_counts_each_value_in_its_bucket_cumulatively() -> None:
    h = Histogram([0.1, 1.0, 10.0])
    for v in (0.05, 0.1, 0.5, 5.0, 50.0):
        h.observe(v)
    assert h.cumulative() == [2, 3, 4]  # le=0.1 holds 0.1 itself
    assert (h.count, h.total) == (5, pytest.approx(55.65))
