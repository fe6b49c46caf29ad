"""The fail-safe and lease resumption after a restart, on virtual time."""

from __future__ import annotations

from datetime import timedelta

from test_edge_control import T0, until

from gridpilot.core.lifecycle import ReasonCode
from gridpilot.edge_agent.clock import ManualClock
from gridpilot.edge_agent.control.acks import Ack, AckHistory, AckRecorder, AckState
from gridpilot.edge_agent.control.commands import Lease
from gridpilot.edge_agent.control.failsafe import FailSafe
from gridpilot.edge_agent.control.journal import ControlJournal
from gridpilot.edge_agent.control.local_control import Source
from gridpilot.edge_agent.control.resume import leases_to_resume

A, R = AckState, ReasonCode


class FakeController:
    active_dispatch_id: str | None = "d1"
    scheduled_dispatch_id: str | None = None

    def __init__(self) -> None:
        self.failsafes: list[str] = []

    async def failsafe(self, detail: str) -> None:
        self.failsafes.append(detail)


async def test_the_failsafe_reverts_every_asset_once_the_link_stays_down_past_the_timeout() -> None:
    clock = ManualClock(T0)
    controllers = {"bess": FakeController(), "pv": FakeController()}
    failsafe = FailSafe(controllers, timeout_s=60, clock=clock)  # type: ignore[arg-type]
    failsafe.arm()
    await until(lambda: clock.sleepers == 1)
    clock.advance(59.9)
    await until(lambda: failsafe.armed)
    assert all(c.failsafes == [] for c in controllers.values())
    clock.advance(0.1)
    await until(lambda: all(c.failsafes for c in controllers.values()))
    assert controllers["bess"].failsafes == ["headend link down for more than 60 s"]
    assert not failsafe.armed


async def test_a_link_back_before_the_timeout_disarms_the_failsafe() -> None:
    clock = ManualClock(T0)
    controller = FakeController()
    failsafe = FailSafe({"bess": controller}, timeout_s=60, clock=clock)  # type: ignore[dict-item]
    failsafe.arm()
    await until(lambda: clock.sleepers == 1)
    clock.advance(30)
    failsafe.disarm()
    failsafe.arm()  # lost again: a fresh 60 s from now
    await until(lambda: clock.sleepers == 1)
    clock.advance(59)
    assert controller.failsafes == []
    clock.advance(1)
    await until(lambda: controller.failsafes == ["headend link down for more than 60 s"])


def _lease(dispatch_id: str, start_s: float, end_s: float, source: Source = Source.CLOUD) -> Lease:
    return Lease(
        dispatch_id,
        10.0,
        T0 + timedelta(seconds=start_s),
        T0 + timedelta(seconds=end_s),
        source=source,
        actor="opcua:op" if source is Source.LOCAL else "",
    )


def test_held_leases_are_resumed_or_acked_as_ended() -> None:
    journal = ControlJournal(":memory:")
    journal.hold("bess", _lease("running", -60, 600))
    journal.hold("bess", _lease("later", 300, 900))
    journal.hold("pv", _lease("over", -600, -1))
    journal.hold("gone", _lease("orphan", -60, 600))
    acks: list[Ack] = []
    recorder = AckRecorder(AckHistory(), acks.append, ManualClock(T0))

    journal.mark_link_seen(T0 - timedelta(seconds=20))
    resume = leases_to_resume(journal, {"bess", "pv"}, recorder, now=T0, failsafe_s=30)

    assert [(c.dispatch_id, c.start, c.resumed) for c in resume["bess"]] == [
        ("running", None, True),  # already started: applied again at once
        ("later", T0 + timedelta(seconds=300), True),
    ]
    assert "pv" not in resume
    assert [(a.dispatch_id, a.state, a.reason) for a in acks] == [
        ("over", A.RELEASED, R.AGENT_OFFLINE),
        ("orphan", A.RELEASED, R.UNKNOWN_ASSET),
    ]
    assert all(a.detail.startswith("not resumed after an agent restart") for a in acks)
    assert {h.lease.dispatch_id for h in journal.leases()} == {"running", "later"}


def test_a_cloud_lease_is_not_resumed_past_the_failsafe_but_a_local_one_is() -> None:
    journal = ControlJournal(":memory:")
    journal.hold("bess", _lease("cloud", -60, 600))
    journal.hold("pv", _lease("loc-1", -60, 600, Source.LOCAL))
    journal.mark_link_seen(T0 - timedelta(seconds=45))
    acks: list[Ack] = []
    recorder = AckRecorder(AckHistory(), acks.append, ManualClock(T0))

    resume = leases_to_resume(journal, {"bess", "pv"}, recorder, now=T0, failsafe_s=30)

    assert [c.dispatch_id for c in resume["pv"]] == ["loc-1"]
    assert "bess" not in resume
    assert [(a.dispatch_id, a.reason) for a in acks] == [("cloud", R.LINK_LOST_REVERTED)]
