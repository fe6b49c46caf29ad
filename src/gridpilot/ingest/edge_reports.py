"""What each agent's stream tells about the data on its way: its buffer
(from Heartbeat), the samples refused at the gateway and why, and this
replica's counts of streams and samples per site for ``/metrics``.

A growing drop count is logged once per heartbeat that shows it, so "data
is missing" has an answer in the logs too. The buffer figures and refused
samples go to the gateway's row with each heartbeat (``GatewayStore.touch``)
for every replica's /metrics and ``gridpilot doctor``.
"""

from __future__ import annotations

from collections import Counter
from dataclasses import dataclass

import structlog

from gridpilot.wire.messages import Heartbeat

log = structlog.get_logger(__name__)

# A refused sample's reason, as a bounded label (the text says more).
REJECTION_REASONS = (
    "unknown_asset",
    "future_ts",
    "ts_out_of_range",
    "non_finite",
    "invalid_text",
    "batch_too_large",
    "other",
)
_REASON_BY_PHRASE = (
    ("is not one of this gateway's", "unknown_asset"),
    ("in the future", "future_ts"),
    ("out of range", "ts_out_of_range"),
    ("no time zone", "ts_out_of_range"),
    ("not a finite number", "non_finite"),
    ("non-finite", "non_finite"),
    ("NUL character", "invalid_text"),
    ("asset_id is empty", "invalid_text"),
    ("samples in one batch", "batch_too_large"),
)


def rejection_reason(text: str) -> str:
    """The label of a rejection ("index: why", as sent in TelemetryAck)."""
    for phrase, reason in _REASON_BY_PHRASE:
        if phrase in text:
            return reason
    return "other"


@dataclass(frozen=True, slots=True)
class EdgeBufferReport:
    dropped_batches: int
    dropped_samples: int
    buffered_batches: int
    buffered_bytes: int


class EdgeBufferReports:
    def __init__(self) -> None:
        self._by_gateway: dict[str, EdgeBufferReport] = {}

    def update(self, gateway_id: str, hb: Heartbeat) -> EdgeBufferReport:
        report = EdgeBufferReport(
            dropped_batches=hb.dropped_batches,
            dropped_samples=hb.dropped_samples,
            buffered_batches=hb.buffered_batches,
            buffered_bytes=hb.buffered_bytes,
        )
        before = self._by_gateway.get(gateway_id)
        self._by_gateway[gateway_id] = report
        if report.dropped_batches > (before.dropped_batches if before else 0):
            log.warning(
                "edge_telemetry_dropped",
                gateway=gateway_id,
                dropped_batches=report.dropped_batches,
                dropped_samples=report.dropped_samples,
                buffered_batches=report.buffered_batches,
            )
        return report

    def get(self, gateway_id: str) -> EdgeBufferReport | None:
        return self._by_gateway.get(gateway_id)


class StreamCounts:
    """This replica's streams and samples per site (``_total`` counters)."""

    def __init__(self) -> None:
        self.batches: Counter[str] = Counter()  # site
        self.samples: Counter[str] = Counter()  # site
        self.rejected: Counter[tuple[str, str]] = Counter()  # site, reason
        self.connects: Counter[str] = Counter()  # site
        self.disconnects: Counter[tuple[str, str]] = Counter()  # site, end reason

    def rejections(self, site_id: str, rejections: list[str]) -> None:
        for text in rejections:
            self.rejected[site_id, rejection_reason(text)] += 1
