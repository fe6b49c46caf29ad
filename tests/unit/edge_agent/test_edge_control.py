"""One asset's dispatch control against a recording fake device, on virtual time
(a ManualClock: leases last minutes and end when the test moves the clock)."""

from __future__ import annotations

import functools
from datetime import UTC, datetime, timedelta

from gp_testing import wait_for

from gridpilot.core.assets import Asset, AssetType, PowerLimits
from gridpilot.core.lifecycle import ReasonCode
from gridpilot.core.telemetry import Sample
from gridpilot.edge_agent.adapters import DeviceWriteFailed
from gridpilot.edge_agent.clock import ManualClock
from gridpilot.edge_agent.control.acks import Ack, AckHistory, AckRecorder, AckState
from gridpilot.edge_agent.control.commands import ReleaseCommand, SetpointCommand
from gridpilot.edge_agent.control.controller import AssetController
from gridpilot.edge_agent.device import ManagedDevice

ASSET = Asset("bess", "site", AssetType.BESS, PowerLimits(-100, 100), default_p_kw=0.0)
A, R = AckState, ReasonCode
T0 = datetime(2026, 1, 5, 12, 0, tzinfo=UTC)


class FakeDevice:
    """Records every write; fails the next ``fail_writes`` of them."""

    def __init__(self) -> None:
        self.writes: list[float] = []
        self.fail_writes = 0

    async def connect(self) -> None:
        pass

    async def read(self) -> Sample:
        return Sample("bess", datetime.now(UTC))

    async def write(self, p_kw: float) -> float:
        if self.fail_writes:
            self.fail_writes -= 1
            raise DeviceWriteFailed("no answer from register 40100")
        self.writes.append(p_kw)
        return p_kw

    async def close(self) -> None:
        pass


class Harness:
    def __init__(self, revert_retry_s: float = 5.0) -> None:
        self.device = FakeDevice()
        self.acks: list[Ack] = []
        self.clock = ManualClock(T0)
        recorder = AckRecorder(AckHistory(), self.acks.append, self.clock)
        self.controller = AssetController(
            ASSET,
            ManagedDevice("bess", self.device, timeout_s=1),
            clock=self.clock,
            acks=recorder,
            revert_retry_s=revert_retry_s,
        )
        self.controller.start()

    def tick(self, seconds: float) -> bool:
        """Move virtual time on; True, so a check passed to until() can tick
        on every poll (a retry timer is armed only after the failure it retries)."""
        self.clock.advance(seconds)
        return True

    def seen(self, dispatch_id: str) -> list[tuple[AckState, ReasonCode | None]]:
        return [(a.state, a.reason) for a in self.acks if a.dispatch_id == dispatch_id]

    async def setpoint(
        self, dispatch_id: str, p_kw: float, *, start_in: float = 0, lasts: float = 600
    ) -> None:
        start = self.clock.now() + timedelta(seconds=start_in)
        await self.controller.submit(
            SetpointCommand(dispatch_id, "bess", p_kw, start, start + timedelta(seconds=lasts))
        )

    async def release(self, dispatch_id: str, reason: ReasonCode | None = None) -> None:
        await self.controller.submit(ReleaseCommand(dispatch_id, "bess", reason))


# Fine-grained: some checks catch a state that a short lease soon moves past.
until = functools.partial(wait_for, interval=0.01)


async def test_starts_by_writing_the_default() -> None:
    h = Harness()
    await until(lambda: h.device.writes == [0.0])
    await h.controller.stop(1)


async def test_a_scheduled_lease_takes_over_at_its_start_without_a_dip() -> None:
    h = Harness()
    await h.setpoint("d1", 40, lasts=300)
    await h.setpoint("d2", -60, start_in=300, lasts=300)
    await until(lambda: len(h.seen("d1")) == 2 and len(h.seen("d2")) == 1)
    h.clock.advance(300)  # d1's end and d2's start, at the same instant
    await until(lambda: len(h.seen("d2")) == 2)
    assert h.seen("d1") == [(A.ACCEPTED, None), (A.APPLIED, None), (A.COMPLETED, R.LEASE_ENDED)]
    assert h.seen("d2") == [(A.ACCEPTED, None), (A.APPLIED, None)]
    assert h.device.writes == [0.0, 40, -60]  # no default between the two
    h.clock.advance(300)
    await until(lambda: len(h.seen("d2")) == 3)
    assert h.seen("d2")[2] == (A.COMPLETED, R.LEASE_ENDED)
    assert h.device.writes == [0.0, 40, -60, 0.0]
    await h.controller.stop(1)


async def test_a_newer_setpoint_replaces_one_not_yet_started() -> None:
    h = Harness()
    await h.setpoint("d1", 10, start_in=10)
    await h.setpoint("d2", 20, start_in=10)
    await until(lambda: len(h.seen("d1")) == 2)
    assert h.seen("d1") == [(A.ACCEPTED, None), (A.RELEASED, R.SUPERSEDED)]
    assert h.controller.scheduled_dispatch_id == "d2"
    await h.controller.stop(1)


async def test_release_before_start_touches_nothing() -> None:
    h = Harness()
    await until(lambda: h.device.writes == [0.0])
    await h.setpoint("d1", 10, start_in=10)
    await h.release("d1")
    await until(lambda: len(h.seen("d1")) == 2)
    assert h.seen("d1")[1] == (A.RELEASED, R.CANCELLED_BY_OPERATOR)
    assert h.device.writes == [0.0]
    await h.controller.stop(1)


async def test_release_of_an_unknown_dispatch_blocks_a_late_setpoint() -> None:
    h = Harness()
    await h.release("d9", R.CANCELLED_BY_OPERATOR)
    await h.setpoint("d9", 50)
    await until(lambda: len(h.seen("d9")) == 2)
    assert h.seen("d9") == [(A.RELEASED, R.CANCELLED_BY_OPERATOR)] * 2
    assert "nothing to release" in h.acks[0].detail
    assert 50 not in h.device.writes
    await h.controller.stop(1)


async def test_failed_write_fails_the_dispatch_and_reverts() -> None:
    h = Harness()
    await until(lambda: h.device.writes == [0.0])
    h.device.fail_writes = 1
    await h.setpoint("d1", 70)
    await until(lambda: len(h.seen("d1")) == 2)
    assert h.seen("d1") == [(A.ACCEPTED, None), (A.FAILED, R.DEVICE_WRITE_FAILED)]
    assert "register 40100" in h.acks[-1].detail
    await until(lambda: h.device.writes == [0.0, 0.0])
    await h.controller.stop(1)


async def test_a_failed_return_to_default_fails_the_end_and_is_retried() -> None:
    h = Harness(revert_retry_s=5)
    await h.setpoint("d1", 30, lasts=120)
    await until(lambda: len(h.seen("d1")) == 2)
    h.device.fail_writes = 2  # the revert at the end, and its first retry
    h.clock.advance(120)
    await until(lambda: len(h.seen("d1")) == 3)
    assert h.seen("d1")[2] == (A.FAILED, R.DEVICE_WRITE_FAILED)
    assert "returning to default 0 kW failed" in h.acks[-1].detail
    await until(lambda: h.tick(5) and h.device.writes[-1] == 0.0 and len(h.device.writes) == 3)
    await h.controller.stop(1)


async def test_failsafe_releases_running_and_scheduled_leases() -> None:
    h = Harness()
    await h.setpoint("run", 30)
    await h.setpoint("later", 40, start_in=10)
    await until(lambda: len(h.seen("later")) == 1 and len(h.seen("run")) == 2)
    await h.controller.failsafe("headend link down for more than 60 s")
    await until(lambda: len(h.seen("run")) == 3 and len(h.seen("later")) == 2)
    assert h.seen("run")[2] == (A.RELEASED, R.LINK_LOST_REVERTED)
    assert h.seen("later")[1] == (A.RELEASED, R.LINK_LOST_REVERTED)
    assert h.device.writes[-1] == 0.0
    assert h.controller.active_dispatch_id is None
    await h.controller.stop(1)


async def test_stop_releases_as_agent_offline_and_writes_default() -> None:
    h = Harness()
    await h.setpoint("d1", 30)
    await until(lambda: len(h.seen("d1")) == 2)
    await h.controller.stop(1)
    assert h.seen("d1")[2] == (A.RELEASED, R.AGENT_OFFLINE)
    assert h.device.writes[-1] == 0.0


async def test_every_ack_carries_asset_time_and_trace_context() -> None:
    h = Harness()
    now = h.clock.now()
    await h.controller.submit(
        SetpointCommand(
            "d1", "bess", 5, None, now + timedelta(seconds=30), trace_context={"traceparent": "x"}
        )
    )
    await until(lambda: len(h.seen("d1")) == 2)
    for ack in h.acks:
        assert ack.asset_id == "bess" and ack.time >= now
        assert dict(ack.trace_context) == {"traceparent": "x"}
    assert h.acks[1].applied_p_kw == 5
    await h.controller.stop(1)
