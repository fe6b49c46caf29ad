"""The history API's bucket arithmetic: the finest width within max_points,
and windows widened to whole buckets (the same on both backends)."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

from gridpilot.store.history import WIDTHS, bucket_edges, pick_width

T = datetime(2026, 12, 6, 10, 7, 30, tzinfo=UTC)


def test_pick_width_is_the_finest_that_keeps_a_series_within_max_points() -> None:
    assert pick_width(T, T + timedelta(hours=1), 500) == "1m"
    assert pick_width(T, T + timedelta(hours=3), 20) == "15m"  # 5m: 36 points
    assert pick_width(T, T + timedelta(days=30), 500) == "6h"
    assert pick_width(T, T + timedelta(days=400), 500) == "1d"
    assert pick_width(T, T + timedelta(days=3), 2) is None


def test_windows_widen_to_whole_buckets_aligned_like_date_bin() -> None:
    lo, hi = bucket_edges(T, T + timedelta(minutes=20), WIDTHS["15m"])
    assert (lo, hi) == (T.replace(minute=0, second=0), T.replace(minute=30, second=0))
    aligned = T.replace(minute=0, second=0)
    assert bucket_edges(aligned, aligned + timedelta(hours=1), WIDTHS["1h"]) == (
        aligned,
        aligned + timedelta(hours=1),
    )
    day = bucket_edges(T, T + timedelta(minutes=1), WIDTHS["1d"])
    assert day == (datetime(2026, 12, 6, tzinfo=UTC), datetime(2026, 12, 7, tzinfo=UTC))
