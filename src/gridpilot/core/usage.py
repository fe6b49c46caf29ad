"""Usage metering, the in-process half (pure): what this process counted per
tenant and hour since its last flush to ``usage_hourly`` (``store/usage.py``).

Counted where the work is accepted: a telemetry batch when its ack is sent
(after its commit: ``samples_ingested``, ``bytes_stored`` as the encoded row
bytes written, and its assets as active), an API call when the rate limiter
admits an authenticated request. Hours are UTC hours of receipt, so an hour
is final once every replica has flushed after it ended.
"""

from __future__ import annotations

from collections import defaultdict
from collections.abc import Iterable
from dataclasses import dataclass, field
from datetime import UTC, datetime
from enum import StrEnum

from .lifecycle import TERMINAL_VALUES


class Metric(StrEnum):
    SAMPLES_INGESTED = "samples_ingested"
    BYTES_STORED = "bytes_stored"
    API_CALLS = "api_calls"
    ACTIVE_ASSETS = "active_assets"  # distinct assets with accepted telemetry


# Dispatches that ended in the hour, one metric per end state.
DISPATCH_METRICS = {state: f"dispatches_{state}" for state in sorted(TERMINAL_VALUES)}
ALL_METRICS = (*(m.value for m in Metric), *DISPATCH_METRICS.values())


def hour_of(at: datetime) -> datetime:
    """The UTC hour ``at`` falls in."""
    return at.astimezone(UTC).replace(minute=0, second=0, microsecond=0)


@dataclass
class Drained:
    counters: dict[tuple[str, datetime, str], int] = field(default_factory=dict)
    assets: dict[tuple[str, datetime], set[str]] = field(default_factory=dict)

    @property
    def empty(self) -> bool:
        return not self.counters and not self.assets


class UsageMeter:
    def __init__(self) -> None:
        self._counters: defaultdict[tuple[str, datetime, str], int] = defaultdict(int)
        self._assets: defaultdict[tuple[str, datetime], set[str]] = defaultdict(set)

    def add(self, tenant: str, at: datetime, metric: Metric, n: int = 1) -> None:
        self._counters[tenant, hour_of(at), metric.value] += n

    def active(self, tenant: str, at: datetime, asset_ids: Iterable[str]) -> None:
        self._assets[tenant, hour_of(at)].update(asset_ids)

    def drain(self) -> Drained:
        out = Drained(dict(self._counters), {k: set(v) for k, v in self._assets.items()})
        self._counters.clear()
        self._assets.clear()
        return out

    def restore(self, drained: Drained) -> None:
        """Put back what a failed flush did not write (counted again next time)."""
        for key, n in drained.counters.items():
            self._counters[key] += n
        for hour_key, ids in drained.assets.items():
            self._assets[hour_key].update(ids)
