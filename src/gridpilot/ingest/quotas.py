"""Quotas (and usage metering) on the AgentGateway (``core/quotas.py``, ``core/usage.py``).

- ``telemetry_samples_per_s`` per gateway: a batch over it waits (the stream
  is not read meanwhile: gRPC flow control) when the bucket refills within
  ``MAX_THROTTLE_S``; otherwise it is refused *before* it is queued, so it is
  never acked: the stream ends with RESOURCE_EXHAUSTED naming the limit, and
  the agent, which deletes a batch only on its ack, sends it again on its
  next session. No accepted sample is ever dropped.
- ``max_gateways`` and ``max_assets`` per tenant: a Hello that would register
  more is refused with RESOURCE_EXHAUSTED (counted from the database, so
  across replicas; two Hellos racing for the last slot may both pass).
"""

from __future__ import annotations

import asyncio
from collections.abc import Collection, Iterator
from datetime import datetime

import structlog
from prometheus_client.core import CounterMetricFamily, Metric
from sqlalchemy import func, select
from sqlalchemy.ext.asyncio import AsyncEngine

from gridpilot.core.quotas import Limit, QuotaExceeded, Quotas
from gridpilot.core.usage import Metric as UsageMetric
from gridpilot.core.usage import UsageMeter
from gridpilot.schema import tables as t

from .copyrows import CopyRows
from .sessions import AgentSession

log = structlog.get_logger(__name__)

MAX_THROTTLE_S = 2.0


async def admit_telemetry(quotas: Quotas | None, session: AgentSession, samples: int) -> bool:
    """True when the batch may be queued (maybe after a short wait); False when
    it is refused, with ``session.end_detail`` saying why."""
    if quotas is None or samples == 0:
        return True
    limit, gateway = Limit.TELEMETRY_SAMPLES_PER_S, session.gateway_id
    tenant = session.tenant_id
    wait = quotas.rate(limit, tenant, gateway, samples)
    if 0 < wait <= MAX_THROTTLE_S:
        quotas.throttled_s[limit.value, tenant] += wait
        await asyncio.sleep(wait)
        wait = quotas.rate(limit, tenant, gateway, samples)
    if wait == 0:
        return True
    refused = quotas.refuse(limit, tenant, f"gateway {gateway}", wait)
    session.end_detail = refused.message + " (the batch was not acked: resend it)"
    log.warning(
        "telemetry_quota_exceeded", gateway=gateway, samples=samples, retry_after_s=round(wait, 1)
    )
    return False


def meter_batch(meter: UsageMeter, tenant: str, received: datetime, rows: CopyRows) -> None:
    """Usage of a committed batch (of a gateway of ``tenant``): its rows, their
    bytes as written, its assets."""
    meter.add(tenant, received, UsageMetric.SAMPLES_INGESTED, rows.count)
    meter.add(tenant, received, UsageMetric.BYTES_STORED, len(rows.payload))
    meter.active(tenant, received, rows.latest)


async def check_registration(
    quotas: Quotas | None,
    engine: AsyncEngine,
    tenant: str,
    gateway_id: str,
    asset_ids: Collection[str],
) -> QuotaExceeded | None:
    """The refusal of a Hello of a gateway of ``tenant`` that would take it
    over max_gateways or max_assets, else None."""
    if quotas is None:
        return None
    limits = quotas.limits(tenant)
    if limits.max_gateways <= 0 and limits.max_assets <= 0:
        return None
    g, a = t.gateways, t.assets
    async with engine.connect() as conn:
        gateways = await conn.scalar(
            select(func.count()).where(g.c.tenant_id == tenant, g.c.id != gateway_id)
        )
        others = await conn.scalar(
            select(func.count()).where(a.c.tenant_id == tenant, a.c.id.not_in(list(asset_ids)))
        )
    return quotas.check_count(Limit.MAX_GATEWAYS, tenant, int(gateways or 0) + 1) or (
        quotas.check_count(Limit.MAX_ASSETS, tenant, int(others or 0) + len(asset_ids))
    )


class QuotaCollector:
    """/metrics: what this process refused or slowed down, by limit and tenant."""

    def __init__(self, quotas: Quotas) -> None:
        self._quotas = quotas

    def collect(self) -> Iterator[Metric]:
        refused = CounterMetricFamily(
            "gridpilot_quota_exceeded",
            "requests, submits, telemetry batches and Hellos refused over a quota on this replica",
            labels=["limit", "tenant"],
        )
        for (limit, tenant), n in sorted(self._quotas.refused.items()):
            refused.add_metric([limit, tenant], n)
        yield refused
        slowed = CounterMetricFamily(
            "gridpilot_quota_throttled_seconds",
            "seconds agent streams were held back (not read) to keep under telemetry_samples_per_s",
            labels=["limit", "tenant"],
        )
        for (limit, tenant), s in sorted(self._quotas.throttled_s.items()):
            slowed.add_metric([limit, tenant], s)
        yield slowed
