"""A histogram kept by plain counting (no metrics library on the hot path);
``/metrics`` reads it at scrape time."""

from __future__ import annotations

from bisect import bisect_left
from collections.abc import Sequence

# Upper bounds (s) of the sample-to-commit lag histogram.
LAG_BUCKETS = (0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0, 60.0, 300.0, 3600.0)


class Histogram:
    def __init__(self, bounds: Sequence[float]) -> None:
        self.bounds = tuple(bounds)
        self._counts = [0] * len(self.bounds)
        self.count = 0
        self.total = 0.0

    def observe(self, value: float) -> None:
        self.count += 1
        self.total += value
        i = bisect_left(self.bounds, value)
        if i < len(self._counts):
            self._counts[i] += 1

    def cumulative(self) -> list[int]:
        """Counts of observations <= each bound (Prometheus's ``le`` buckets)."""
        out, running = [], 0
        for n in self._counts:
            running += n
            out.append(running)
        return out
