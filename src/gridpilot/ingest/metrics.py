"""Prometheus view of this process's ingest path: queue, writer, streams,
refused samples, waiting acks (docs/metrics.md lists every series).

Read at scrape time from the objects that keep the numbers, so nothing on
the hot path touches a metrics library. Figures every replica shares (the
fleet, edge buffers, dispatches) come from the database: ``ops.fleet_metrics``.
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Callable, Iterable, Iterator, Sequence
from typing import Any

from prometheus_client import CollectorRegistry, Gauge
from prometheus_client.core import (
    CounterMetricFamily,
    GaugeMetricFamily,
    HistogramMetricFamily,
    Metric,
)
from prometheus_client.registry import Collector

from .acks import TemporalAckSink
from .pipeline import TelemetryPipeline
from .servicer import AgentGatewayServicer
from .sessions import SessionRegistry


def histogram_family(
    name: str,
    doc: str,
    bounds: Sequence[float],
    cumulative: Sequence[int],
    count: int,
    total: float,
) -> HistogramMetricFamily:
    """A histogram from cumulative counts per upper bound, the count and the sum."""
    buckets = [(str(float(b)), float(n)) for b, n in zip(bounds, cumulative, strict=True)]
    return HistogramMetricFamily(
        name, doc, buckets=[*buckets, ("+Inf", float(count))], sum_value=total
    )


def labelled(
    family: CounterMetricFamily | GaugeMetricFamily,
    rows: Iterable[tuple[Sequence[str], float | None]],
) -> CounterMetricFamily | GaugeMetricFamily:
    """``family`` with a sample per row (labels, value); None: no sample."""
    for labels, value in rows:
        if value is not None:
            family.add_metric(list(labels), value)
    return family


# name, help, labels, the StreamCounts counter (keyed by site, or by (site, reason))
_STREAM_COUNTERS = (
    (
        "gridpilot_telemetry_batches_received",
        "telemetry batches received from agents on this replica",
        ("site",),
        "batches",
    ),
    (
        "gridpilot_telemetry_samples_received",
        "telemetry samples received from agents on this replica",
        ("site",),
        "samples",
    ),
    (
        "gridpilot_telemetry_samples_rejected",
        "samples refused at the gateway, never stored, by reason",
        ("site", "reason"),
        "rejected",
    ),
    (
        "gridpilot_agent_connects",
        "agent streams opened on this replica (Hello accepted)",
        ("site",),
        "connects",
    ),
    (
        "gridpilot_agent_disconnects",
        "agent streams ended on this replica, by end reason (core.sessions.EndReason)",
        ("site", "reason"),
        "disconnects",
    ),
)


class IngestCollector(Collector):
    def __init__(
        self,
        pipeline: TelemetryPipeline,
        servicer: Callable[[], AgentGatewayServicer | None],
    ) -> None:
        self._pipeline = pipeline
        self._servicer = servicer

    def collect(self) -> Iterator[Metric]:
        p = self._pipeline
        s = p.stats
        yield GaugeMetricFamily(
            "gridpilot_ingest_queue_bytes",
            "serialized bytes of telemetry held by the ingest pipeline (queued + being written)",
            value=p.queue.bytes,
        )
        yield GaugeMetricFamily(
            "gridpilot_ingest_queue_max_bytes",
            "the ingest queue's bound (GRIDPILOT_TELEMETRY_QUEUE_BYTES)",
            value=p.queue.max_bytes,
        )
        yield CounterMetricFamily(
            "gridpilot_ingest_write_errors",
            "failed telemetry write attempts (each retry counts)",
            value=s.write_errors,
        )
        yield CounterMetricFamily(
            "gridpilot_ingest_batches_refused",
            "telemetry batches the database refused (logged, never acked)",
            value=s.batches_refused,
        )
        yield CounterMetricFamily(
            "gridpilot_ingest_commits", "telemetry write transactions committed", value=s.commits
        )
        yield CounterMetricFamily(
            "gridpilot_telemetry_batches_written",
            "telemetry batches committed to the database (then acked)",
            value=s.batches_committed,
        )
        yield CounterMetricFamily(
            "gridpilot_telemetry_samples_written",
            "telemetry samples (rows) committed to the database",
            value=s.rows_written,
        )
        yield CounterMetricFamily(
            "gridpilot_telemetry_samples_duplicate",
            "telemetry samples dropped as already stored (re-sent batches)",
            value=s.rows_duplicate,
        )
        lag = s.commit_lag
        yield histogram_family(
            "gridpilot_telemetry_commit_lag_seconds",
            "per committed batch: commit time minus the device time of its newest sample",
            lag.bounds,
            lag.cumulative(),
            lag.count,
            lag.total,
        )
        servicer = self._servicer()
        if servicer is None:
            return
        yield CounterMetricFamily(
            "gridpilot_ingest_rejected_samples",
            "samples rejected at the gateway (unknown asset, non-finite, future ts), never stored",
            value=servicer.rejected_samples,
        )
        for name, doc, labels, attr in _STREAM_COUNTERS:
            counts: Counter[Any] = getattr(servicer.counts, attr)
            yield labelled(
                CounterMetricFamily(name, doc, labels=list(labels)),
                ((k if isinstance(k, tuple) else (k,), n) for k, n in sorted(counts.items())),
            )


def metrics_registry(
    sessions: SessionRegistry,
    pipeline: TelemetryPipeline,
    ingest: IngestCollector,
    acks: TemporalAckSink,
    *more: Collector,
) -> CollectorRegistry:
    """The headend's /metrics: the ingest collector, the gauges of its sessions,
    telemetry writer and waiting acks, and ``more`` collectors."""
    reg = CollectorRegistry()
    reg.register(ingest)
    for collector in more:
        reg.register(collector)
    Gauge("gridpilot_agents_connected", "agent streams on this headend", registry=reg).set_function(
        lambda: len(sessions.all())
    )
    Gauge("gridpilot_ingest_queue_batches", "telemetry batches waiting", registry=reg).set_function(
        lambda: pipeline.depth
    )
    Gauge("gridpilot_ingest_rows_written", "telemetry rows committed", registry=reg).set_function(
        lambda: pipeline.stats.rows_written
    )
    Gauge(
        "gridpilot_ingest_rows_duplicate", "telemetry rows dropped as duplicates", registry=reg
    ).set_function(lambda: pipeline.stats.rows_duplicate)
    Gauge(
        "gridpilot_ingest_db_available", "1 when the telemetry writer reaches the DB", registry=reg
    ).set_function(lambda: 1 if pipeline.stats.db_available else 0)
    Gauge(
        "gridpilot_dispatch_acks_waiting",
        "agent dispatch acks waiting for Temporal to answer",
        registry=reg,
    ).set_function(lambda: acks.waiting)
    Gauge(
        "gridpilot_dispatch_acks_dropped",
        "agent dispatch acks dropped while Temporal was down (the waiting queue was full)",
        registry=reg,
    ).set_function(lambda: acks.dropped)
    return reg
