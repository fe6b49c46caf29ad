"""The fleet's figures on /metrics, read from the database at scrape time.

Every API replica serves the same values (the database's), whichever
replica holds an agent's stream or ran a dispatch's worker: aggregate them
with ``max``, not ``sum``. Counters (dispatch outcomes, late acks) and the
latency histograms cover what was created since this process started, so
they start at zero like any counter and each scrape's query stays bounded.
Also here: whether the database and Temporal answer, and when the
configured certificates expire.
"""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import Awaitable, Callable, Iterator, Mapping
from datetime import UTC, datetime
from pathlib import Path

import structlog
from prometheus_client.core import CounterMetricFamily, GaugeMetricFamily, Metric
from prometheus_client.registry import Collector
from sqlalchemy.ext.asyncio import AsyncEngine

from gridpilot.core.lifecycle import DispatchState
from gridpilot.ingest.metrics import histogram_family, labelled
from gridpilot.security.tls import certificate_expiry
from gridpilot.store import fleet

log = structlog.get_logger(__name__)

SCRAPE_TIMEOUT_S = 5.0


class FleetCollector(Collector):
    def __init__(
        self,
        engine: AsyncEngine,
        temporal_probe: Callable[[], Awaitable[str]] | None = None,
        certificates: Mapping[str, Path | None] | None = None,
        started_at: datetime | None = None,
    ) -> None:
        self._engine = engine
        self._probe = temporal_probe
        self._certificates = {k: v for k, v in (certificates or {}).items() if v is not None}
        self.started_at = started_at or datetime.now(UTC)
        self._metrics: list[Metric] = []

    async def refresh(self) -> None:
        """Read the figures (called by /metrics before it renders)."""
        out: list[Metric] = []
        db_up = 1
        try:
            async with asyncio.timeout(SCRAPE_TIMEOUT_S):
                out += await self._database()
        except Exception as exc:
            db_up = 0
            log.debug("metrics_database_unavailable", error=str(exc))
        out.append(
            GaugeMetricFamily(
                "gridpilot_database_up", "1 when this process's database queries answer", db_up
            )
        )
        if self._probe is not None:
            state = await self._probe()
            out.append(
                GaugeMetricFamily(
                    "gridpilot_temporal_up",
                    "1 when the Temporal frontend answers a cheap call within 2 s",
                    1 if state == "ok" else 0,
                )
            )
        expiry = GaugeMetricFamily(
            "gridpilot_certificate_expiry_timestamp_seconds",
            "when a configured certificate expires (Unix time; the soonest of its file)",
            labels=["certificate"],
        )
        for name, path in sorted(self._certificates.items()):
            with contextlib.suppress(OSError, ValueError):
                expiry.add_metric([name], certificate_expiry(path).timestamp())
        out.append(expiry)
        self._metrics = out

    def collect(self) -> Iterator[Metric]:
        yield from self._metrics

    async def _database(self) -> list[Metric]:
        async with self._engine.connect() as conn:
            now = await fleet.database_now(conn)
            sites = await fleet.sites(conn)
            agents = await fleet.agents(conn, history=False)
            outcomes = await fleet.dispatch_outcomes(conn, self.started_at)
            sent = await fleet.dispatch_latencies(conn, self.started_at, DispatchState.SENT)
            active = await fleet.dispatch_latencies(conn, self.started_at, DispatchState.ACTIVE)
            unapplied = await fleet.oldest_unapplied(conn, now)
            late = await fleet.late_acks(conn, self.started_at)
        per_site = (
            ("agents_connected", "live agent sessions of the site (all replicas)"),
            ("assets", "assets of the site (not held for approval)"),
            (
                "newest_sample_age_seconds",
                "database time minus the device time of the site's newest stored sample",
            ),
        )
        figures = {
            s.site_id: {
                "agents_connected": s.agents_connected,
                "assets": s.assets,
                "newest_sample_age_seconds": None
                if s.newest_sample_at is None
                else (now - s.newest_sample_at).total_seconds(),
            }
            for s in sites
        }
        out: list[Metric] = [
            labelled(
                GaugeMetricFamily(f"gridpilot_site_{key}", doc, labels=["site"]),
                (((site,), value[key]) for site, value in figures.items()),
            )
            for key, doc in per_site
        ]
        out += [
            labelled(
                GaugeMetricFamily(
                    "gridpilot_gateway_connected",
                    "1 while the gateway's agent has a live session (on any replica)",
                    labels=["gateway_id", "site"],
                ),
                (((a["gateway_id"], a["site_id"]), int(a["connected"])) for a in agents),
            ),
            labelled(
                GaugeMetricFamily(
                    "gridpilot_gateway_last_seen_age_seconds",
                    "seconds since the gateway's agent last sent anything (hello or heartbeat)",
                    labels=["gateway_id", "site"],
                ),
                (
                    ((a["gateway_id"], a["site_id"]), (now - a["last_seen"]).total_seconds())
                    for a in agents
                ),
            ),
        ]
        edge = (
            (
                GaugeMetricFamily,
                "buffered_batches",
                "telemetry batches waiting in the agent's buffer",
            ),
            (GaugeMetricFamily, "buffered_bytes", "serialized bytes waiting in the agent's buffer"),
            (CounterMetricFamily, "dropped_batches", "batches the agent dropped unsent"),
            (CounterMetricFamily, "dropped_samples", "samples the agent dropped unsent"),
        )
        for kind, field, doc in edge:
            out.append(
                labelled(
                    kind(
                        f"gridpilot_edge_{field}",
                        f"{doc}, as its last heartbeat reported",
                        labels=["gateway_id", "site"],
                    ),
                    (((a["gateway_id"], a["site_id"]), a[field]) for a in agents),
                )
            )
        out.append(
            labelled(
                CounterMetricFamily(
                    "gridpilot_dispatches_finished",
                    "dispatches (created since this process started) that ended, by end state "
                    "and reason code (none: complete)",
                    labels=["state", "reason"],
                ),
                (((state, reason or "none"), n) for state, reason, n in outcomes),
            )
        )
        for name, lat, what in (
            ("submit_to_sent", sent, "written onto the agent's stream"),
            ("submit_to_active", active, "applied at the device"),
        ):
            out.append(
                histogram_family(
                    f"gridpilot_dispatch_{name}_seconds",
                    f"asset dispatches from submit until {what}",
                    fleet.LATENCY_BUCKETS,
                    lat.buckets,
                    lat.count,
                    lat.total_s,
                )
            )
        out.append(
            labelled(
                GaugeMetricFamily(
                    "gridpilot_dispatch_oldest_unapplied_seconds",
                    "seconds past its start of the oldest asset dispatch still in this state "
                    "(0: none)",
                    labels=["state"],
                ),
                (((state,), s) for state, s in unapplied.items()),
            )
        )
        out.append(
            CounterMetricFamily(
                "gridpilot_dispatch_acks_late",
                "agent acks that came after their dispatch had ended (recorded, not applied)",
                value=late,
            )
        )
        return out
