"""Local vs cloud commands on one asset, under each arbitration policy
(the controller against a recording fake device, on virtual time)."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

import pytest
from test_edge_control import ASSET, T0, FakeDevice, until

from gridpilot.core.lifecycle import ReasonCode
from gridpilot.edge_agent.clock import ManualClock
from gridpilot.edge_agent.control.acks import Ack, AckHistory, AckRecorder, AckState
from gridpilot.edge_agent.control.arbitration import arbitrate
from gridpilot.edge_agent.control.commands import Lease, Revert, SetpointCommand
from gridpilot.edge_agent.control.controller import AssetController
from gridpilot.edge_agent.control.local_control import Arbitration, Mode, Source
from gridpilot.edge_agent.device import ManagedDevice

A, R = AckState, ReasonCode


class Site:
    def __init__(self, policy: Arbitration) -> None:
        self.device = FakeDevice()
        self.acks: list[Ack] = []
        self.changes = 0
        self.clock = ManualClock(T0)
        recorder = AckRecorder(AckHistory(), self.acks.append, self.clock)
        self.controller = AssetController(
            ASSET,
            ManagedDevice("bess", self.device, timeout_s=1),
            clock=self.clock,
            acks=recorder,
            arbitration=policy,
            on_change=self._changed,
        )
        self.controller.start()

    def _changed(self) -> None:
        self.changes += 1

    def seen(self, dispatch_id: str) -> list[tuple[AckState, ReasonCode | None]]:
        return [(a.state, a.reason) for a in self.acks if a.dispatch_id == dispatch_id]

    async def cloud(self, dispatch_id: str, p_kw: float, start_in: float = 0) -> None:
        start = self.clock.now() + timedelta(seconds=start_in)
        await self.controller.submit(
            SetpointCommand(dispatch_id, "bess", p_kw, start, start + timedelta(seconds=30))
        )

    async def local(self, dispatch_id: str, p_kw: float) -> None:
        end = self.clock.now() + timedelta(seconds=30)
        await self.controller.submit(
            SetpointCommand(
                dispatch_id, "bess", p_kw, None, end, source=Source.LOCAL, actor="opcua:op"
            )
        )


def _lease(source: Source) -> Lease:
    now = datetime.now(UTC)
    return Lease("x", 1.0, now, now + timedelta(seconds=5), source=source, actor="opcua:op")


@pytest.mark.parametrize(
    ("policy", "new", "holder", "refused"),
    [
        (Arbitration.CLOUD_PRIORITY, Source.CLOUD, Source.LOCAL, None),
        (Arbitration.CLOUD_PRIORITY, Source.LOCAL, Source.CLOUD, R.PRIORITY_CONFLICT),
        (Arbitration.CLOUD_PRIORITY, Source.LOCAL, None, None),
        (Arbitration.LOCAL_PRIORITY, Source.CLOUD, Source.LOCAL, R.LOCAL_CONTROL),
        (Arbitration.LOCAL_PRIORITY, Source.CLOUD, None, None),
        (Arbitration.LOCAL_PRIORITY, Source.LOCAL, Source.CLOUD, None),
        (Arbitration.LOCAL_ONLY, Source.CLOUD, None, R.LOCAL_CONTROL),
        (Arbitration.LOCAL_ONLY, Source.LOCAL, Source.LOCAL, None),
    ],
)
def test_arbitration_table(
    policy: Arbitration, new: Source, holder: Source | None, refused: ReasonCode | None
) -> None:
    got = arbitrate(policy, new, _lease(holder) if holder else None)
    assert (got[0] if got else None) is refused
    if got:
        assert policy.value in got[1]  # the loser is told which policy decided


async def test_cloud_priority_cloud_takes_over_and_a_local_write_is_refused() -> None:
    s = Site(Arbitration.CLOUD_PRIORITY)
    await s.local("loc-1", 30)
    await until(lambda: s.controller.view().mode is Mode.LOCAL)
    await s.cloud("dsp-1", -40)
    await until(lambda: len(s.seen("dsp-1")) == 2)
    assert s.seen("loc-1")[-1] == (A.RELEASED, R.SUPERSEDED)
    await s.local("loc-2", 50)
    await until(lambda: bool(s.seen("loc-2")))
    assert s.seen("loc-2") == [(A.REJECTED, R.PRIORITY_CONFLICT)]
    assert s.device.writes == [0.0, 30, -40]  # the refused write never reached the device
    view = s.controller.view()
    assert (view.mode, view.active_dispatch_id, view.setpoint_actual_kw) == (
        Mode.CLOUD,
        "dsp-1",
        -40,
    )
    assert "REJECTED local loc-2 PRIORITY_CONFLICT" in view.command_status
    assert s.changes >= 5
    await s.controller.stop(1)


async def test_local_priority_local_takes_over_and_the_cloud_is_refused() -> None:
    s = Site(Arbitration.LOCAL_PRIORITY)
    await s.cloud("dsp-1", -40)
    await until(lambda: len(s.seen("dsp-1")) == 2)
    await s.local("loc-1", 30)
    await until(lambda: len(s.seen("loc-1")) == 2)
    assert s.seen("dsp-1")[-1] == (A.RELEASED, R.LOCAL_CONTROL)
    await s.cloud("dsp-2", 10)
    await until(lambda: bool(s.seen("dsp-2")))
    assert s.seen("dsp-2") == [(A.REJECTED, R.LOCAL_CONTROL)]
    assert s.device.writes == [0.0, -40, 30]
    await s.controller.stop(1)


async def test_local_priority_a_scheduled_cloud_dispatch_does_not_start_over_a_local_one() -> None:
    s = Site(Arbitration.LOCAL_PRIORITY)
    await s.cloud("dsp-1", -40, start_in=10)
    await s.local("loc-1", 30)
    await until(lambda: len(s.seen("loc-1")) == 2)
    s.clock.advance(10)  # dsp-1's start
    await until(lambda: len(s.seen("dsp-1")) == 2)
    assert s.seen("dsp-1") == [(A.ACCEPTED, None), (A.RELEASED, R.LOCAL_CONTROL)]
    assert s.controller.view().active_dispatch_id == "loc-1"
    await s.controller.stop(1)


async def test_local_only_refuses_every_cloud_dispatch() -> None:
    s = Site(Arbitration.LOCAL_ONLY)
    await s.cloud("dsp-1", -40)
    await until(lambda: bool(s.seen("dsp-1")))
    assert s.seen("dsp-1") == [(A.REJECTED, R.LOCAL_CONTROL)]
    assert s.device.writes == [0.0]
    await s.controller.stop(1)


async def test_a_lost_headend_link_ends_cloud_leases_but_not_a_local_one() -> None:
    s = Site(Arbitration.LOCAL_PRIORITY)
    await s.local("loc-1", 30)
    await until(lambda: len(s.seen("loc-1")) == 2)
    await s.controller.submit(Revert(R.LINK_LOST_REVERTED, "headend link down"))
    await s.cloud("dsp-x", 1)  # queued behind the revert: shows the revert was handled
    await until(lambda: bool(s.seen("dsp-x")))
    assert s.seen("loc-1") == [(A.ACCEPTED, None), (A.APPLIED, None)]
    assert s.device.writes == [0.0, 30]
    await s.controller.stop(1)
    assert s.seen("loc-1")[-1] == (A.RELEASED, R.AGENT_OFFLINE)  # stopping ends it
