"""Reconnect backoff: full jitter, 0.5 s doubling, capped at 30 s."""

from __future__ import annotations

import random

from gridpilot.edge_agent.uplink.link import KEEPALIVE_OPTIONS, backoff_delay


def test_backoff_doubles_from_half_a_second_and_caps_at_30_s() -> None:
    rng = random.Random(1)
    for attempt, ceiling in [(1, 0.5), (2, 1.0), (3, 2.0), (7, 30.0), (500, 30.0)]:
        delays = [backoff_delay(attempt, rng) for _ in range(200)]
        assert 0.0 <= min(delays) and max(delays) <= ceiling
        assert max(delays) > ceiling * 0.8  # full jitter spreads over the whole range


def test_keepalive_survives_nat_idle_timeouts() -> None:
    assert dict(KEEPALIVE_OPTIONS) == {
        "grpc.keepalive_time_ms": 30_000,
        "grpc.keepalive_timeout_ms": 10_000,
        "grpc.keepalive_permit_without_calls": 1,
        "grpc.http2.max_pings_without_data": 0,
    }
