"""Prometheus view of the ingest path: queue, writer, rejections, edge buffers.

Read at scrape time from the objects that keep the numbers, so nothing on
the hot path touches a metrics library.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator

from prometheus_client import CollectorRegistry, Gauge
from prometheus_client.core import CounterMetricFamily, GaugeMetricFamily, Metric
from prometheus_client.registry import Collector

from .acks import TemporalAckSink
from .pipeline import TelemetryPipeline
from .servicer import AgentGatewayServicer
from .sessions import SessionRegistry


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
        servicer = self._servicer()
        if servicer is None:
            return
        yield CounterMetricFamily(
            "gridpilot_ingest_rejected_samples",
            "samples rejected at the gateway (unknown asset, non-finite, future ts), never stored",
            value=servicer.rejected_samples,
        )
        families: dict[str, CounterMetricFamily | GaugeMetricFamily] = {
            "dropped_batches": CounterMetricFamily(
                "gridpilot_edge_dropped_batches",
                "telemetry batches an agent dropped unsent (buffer full or too old), as reported",
                labels=["gateway_id"],
            ),
            "dropped_samples": CounterMetricFamily(
                "gridpilot_edge_dropped_samples",
                "telemetry samples an agent dropped unsent, as reported",
                labels=["gateway_id"],
            ),
            "buffered_batches": GaugeMetricFamily(
                "gridpilot_edge_buffered_batches",
                "telemetry batches waiting in an agent's buffer, as last reported",
                labels=["gateway_id"],
            ),
            "buffered_bytes": GaugeMetricFamily(
                "gridpilot_edge_buffered_bytes",
                "serialized bytes waiting in an agent's buffer, as last reported",
                labels=["gateway_id"],
            ),
        }
        for gateway_id, report in sorted(servicer.edge_reports.all().items()):
            for name, family in families.items():
                family.add_metric([gateway_id], getattr(report, name))
        yield from families.values()


def metrics_registry(
    sessions: SessionRegistry,
    pipeline: TelemetryPipeline,
    ingest: IngestCollector,
    acks: TemporalAckSink,
) -> CollectorRegistry:
    """The headend's /metrics: the ingest collector and the gauges of its sessions,
    telemetry writer and waiting acks."""
    reg = CollectorRegistry()
    reg.register(ingest)
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
