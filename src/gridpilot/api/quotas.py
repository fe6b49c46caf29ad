"""Rate limits on REST requests (``core/quotas.py`` keeps the buckets), and the
count of API calls for usage metering (``core/usage.py``).

An ASGI middleware inside authentication, so it knows the principal: every
authenticated request takes one token from its API token's bucket
(``api_requests_per_s``, under its tenant's limits); the public enrollment
routes, which have no principal, take one from the client address's bucket
(``enroll_requests_per_min``). Over a limit: 429 with ``Retry-After`` and a
JSON body naming the limit, before the route runs. Every authenticated
request counts as an API call of its tenant (refused ones too: they were
made). A dispatch submit also
takes one from its tenant's ``dispatch_submits_per_min`` (:func:`submit`).
"""

from __future__ import annotations

from datetime import UTC, datetime

from fastapi import Request
from starlette.types import ASGIApp, Receive, Scope, Send

from gridpilot.core.quotas import Limit, Quotas
from gridpilot.core.usage import Metric, UsageMeter
from gridpilot.schema.tables import DEFAULT_TENANT

from .auth import match_rule, principal_of
from .errors import quota_response
from .tenant import caller_tenant, tenant_of

# Public routes a gateway calls without a bearer token (api/onboarding.py).
ENROLL_ROUTES = frozenset({"/api/v1/enroll/describe", "/api/v1/enroll", "/api/v1/enroll/renew"})


class RateLimit:
    def __init__(self, app: ASGIApp, quotas: Quotas | None, usage: UsageMeter | None) -> None:
        self.app = app
        self._quotas = quotas
        self._usage = usage

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        principal = principal_of(_State(scope.get("state", {})))
        if self._usage is not None and principal.authenticated:
            self._usage.add(tenant_of(principal), datetime.now(UTC), Metric.API_CALLS)
        quotas = self._quotas
        if quotas is None:
            await self.app(scope, receive, send)
            return
        template = match_rule(scope["method"], scope["path"])
        if template in ENROLL_ROUTES:
            client = scope.get("client")
            peer = client[0] if client else "unknown"
            limit, tenant, key, what = Limit.ENROLL_REQUESTS_PER_MIN, DEFAULT_TENANT, peer, peer
        elif principal.authenticated:
            tenant = tenant_of(principal)
            key = principal.token_id or principal.name
            limit, what = Limit.API_REQUESTS_PER_S, principal.name
        else:
            await self.app(scope, receive, send)
            return
        wait = quotas.rate(limit, tenant, key)
        if wait > 0:
            response = quota_response(quotas.refuse(limit, tenant, what, wait))
            await response(scope, receive, send)
            return
        await self.app(scope, receive, send)


class _State:
    """``scope["state"]`` as the attributes ``principal_of`` reads."""

    def __init__(self, state: dict[str, object]) -> None:
        self.principal = state.get("principal")


def submit(request: Request) -> None:
    """Take one dispatch submit from the caller's tenant; QuotaExceeded (429) when over."""
    quotas: Quotas | None = request.app.state.deps.quotas
    if quotas is None:
        return
    tenant = caller_tenant(request)
    wait = quotas.rate(Limit.DISPATCH_SUBMITS_PER_MIN, tenant, tenant)
    if wait > 0:
        raise quotas.refuse(Limit.DISPATCH_SUBMITS_PER_MIN, tenant, f"tenant {tenant}", wait)
