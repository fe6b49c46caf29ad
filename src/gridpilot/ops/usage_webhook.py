"""Push each closed hour's usage to a webhook (billing): signed, retried,
at least once, with an idempotency key.

An hour is pushed once it is closed and every replica has flushed after its
end (``grace``); a tenant's hour is one POST of JSON::

    {"tenant_id": "default", "hour": "2026-12-06T20:00:00+00:00",
     "idempotency_key": "usage:default:2026-12-06T20:00:00+00:00",
     "usage": {"samples_ingested": 7200, "bytes_stored": 1234567, ...}}

with ``Idempotency-Key`` (the same key), ``X-GridPilot-Timestamp`` (unix
seconds) and ``X-GridPilot-Signature: sha256=<hex>``, the HMAC-SHA256 with
the shared secret of ``<timestamp>.<body>``. A 2xx answer marks the hour
pushed (``usage_pushes``); anything else, or no answer, is retried at the
next round. A crash between the answer and the mark pushes the hour again:
the receiver drops repeats by the key.
"""

from __future__ import annotations

import hashlib
import hmac
import json
from datetime import datetime, timedelta

import httpx
import structlog
from sqlalchemy.ext.asyncio import AsyncEngine

from gridpilot.core.usage import hour_of
from gridpilot.store import usage as store

log = structlog.get_logger(__name__)

LOOKBACK = timedelta(hours=48)  # older unpushed hours are left alone
TIMEOUT_S = 10.0


def signature(secret: str, timestamp: str, body: bytes) -> str:
    mac = hmac.new(secret.encode(), timestamp.encode() + b"." + body, hashlib.sha256)
    return "sha256=" + mac.hexdigest()


class UsageWebhook:
    def __init__(self, engine: AsyncEngine, url: str, secret: str, grace: timedelta) -> None:
        self._engine = engine
        self._url = url
        self._secret = secret
        self._grace = grace
        self._attempts: dict[tuple[str, datetime], int] = {}

    async def push_due(self, now: datetime) -> int:
        """POST every closed, unpushed hour; the number acknowledged."""
        due = await store.unpushed_hours(self._engine, now - LOOKBACK, hour_of(now - self._grace))
        done = 0
        async with httpx.AsyncClient(timeout=TIMEOUT_S) as client:
            for tenant, hour in due:
                key = (tenant, hour)
                self._attempts[key] = attempts = self._attempts.get(key, 0) + 1
                if await self._post(client, tenant, hour, now):
                    await store.mark_pushed(self._engine, tenant, hour, attempts)
                    self._attempts.pop(key, None)
                    done += 1
                else:
                    break  # in hour order: the receiver is down or refusing; next round
        return done

    async def _post(
        self, client: httpx.AsyncClient, tenant: str, hour: datetime, now: datetime
    ) -> bool:
        [row] = await store.read(self._engine, tenant, hour, hour + timedelta(hours=1)) or [{}]
        usage = {k: v for k, v in row.items() if k not in ("tenant_id", "hour")}
        key = f"usage:{tenant}:{hour.isoformat()}"
        body = json.dumps(
            {"tenant_id": tenant, "hour": hour.isoformat(), "idempotency_key": key, "usage": usage},
            sort_keys=True,
        ).encode()
        timestamp = str(int(now.timestamp()))
        headers = {
            "Content-Type": "application/json",
            "Idempotency-Key": key,
            "X-GridPilot-Timestamp": timestamp,
            "X-GridPilot-Signature": signature(self._secret, timestamp, body),
        }
        try:
            r = await client.post(self._url, content=body, headers=headers)
        except httpx.HTTPError as exc:
            log.warning("usage_push_failed", tenant=tenant, hour=hour.isoformat(), error=str(exc))
            return False
        if r.is_success:
            return True
        log.warning(
            "usage_push_refused", tenant=tenant, hour=hour.isoformat(), status=r.status_code
        )
        return False
