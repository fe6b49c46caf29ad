"""Reconnect backoff: full jitter, 0.5 s doubling, capped at 30 s; failover
addresses dialled in turn."""

from __future__ import annotations

import asyncio
import random
from datetime import datetime
from typing import Any

from gridpilot.edge_agent.clock import SystemClock
from gridpilot.edge_agent.config import HeadendConfig
from gridpilot.edge_agent.uplink.link import (
    KEEPALIVE_OPTIONS,
    HeadendLink,
    LinkClosed,
    backoff_delay,
)
from gridpilot.wire.messages import Welcome


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


class _NoJitter(random.Random):
    def uniform(self, a: float, b: float) -> float:
        return 0.0


class _Outbound:
    wakeup = asyncio.Event()

    def start_session(self) -> None: ...

    def next(self) -> None:
        return None

    def heartbeat(self, now: datetime) -> Any:
        raise AssertionError("no session here writes")


class _Dialled(HeadendLink):
    """A link whose sessions only note the address dialled: the first
    ``established`` come up (a Welcome) and are then lost; the rest fail."""

    def __init__(self, config: HeadendConfig, established: int, attempts: int) -> None:
        super().__init__(
            config,
            hello=lambda: None,  # type: ignore[arg-type,return-value]
            outbound=_Outbound(),
            on_up=_nothing,
            on_message=_nothing,
            on_down=lambda: None,
            clock=SystemClock(),
            heartbeat_interval_s=10,
            rng=_NoJitter(),
        )
        self.dialled: list[str] = []
        self._established, self._attempts = established, attempts

    async def _session(self) -> None:
        self.dialled.append(self.address)
        if len(self.dialled) >= self._attempts:
            self.close()
        if len(self.dialled) <= self._established:
            self._went_up(Welcome(session_id=f"s{len(self.dialled)}"))
            raise LinkClosed("the headend closed the stream")
        raise OSError("connection refused")


async def _nothing(_: Any) -> None:
    return None


def _headend(address: str, *failover: str) -> HeadendConfig:
    return HeadendConfig(address=address, failover_addresses=list(failover), insecure=True)


async def test_a_lost_stream_is_dialled_again_at_the_next_replica_then_round_the_list() -> None:
    link = _Dialled(_headend("b:1", "a:1", "c:1"), established=1, attempts=5)
    await asyncio.wait_for(link.run(), 10)
    assert link.dialled == ["b:1", "a:1", "c:1", "b:1", "a:1"]


async def test_one_address_is_always_dialled_again() -> None:
    link = _Dialled(_headend("b:1"), established=2, attempts=3)
    await asyncio.wait_for(link.run(), 10)
    assert link.dialled == ["b:1", "b:1", "b:1"]
