"""Quotas and rate limits per tenant (pure: the clock is an argument).

Rates are token buckets: a bucket holds up to ``burst`` tokens, refills at
the limit's rate, and a request takes its size in tokens. An empty bucket
answers how long until it would have them (the ``Retry-After``). Rates are
kept in each process's memory (per replica); the counts (assets, gateways)
are the database's, so they hold across replicas. 0 turns a limit off.
"""

from __future__ import annotations

import time
from collections import Counter, OrderedDict, defaultdict
from collections.abc import Callable, Mapping
from dataclasses import dataclass, fields
from enum import StrEnum

from .errors import DomainError

Clock = Callable[[], float]
MAX_KEYS = 10_000  # buckets kept per limit (the least recently used go first)


class Limit(StrEnum):
    API_REQUESTS_PER_S = "api_requests_per_s"  # per API token (or OIDC subject)
    DISPATCH_SUBMITS_PER_MIN = "dispatch_submits_per_min"  # per tenant
    TELEMETRY_SAMPLES_PER_S = "telemetry_samples_per_s"  # per gateway
    MAX_ASSETS = "max_assets"  # per tenant
    MAX_GATEWAYS = "max_gateways"  # per tenant
    ENROLL_REQUESTS_PER_MIN = "enroll_requests_per_min"  # per client address


@dataclass(frozen=True)
class QuotaLimits:
    """One tenant's limits (0: no limit). The rates are far above what a site
    or an integrator needs; the counts are off (a tenant's fleet may be as
    large as a headend holds). A SaaS operator sets its tenants' own."""

    api_requests_per_s: float = 500.0
    dispatch_submits_per_min: float = 3000.0
    telemetry_samples_per_s: float = 100_000.0
    max_assets: int = 0
    max_gateways: int = 0
    enroll_requests_per_min: float = 60.0

    def value(self, limit: Limit) -> float:
        return float(getattr(self, limit.value))

    def replace(self, overrides: Mapping[str, float]) -> QuotaLimits:
        known = {f.name for f in fields(self)}
        unknown = sorted(set(overrides) - known)
        if unknown:
            raise ValueError(f"unknown quota {unknown[0]!r}; known: {', '.join(sorted(known))}")
        bad = sorted(k for k, v in overrides.items() if not 0 <= v < float("inf"))
        if bad:
            raise ValueError(f"quota {bad[0]!r} must be a finite number >= 0")
        merged = {f.name: overrides.get(f.name, getattr(self, f.name)) for f in fields(self)}
        merged["max_assets"] = int(merged["max_assets"])
        merged["max_gateways"] = int(merged["max_gateways"])
        return QuotaLimits(**merged)


# How many seconds of a rate a bucket holds (the burst it allows).
BURST_S: dict[Limit, float] = {
    Limit.API_REQUESTS_PER_S: 2.0,
    Limit.DISPATCH_SUBMITS_PER_MIN: 60.0,
    Limit.TELEMETRY_SAMPLES_PER_S: 10.0,
    Limit.ENROLL_REQUESTS_PER_MIN: 60.0,
}
PER_MIN = {Limit.DISPATCH_SUBMITS_PER_MIN, Limit.ENROLL_REQUESTS_PER_MIN}


class QuotaExceeded(DomainError):
    """Over a limit: HTTP 429 with ``Retry-After``, gRPC RESOURCE_EXHAUSTED."""

    code = "quota_exceeded"

    def __init__(self, limit: Limit, message: str, retry_after_s: float | None = None) -> None:
        super().__init__(message)
        self.limit = limit
        self.retry_after_s = retry_after_s


@dataclass
class TokenBucket:
    rate: float  # tokens per second
    capacity: float
    tokens: float
    at: float

    def take(self, n: float, now: float) -> float:
        """0.0 when ``n`` tokens were taken; else the seconds until they would be
        there (nothing taken). ``n`` above the capacity needs a full bucket."""
        self.tokens = min(self.capacity, self.tokens + (now - self.at) * self.rate)
        self.at = now
        need = min(n, self.capacity)
        if self.tokens >= need:
            self.tokens -= n  # may go below 0 for an oversized take: paid back first
            return 0.0
        return (need - self.tokens) / self.rate


class RateLimiter:
    """Buckets by key for one limit, at most MAX_KEYS of them."""

    def __init__(self, clock: Clock) -> None:
        self._clock = clock
        self._buckets: OrderedDict[tuple[str, str], TokenBucket] = OrderedDict()

    def take(self, key: tuple[str, str], per_s: float, burst_s: float, n: float = 1.0) -> float:
        if per_s <= 0:
            return 0.0
        now = self._clock()
        bucket = self._buckets.get(key)
        if bucket is None or bucket.rate != per_s:
            capacity = max(per_s * burst_s, 1.0)
            bucket = TokenBucket(per_s, capacity, capacity, now)
            self._buckets[key] = bucket
        self._buckets.move_to_end(key)
        while len(self._buckets) > MAX_KEYS:
            self._buckets.popitem(last=False)
        return bucket.take(n, now)


class Quotas:
    """The limits of each tenant and the buckets that enforce the rates; counts
    what it refused (``refused``: (limit, tenant) -> n) for /metrics."""

    def __init__(
        self,
        default: QuotaLimits | None = None,
        per_tenant: Mapping[str, QuotaLimits] | None = None,
        clock: Clock = time.monotonic,
    ) -> None:
        self.default = default or QuotaLimits()
        self._per_tenant = dict(per_tenant or {})
        self._limiters = {limit: RateLimiter(clock) for limit in BURST_S}
        self.refused: Counter[tuple[str, str]] = Counter()
        self.throttled_s: defaultdict[tuple[str, str], float] = defaultdict(float)

    def limits(self, tenant: str) -> QuotaLimits:
        return self._per_tenant.get(tenant, self.default)

    def rate(self, limit: Limit, tenant: str, key: str, n: float = 1.0) -> float:
        """Take ``n`` from the bucket of ``key`` under ``tenant``'s ``limit``;
        0.0 when allowed, else the seconds to wait (not counted: see ``refuse``)."""
        per = self.limits(tenant).value(limit)
        per_s = per / 60.0 if limit in PER_MIN else per
        return self._limiters[limit].take((tenant, key), per_s, BURST_S[limit], n)

    def refuse(self, limit: Limit, tenant: str, what: str, retry_after_s: float) -> QuotaExceeded:
        """Count a refusal and the error that says it."""
        self.refused[limit.value, tenant] += 1
        value = self.limits(tenant).value(limit)
        unit = limit.value.rsplit("_per_", 1)
        shown = f"{value:g}/{unit[1]}" if len(unit) == 2 else f"{value:g}"
        return QuotaExceeded(
            limit,
            f"quota {limit.value} ({shown}) exceeded for {what}; retry in {retry_after_s:.1f} s",
            retry_after_s,
        )

    def check_count(self, limit: Limit, tenant: str, would_have: int) -> QuotaExceeded | None:
        """A count limit (max_assets, max_gateways): the refusal when
        ``would_have`` is above it, else None."""
        cap = self.limits(tenant).value(limit)
        if cap <= 0 or would_have <= cap:
            return None
        self.refused[limit.value, tenant] += 1
        return QuotaExceeded(
            limit,
            f"quota {limit.value} ({cap:g}) exceeded for tenant {tenant}: this would make "
            f"{would_have}",
        )
