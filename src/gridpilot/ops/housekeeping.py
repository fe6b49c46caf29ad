"""The headend's periodic chores that are not a request's: the audit head's
log line, usage metering (flush, dispatch outcomes, the webhook) and
telemetry retention."""

from __future__ import annotations

import asyncio
from datetime import UTC, datetime, timedelta

import structlog
from sqlalchemy.ext.asyncio import AsyncEngine

from gridpilot.core.usage import UsageMeter
from gridpilot.security.audit import AuditLog
from gridpilot.store import retention as store_retention
from gridpilot.store import usage as store_usage

from .credentials import usage_webhook
from .settings import Settings
from .usage_webhook import UsageWebhook

log = structlog.get_logger(__name__)

# Dispatch outcomes are recomputed for the hours this far back.
OUTCOME_WINDOW = timedelta(hours=2)


async def audit_head_log(audit: AuditLog, every_s: float) -> None:
    """Log the audit chain's head when it moved, so a copy lives outside the
    database: ``gridpilot audit verify --expect-head ID:HASH`` then finds
    newest rows removed (which leaves a shorter chain that verifies)."""
    last: tuple[int, str] | None = None
    while True:
        try:
            head = await audit.head()
            if head is not None and head != last:
                log.info("audit_head", head=f"{head[0]}:{head[1]}", id=head[0])
                last = head
        except Exception as exc:
            log.warning("audit_head_failed", error=str(exc))
        await asyncio.sleep(every_s)


async def flush_usage(
    engine: AsyncEngine, meter: UsageMeter, webhook: UsageWebhook | None = None
) -> None:
    """Write what this process counted (kept for the next try if the database
    is down), recompute the recent hours' dispatch outcomes, push closed hours."""
    now = datetime.now(UTC)
    drained = meter.drain()
    try:
        await store_usage.flush(engine, drained)
    except Exception:
        meter.restore(drained)
        raise
    await store_usage.recompute_dispatches(engine, now - OUTCOME_WINDOW, now)
    if webhook is not None:
        await webhook.push_due(now)


async def usage_loop(
    engine: AsyncEngine, meter: UsageMeter, every_s: float, webhook: UsageWebhook | None
) -> None:
    while True:
        await asyncio.sleep(every_s)
        try:
            await flush_usage(engine, meter, webhook)
        except Exception as exc:
            log.warning("usage_flush_failed", error=str(exc))


async def retention_loop(engine: AsyncEngine, every_s: float) -> None:
    """Each tenant's telemetry retention (none while it is on legal hold)."""
    while True:
        try:
            await store_retention.enforce_telemetry(engine, datetime.now(UTC))
        except Exception as exc:
            log.warning("telemetry_retention_failed", error=str(exc))
        await asyncio.sleep(every_s)


async def chores(settings: Settings, engine: AsyncEngine, meter: UsageMeter) -> None:
    """Usage metering and retention, until cancelled."""
    s = settings
    await asyncio.gather(
        usage_loop(engine, meter, s.usage_flush_s, usage_webhook(s, engine)),
        retention_loop(engine, s.retention_check_s),
    )
