"""What each agent says about its store-and-forward buffer (from Heartbeat).

Kept per gateway in this headend's memory for ``/metrics``; a growing drop
count is logged once per heartbeat that shows it, so "data is missing" has
an answer in the logs too.
"""

from __future__ import annotations

from dataclasses import dataclass

import structlog

from gridpilot.wire.messages import Heartbeat

log = structlog.get_logger(__name__)


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

    def all(self) -> dict[str, EdgeBufferReport]:
        return dict(self._by_gateway)
