"""Dispatch lifecycle rails on a real Temporal server: one live dispatch per asset
(supersede / priority), scheduled start, limits re-checked by the workflow, device
write failures, and a site dispatch re-spreading what a lost child cannot deliver.

Short windows run on the dev server in real time; the 2 h scheduled start runs on the
time-skipping server, whose clock only moves while a test sleeps on it or awaits a result.
"""

from __future__ import annotations

from datetime import timedelta
from typing import Any

import pytest
from gp_testing import mixed_site_assets, wait_for
from temporalio.api.enums.v1 import EventType
from temporalio.client import WorkflowExecutionStatus

from gridpilot.core.assets import Asset, AssetType, PowerLimits
from gridpilot.core.lifecycle import DispatchState, ReasonCode
from gridpilot.core.split import POLICY, Available, split
from gridpilot.workflows.constants import SIGNAL_CANCEL
from gridpilot.workflows.dispatch import DispatchWorkflow
from gridpilot.workflows.dispatch_rules import START_LEAD
from gridpilot.workflows.models import (
    CancelRequest,
    DispatchInput,
    DispatchStatus,
    Route,
    SplitInputs,
)

pytestmark = pytest.mark.integration

S = DispatchState
ASSET = "bess-1"
GATEWAY = "gw-test"
HAPPY_PATH = [S.SUBMITTED, S.SENT, S.ACKED, S.ACTIVE, S.COMPLETE]


def _with(inp: DispatchInput, **update: Any) -> DispatchInput:
    return inp.model_copy(update=update)


def _shift(inp: DispatchInput, start_in: timedelta, deliver_s: float = 5.0) -> DispatchInput:
    """The same dispatch, its window moved to start ``start_in`` after its submit."""
    start = inp.start_at + start_in
    return _with(
        inp,
        start_at=start,
        end_at=start + timedelta(seconds=inp.duration_s),
        deliver_by=start + timedelta(seconds=deliver_s),
    )


async def _to_active(harness, dispatch_id: str, asset_id: str = ASSET, p_kw: float = 50.0) -> None:
    b = harness.backend
    await b.wait_state(dispatch_id, S.SENT)
    await b.ack(dispatch_id, "accepted", asset_id=asset_id)
    await b.ack(dispatch_id, "applied", asset_id=asset_id, applied_p_kw=p_kw)
    await b.wait_state(dispatch_id, S.ACTIVE)


async def _status(harness, dispatch_id: str) -> DispatchStatus:
    return await harness.client.get_workflow_handle(dispatch_id).query(DispatchWorkflow.status)


async def _wait_for_timer(harness, handle) -> None:
    """Until the workflow sits on a durable timer (its scheduled-start wait)."""

    async def started() -> bool:
        events = [e.event_type async for e in handle.fetch_history_events()]
        return EventType.EVENT_TYPE_TIMER_STARTED in events

    await wait_for(started, what=f"{handle.id} to start a timer", interval=0.1)


# ---------------------------------------------------------------- supersede / priority


@pytest.mark.parametrize("new_priority", [0, 5], ids=["equal-priority", "higher-priority"])
async def test_new_dispatch_for_same_asset_supersedes_the_live_one_at_handover_without_release(
    dev, record_histories, new_priority
):
    b = dev.backend
    b.online(ASSET)
    old_inp = await dev.dispatch_input(duration_s=30, p_kw=50.0)
    old = await dev.start(old_inp)
    await _to_active(dev, old.id)

    new_inp = _with(await dev.dispatch_input(duration_s=30, p_kw=70.0), priority=new_priority)
    new = await dev.start(new_inp)
    old_result = await dev.result(old)

    # the old one ends cancelled / SUPERSEDED when the agent hands the asset over to
    # the new setpoint (its released / SUPERSEDED ack), not at the new one's claim
    assert old_result.state is S.CANCELLED
    assert old_result.reason is ReasonCode.SUPERSEDED
    assert old_result.detail == f"superseded by {new.id}"
    assert b.states(old.id) == [S.SUBMITTED, S.SENT, S.ACKED, S.ACTIVE, S.CANCELLED]
    ended = b.transitions[old.id][-1]
    assert (ended.from_state, ended.actor) == (S.ACTIVE, "agent")
    handover = b.calls.index(b.called("deliver_setpoint", new.id)[0])
    assert b.calls.index(b.called("record_transition", old.id)[-1]) > handover
    assert b.superseded_by == {old.id: new.id}
    status = await _status(dev, old.id)
    assert (status.state, status.superseded_by) == (S.CANCELLED, new.id)
    (claim,) = b.called("claim_asset", new.id)
    assert (claim.arg.asset_id, claim.arg.priority) == (ASSET, new_priority)
    assert (claim.arg.start_at, claim.arg.end_at) == (new_inp.start_at, new_inp.end_at)

    # the new one proceeds; its setpoint replaces the old one at the agent
    await _to_active(dev, new.id, p_kw=70.0)
    await b.ack(new.id, "completed", asset_id=ASSET, applied_p_kw=70.0)
    new_result = await dev.result(new)
    assert new_result.state is S.COMPLETE
    assert new_result.applied_p_kw == 70.0
    assert b.states(new.id) == HAPPY_PATH
    assert [c.arg.dispatch_id for c in b.called("deliver_setpoint")] == [old.id, new.id]
    assert b.called("deliver_release") == []  # no Release: no dip to the default in between
    if new_priority == 0:
        # new names: superseded.json / superseding.json keep the pre-patch path
        await record_histories(superseded_at_handover=old)


async def test_lower_priority_dispatch_is_refused_naming_the_holder_and_delivers_nothing(
    dev, record_histories
):
    b = dev.backend
    b.online(ASSET)
    holder_inp = _with(await dev.dispatch_input(duration_s=30), priority=5)
    holder = await dev.start(holder_inp)
    await _to_active(dev, holder.id)

    refused_inp = _with(await dev.dispatch_input(duration_s=30, p_kw=10.0), priority=1)
    refused = await dev.start(refused_inp)
    result = await dev.result(refused)

    assert result.state is S.FAILED
    assert result.reason is ReasonCode.PRIORITY_CONFLICT
    assert holder.id in result.detail
    assert "priority 5" in result.detail
    assert b.states(refused.id) == [S.SUBMITTED, S.FAILED]
    assert b.transitions[refused.id][-1].actor == "headend"
    assert b.called("deliver_setpoint", refused.id) == []
    assert b.called("deliver_release") == []
    assert b.superseded_by == {}
    # the holder is untouched and completes
    assert (await _status(dev, holder.id)).state is S.ACTIVE
    await b.ack(holder.id, "completed", asset_id=ASSET, applied_p_kw=50.0)
    assert (await dev.result(holder)).state is S.COMPLETE
    assert b.states(holder.id) == HAPPY_PATH
    await record_histories(priority_conflict=refused)


async def test_older_dispatch_claiming_after_a_newer_one_ends_superseded_by_it(
    dev, record_histories
):
    # Submitted in this order (submit_seq 1, 2), the newer one's workflow claims first.
    b = dev.backend
    b.online(ASSET)
    older_inp = _with(await dev.dispatch_input(duration_s=30, p_kw=10.0), submit_seq=1)
    newer_inp = _with(await dev.dispatch_input(duration_s=30, p_kw=20.0), submit_seq=2)
    newer = await dev.start(newer_inp)
    await _to_active(dev, newer.id, p_kw=20.0)

    older = await dev.start(older_inp)
    result = await dev.result(older)

    # the older one never takes the asset back: it ends at its claim, naming the newer
    assert (result.state, result.reason) == (S.CANCELLED, ReasonCode.SUPERSEDED)
    assert result.detail == f"superseded by {newer.id}"
    assert b.states(older.id) == [S.SUBMITTED, S.CANCELLED]
    assert b.transitions[older.id][-1].actor == f"dispatch {newer.id}"
    assert (await _status(dev, older.id)).superseded_by == newer.id
    (claim,) = b.called("claim_asset", older.id)
    assert claim.arg.submit_seq == 1
    assert b.called("deliver_setpoint", older.id) == []
    assert b.superseded_by == {older.id: newer.id}  # one-way: the newer is not marked
    status = await _status(dev, newer.id)
    assert (status.state, status.superseded_by) == (S.ACTIVE, None)
    await b.ack(newer.id, "completed", asset_id=ASSET, applied_p_kw=20.0)
    assert (await dev.result(newer)).state is S.COMPLETE
    await record_histories(superseded_at_claim=older)


async def test_dispatch_superseded_after_its_claim_is_refused_at_delivery_and_ends_superseded(
    dev, record_histories
):
    # Its claim passed while the agent was offline; then a newer one claimed the asset
    # (marked here directly, as if that one's cancel signal had not arrived yet).
    b = dev.backend
    b.offline(ASSET)
    inp = _with(await dev.dispatch_input(duration_s=30, deliver_s=20.0), submit_seq=1)
    handle = await dev.start(inp)
    await b.wait_until(
        "its claim and a route lookup",
        lambda: bool(b.called("claim_asset", handle.id) and b.called("resolve_route")),
    )
    b.superseded_by[handle.id] = "dsp-newer"
    b.online(ASSET)
    result = await dev.result(handle)

    assert (result.state, result.reason) == (S.CANCELLED, ReasonCode.SUPERSEDED)
    assert result.detail == "superseded by dsp-newer"
    assert b.states(handle.id) == [S.SUBMITTED, S.CANCELLED]  # never sent
    assert len(b.called("deliver_setpoint", handle.id)) == 1  # refused under the lock
    assert b.agent_active == {}
    assert b.called("deliver_release") == []
    assert (await _status(dev, handle.id)).superseded_by == "dsp-newer"
    await record_histories(superseded_at_delivery=handle)


@pytest.mark.parametrize("gap_s", [0, 5], ids=["touching", "apart"])
async def test_dispatches_for_same_asset_with_non_overlapping_windows_do_not_compete(dev, gap_s):
    b = dev.backend
    b.online(ASSET)
    first_inp = _with(await dev.dispatch_input(duration_s=10), priority=5)
    # the second starts when (or after) the first ends: within the delivery lead
    start = first_inp.end_at + timedelta(seconds=gap_s)
    second_inp = _with(
        await dev.dispatch_input(duration_s=10),
        start_at=start,
        end_at=start + timedelta(seconds=10),
        deliver_by=start + timedelta(seconds=5),
    )
    assert start - (await dev.now()) < START_LEAD  # delivered at once, no scheduled wait
    first = await dev.start(first_inp)
    await _to_active(dev, first.id)

    second = await dev.start(second_inp)  # lower priority, but it does not overlap
    await b.wait_state(second.id, S.SENT)

    assert [c.arg.dispatch_id for c in b.called("claim_asset")] == [first.id, second.id]
    assert b.superseded_by == {}
    assert (await _status(dev, first.id)).state is S.ACTIVE
    for handle in (first, second):
        await b.ack(handle.id, "completed", asset_id=ASSET, applied_p_kw=50.0)
        assert (await dev.result(handle)).state is S.COMPLETE
    assert b.called("deliver_release") == []


async def test_dispatch_superseded_while_waiting_for_its_scheduled_start_is_never_delivered(
    skipping,
):
    b = skipping.backend
    b.online(ASSET)
    waiting_inp = _shift(
        await skipping.dispatch_input(duration_s=3600, ack_timeout_s=60),
        timedelta(hours=1),
        deliver_s=300,
    )
    waiting = await skipping.start(waiting_inp)
    await _wait_for_timer(skipping, waiting)

    # a dispatch for now until after the scheduled one's start takes the asset
    b.agent_replies = ["accepted", "applied"]
    now = await skipping.start(await skipping.dispatch_input(duration_s=2 * 3600))
    result = await skipping.result(waiting)

    assert result.state is S.CANCELLED
    assert result.reason is ReasonCode.SUPERSEDED
    assert result.detail == f"superseded by {now.id}"
    assert b.states(waiting.id) == [S.SUBMITTED, S.CANCELLED]
    assert b.called("deliver_setpoint", waiting.id) == []
    assert b.called("deliver_release", waiting.id) == []
    await b.wait_state(now.id, S.ACTIVE)
    await now.signal(SIGNAL_CANCEL, CancelRequest(actor="op-bob"))
    assert (await skipping.result(now)).state is S.CANCELLED


# ---------------------------------------------------------------- scheduled start


async def test_dispatch_scheduled_2h_ahead_is_delivered_30s_before_its_start_and_completes(
    skipping, record_histories
):
    b = skipping.backend
    env = skipping.env
    b.online(ASSET)
    inp = _shift(
        await skipping.dispatch_input(duration_s=3600, ack_timeout_s=60),
        timedelta(hours=2),
        deliver_s=300,
    )
    handle = await skipping.start(inp)
    await _wait_for_timer(skipping, handle)
    assert b.states(inp.dispatch_id) == [S.SUBMITTED]
    assert len(b.called("claim_asset")) == 1

    # nothing goes out before start - 30 s
    await env.sleep(inp.start_at - START_LEAD - (await skipping.now()) - timedelta(seconds=5))
    # Still on its timer: the test server fires a due timer, into the history, as
    # it skips past it, so a timer that fired early would be there by now.
    events = [e.event_type async for e in handle.fetch_history_events()]
    since_timer = events[events.index(EventType.EVENT_TYPE_TIMER_STARTED) :]
    assert EventType.EVENT_TYPE_TIMER_FIRED not in since_timer
    assert b.called("resolve_route") == []
    assert b.called("deliver_setpoint") == []
    assert b.states(inp.dispatch_id) == [S.SUBMITTED]

    # ... and it goes out then
    await env.sleep(timedelta(seconds=10))
    await b.wait_state(inp.dispatch_id, S.SENT)
    (deliver,) = b.called("deliver_setpoint")
    assert (deliver.arg.start_at, deliver.arg.end_at) == (inp.start_at, inp.end_at)
    sent = b.transitions[inp.dispatch_id][1]
    assert inp.start_at - START_LEAD <= sent.at < inp.start_at

    # the agent accepts now, applies at the start and completes at the end
    await b.ack(handle.id, "accepted", asset_id=ASSET)
    await b.wait_state(inp.dispatch_id, S.ACKED)
    await env.sleep(inp.start_at - (await skipping.now()) + timedelta(seconds=1))
    await b.ack(handle.id, "applied", asset_id=ASSET, applied_p_kw=50.0)
    await b.wait_state(inp.dispatch_id, S.ACTIVE)
    await env.sleep(inp.end_at - (await skipping.now()) - timedelta(seconds=1))
    await b.ack(handle.id, "completed", asset_id=ASSET, applied_p_kw=50.0)
    result = await skipping.result(handle)

    assert result.state is S.COMPLETE
    assert result.applied_p_kw == 50.0
    recorded = b.transitions[inp.dispatch_id]
    assert [r.to_state for r in recorded] == HAPPY_PATH
    assert recorded[3].at >= inp.start_at  # active from its start, not from the delivery
    assert b.called("deliver_release") == []
    await record_histories(scheduled_start=handle)


async def test_cancel_while_waiting_for_scheduled_start_delivers_nothing(skipping):
    b = skipping.backend
    b.online(ASSET)
    inp = _shift(await skipping.dispatch_input(duration_s=3600), timedelta(hours=2), deliver_s=300)
    handle = await skipping.start(inp)
    await _wait_for_timer(skipping, handle)

    await handle.signal(SIGNAL_CANCEL, CancelRequest(actor="op-bob", detail="plan changed"))
    result = await skipping.result(handle)

    assert result.state is S.CANCELLED
    assert result.reason is ReasonCode.CANCELLED_BY_OPERATOR
    assert result.detail == "plan changed"
    assert b.states(inp.dispatch_id) == [S.SUBMITTED, S.CANCELLED]
    cancelled = b.transitions[inp.dispatch_id][-1]
    assert cancelled.actor == "op-bob"
    assert cancelled.at < inp.start_at - START_LEAD  # it did not wait the timer out
    assert b.called("resolve_route") == []
    assert b.called("deliver_setpoint") == []
    assert b.called("deliver_release") == []


# ---------------------------------------------------------------- limits and device


def _route(harness, p_min_kw: float, p_max_kw: float, online: bool = True) -> Route:
    b = harness.backend
    return Route(
        asset_id=ASSET,
        known=True,
        gateway_id=GATEWAY,
        task_queue=b.headend_queue if online else None,
        p_min_kw=p_min_kw,
        p_max_kw=p_max_kw,
    )


@pytest.mark.parametrize("p_kw", [50.0, -50.0], ids=["above-max", "below-min"])
async def test_dispatch_outside_the_assets_current_limits_fails_out_of_limits(dev, p_kw):
    b = dev.backend
    b.routes[ASSET] = _route(dev, -40.0, 40.0)  # the limits were lowered after the submit
    inp = await dev.dispatch_input(p_kw=p_kw)
    handle = await dev.start(inp)

    result = await dev.result(handle)

    assert result.state is S.FAILED
    assert result.reason is ReasonCode.OUT_OF_LIMITS
    assert str(p_kw) in result.detail
    assert "[-40.0, 40.0]" in result.detail
    assert b.states(inp.dispatch_id) == [S.SUBMITTED, S.FAILED]
    assert b.transitions[inp.dispatch_id][-1].actor == "headend"
    assert b.called("deliver_setpoint") == []
    assert b.called("deliver_release") == []


async def test_dispatch_at_the_edge_of_the_current_limits_is_delivered(dev):
    b = dev.backend
    b.routes[ASSET] = _route(dev, -40.0, 40.0)
    b.agent_replies = ["accepted", "applied", "completed"]
    handle = await dev.start(await dev.dispatch_input(p_kw=40.0))

    result = await dev.result(handle)

    assert result.state is S.COMPLETE
    assert [c.arg.p_kw for c in b.called("deliver_setpoint")] == [40.0]


async def test_limits_lowered_while_agent_offline_fail_the_dispatch_when_it_comes_back(dev):
    b = dev.backend
    b.routes[ASSET] = _route(dev, -100.0, 100.0, online=False)
    inp = await dev.dispatch_input(p_kw=80.0, deliver_s=20)
    handle = await dev.start(inp)
    await b.wait_until("a first route lookup", lambda: len(b.called("resolve_route")) >= 1)

    b.routes[ASSET] = _route(dev, -50.0, 50.0)  # back online, with lower limits
    result = await dev.result(handle)

    assert result.state is S.FAILED
    assert result.reason is ReasonCode.OUT_OF_LIMITS
    assert "[-50.0, 50.0]" in result.detail
    assert b.states(inp.dispatch_id) == [S.SUBMITTED, S.FAILED]
    assert b.called("deliver_setpoint") == []


async def test_device_write_failing_at_the_agent_fails_dispatch_with_device_write_failed(dev):
    b = dev.backend
    b.online(ASSET)
    inp = await dev.dispatch_input()
    handle = await dev.start(inp)
    await b.wait_state(inp.dispatch_id, S.SENT)

    await b.ack(handle.id, "accepted", asset_id=ASSET)
    await b.ack(
        handle.id,
        "failed",
        asset_id=ASSET,
        reason=ReasonCode.DEVICE_WRITE_FAILED,
        detail="device write failed: modbus timeout",
    )
    result = await dev.result(handle)

    assert result.state is S.FAILED
    assert result.reason is ReasonCode.DEVICE_WRITE_FAILED
    assert result.detail == "device write failed: modbus timeout"
    assert result.applied_p_kw is None
    assert b.states(inp.dispatch_id) == [S.SUBMITTED, S.SENT, S.ACKED, S.FAILED]
    failed = b.transitions[inp.dispatch_id][-1]
    assert (failed.actor, failed.reason) == ("agent", ReasonCode.DEVICE_WRITE_FAILED)
    assert b.called("deliver_release") == []  # the agent has already reverted


# ---------------------------------------------------------------- site re-spread

SITE = "site-1"
SITE_ASSETS = mixed_site_assets()
ASSET_IDS = [a.asset_id for a in SITE_ASSETS]


def _shares(target_kw: float, excluded: tuple[str, ...] = ()) -> dict[str, float]:
    assets = [
        Asset(a.asset_id, SITE, AssetType(a.asset_type), PowerLimits(a.p_min_kw, a.p_max_kw))
        for a in SITE_ASSETS
        if a.asset_id not in excluded
    ]
    available = {
        a.asset_id: Available(a.available_charge_kw, a.available_discharge_kw) for a in SITE_ASSETS
    }
    return {a.asset_id: a.p_kw for a in split(target_kw, assets, available).allocations}


async def _start_site(
    harness, target_kw: float, deliver_s: float = 5.0, offline: tuple[str, ...] = ()
):
    b = harness.backend
    b.split_inputs[SITE] = SplitInputs(site_id=SITE, assets=SITE_ASSETS)
    for asset_id in ASSET_IDS:
        if asset_id in offline:
            b.offline(asset_id)
        else:
            b.online(asset_id)
    inp = await harness.dispatch_input(
        asset_id=None, site_id=SITE, p_kw=target_kw, duration_s=30, deliver_s=deliver_s
    )
    return await harness.start(inp)


def _children_of(harness, parent_id: str) -> list[str]:
    return sorted(d for d, inp in harness.backend.dispatches.items() if inp.parent_id == parent_id)


async def _complete(harness, dispatch_id: str, asset_id: str, p_kw: float) -> None:
    await _to_active(harness, dispatch_id, asset_id, p_kw)
    await harness.backend.ack(dispatch_id, "completed", asset_id=asset_id, applied_p_kw=p_kw)


@pytest.mark.parametrize(
    ("target_kw", "delivered_kw"),
    [(150.0, 120.0), (100.0, 100.0)],
    ids=["capacity-short", "capacity-suffices"],
)
async def test_site_child_rejected_respreads_over_remaining_assets(
    dev, record_histories, target_kw, delivered_kw
):
    b = dev.backend
    parent = await _start_site(dev, target_kw)
    p = parent.id
    v1 = _shares(target_kw)
    v2 = _shares(target_kw, excluded=("pv-1",))
    assert v2["bess-2"] == v1["bess-2"] == 20.0  # clamped: its share does not change
    assert v2["bess-1"] != v1["bess-1"]
    assert sum(v2.values()) == delivered_kw
    for asset_id in ASSET_IDS:
        await b.wait_state(f"{p}.{asset_id}", S.SENT)

    await b.ack(
        f"{p}.pv-1",
        "rejected",
        asset_id="pv-1",
        reason=ReasonCode.OUT_OF_LIMITS,
        detail="above the site's export limit",
    )
    await b.wait_state(f"{p}.bess-1.v2", S.SENT)

    # allocation version 2 over the remaining assets, with the same policy
    first, second = b.allocations
    assert (first.version, second.version) == (1, 2)
    assert second.policy == POLICY
    assert (second.target_kw, second.allocated_kw) == (target_kw, delivered_kw)
    assert second.unallocated_kw == target_kw - delivered_kw
    assert {x.asset_id: x.p_kw for x in second.lines} == v2
    # a new child only where the share changed; it supersedes its v1 sibling
    assert _children_of(dev, p) == [f"{p}.bess-1", f"{p}.bess-1.v2", f"{p}.bess-2", f"{p}.pv-1"]
    assert b.dispatches[f"{p}.bess-1.v2"].p_kw == v2["bess-1"]
    assert b.superseded_by == {f"{p}.bess-1": f"{p}.bess-1.v2"}
    # the allocation names the child that carries each share
    assert {x.asset_id: x.child_dispatch_id for x in second.lines} == {
        "bess-1": f"{p}.bess-1.v2",
        "bess-2": f"{p}.bess-2",
    }
    # the v1 child ends when the agent hands bess-1 over to the v2 setpoint
    await b.wait_state(f"{p}.bess-1", S.CANCELLED)
    superseded = b.transitions[f"{p}.bess-1"][-1]
    assert (superseded.from_state, superseded.reason) == (S.SENT, ReasonCode.SUPERSEDED)
    assert (superseded.actor, superseded.detail) == ("agent", f"superseded by {p}.bess-1.v2")

    await _complete(dev, f"{p}.bess-1.v2", "bess-1", v2["bess-1"])
    await _complete(dev, f"{p}.bess-2", "bess-2", v2["bess-2"])
    result = await dev.result(parent)

    assert result.state is S.COMPLETE
    assert result.requested_kw == target_kw
    assert result.delivered_kw == pytest.approx(delivered_kw)
    assert "bess-1.v2=complete" in result.detail  # names the asset, not just "v2"
    assert "pv-1=failed" in result.detail
    assert b.states(p) == HAPPY_PATH
    assert b.states(f"{p}.pv-1") == [S.SUBMITTED, S.SENT, S.FAILED]
    assert b.called("deliver_release") == []  # superseded and rejected: no Release
    if target_kw == 150.0:
        # site_respread.json: the path before patch "children-together"
        await record_histories(site_respread_together=parent)


async def test_site_child_whose_agent_is_offline_expires_and_is_respread(dev):
    b = dev.backend
    parent = await _start_site(dev, 100.0, deliver_s=2.0, offline=("pv-1",))
    p = parent.id
    v2 = _shares(100.0, excluded=("pv-1",))
    # bess-2 keeps its share through the respread: brought active at once, so its
    # own 2 s delivery window does not run out while pv-1's does (a busy machine).
    await _to_active(dev, f"{p}.bess-2", "bess-2", v2["bess-2"])

    await b.wait_state(f"{p}.pv-1", S.EXPIRED)
    await b.wait_state(f"{p}.bess-1.v2", S.SENT)
    await _complete(dev, f"{p}.bess-1.v2", "bess-1", v2["bess-1"])
    await b.ack(f"{p}.bess-2", "completed", asset_id="bess-2", applied_p_kw=v2["bess-2"])
    result = await dev.result(parent)

    assert b.transitions[f"{p}.pv-1"][-1].reason is ReasonCode.AGENT_OFFLINE
    assert [a.version for a in b.allocations] == [1, 2]
    assert result.state is S.COMPLETE
    assert (result.requested_kw, result.delivered_kw) == (100.0, pytest.approx(100.0))


async def test_cancelling_site_dispatch_after_a_respread_cancels_every_live_child(dev):
    b = dev.backend
    parent = await _start_site(dev, 150.0)
    p = parent.id
    for asset_id in ASSET_IDS:
        await b.wait_state(f"{p}.{asset_id}", S.SENT)
    await b.ack(f"{p}.pv-1", "rejected", asset_id="pv-1", reason=ReasonCode.OUT_OF_LIMITS)
    await _to_active(dev, f"{p}.bess-1.v2", "bess-1", 100.0)
    await _to_active(dev, f"{p}.bess-2", "bess-2", 20.0)
    await b.wait_state(f"{p}.bess-1", S.CANCELLED)

    await parent.signal(DispatchWorkflow.cancel, CancelRequest(actor="op-bob", detail="storm"))
    result = await dev.result(parent)

    assert result.state is S.CANCELLED
    assert result.reason is ReasonCode.CANCELLED_BY_OPERATOR
    # bess-1.v2 and bess-2 ran until the cancel (site-outcome: delivered, not 0)
    assert result.delivered_kw == pytest.approx(120.0)
    assert b.transitions[p][-1].actor == "op-bob"
    for cid in (f"{p}.bess-1.v2", f"{p}.bess-2"):
        last = b.transitions[cid][-1]
        assert (last.to_state, last.reason, last.actor) == (
            S.CANCELLED,
            ReasonCode.CANCELLED_BY_OPERATOR,
            "op-bob",
        )
    assert b.transitions[f"{p}.bess-1"][-1].reason is ReasonCode.SUPERSEDED
    assert b.states(f"{p}.pv-1")[-1] is S.FAILED
    released = sorted((c.arg.dispatch_id, c.arg.reason) for c in b.called("deliver_release"))
    assert released == [
        (f"{p}.bess-1.v2", ReasonCode.CANCELLED_BY_OPERATOR),
        (f"{p}.bess-2", ReasonCode.CANCELLED_BY_OPERATOR),
    ]
    assert [a.version for a in b.allocations] == [1, 2]  # a cancel re-spreads nothing


async def test_site_children_failing_moments_apart_are_both_respread_around(dev):
    """The second child ends while the parent is still writing allocation v2 (the write
    is slow: it fails once and is retried); the parent must not trip over it."""
    b = dev.backend
    parent = await _start_site(dev, 150.0)
    p = parent.id
    for asset_id in ASSET_IDS:
        await b.wait_state(f"{p}.{asset_id}", S.SENT)
    b.allocations = _SlowWrite(b, version=2, until_ended=f"{p}.bess-2")

    await b.ack(f"{p}.pv-1", "rejected", asset_id="pv-1", reason=ReasonCode.DEVICE_UNREACHABLE)
    await b.wait_until("the v2 allocation write", lambda: len(b.called("record_allocation")) >= 2)
    await b.ack(f"{p}.bess-2", "rejected", asset_id="bess-2", reason=ReasonCode.DEVICE_UNREACHABLE)
    await b.wait_state(f"{p}.bess-1.v2", S.SENT)
    await b.wait_until("allocation v3", lambda: len(b.allocations) == 3)
    await _complete(dev, f"{p}.bess-1.v2", "bess-1", 100.0)
    result = await dev.result(parent)

    assert result.state is S.COMPLETE
    assert (result.requested_kw, result.delivered_kw) == (150.0, pytest.approx(100.0))
    assert [a.version for a in b.allocations] == [1, 2, 3]
    v3 = b.allocations[2]
    assert [(x.asset_id, x.p_kw, x.child_dispatch_id) for x in v3.lines] == [
        ("bess-1", 100.0, f"{p}.bess-1.v2")  # its share is unchanged: no v3 child
    ]
    assert _children_of(dev, p) == [f"{p}.bess-1", f"{p}.bess-1.v2", f"{p}.bess-2", f"{p}.pv-1"]


class _SlowWrite(list):  # type: ignore[type-arg]
    """``FakeBackend.allocations`` whose write of one allocation version fails (the
    activity is retried, ~1 s later) until a given dispatch has ended."""

    def __init__(self, backend, version: int, until_ended: str) -> None:
        super().__init__(backend.allocations)
        self._backend = backend
        self._version = version
        self._until_ended = until_ended

    def append(self, rec) -> None:
        if rec.version == self._version and not self._backend._ended(self._until_ended):
            raise RuntimeError("database busy")
        super().append(rec)


async def test_temporal_cancel_of_site_dispatch_records_cancelled_and_cancels_children(dev):
    """An operator presses Cancel on the site dispatch in the Temporal UI."""
    b = dev.backend
    b.agent_replies = ["accepted", "applied"]
    parent = await _start_site(dev, 150.0)
    await b.wait_state(parent.id, S.ACTIVE)

    await parent.cancel()
    result = await dev.result(parent)

    assert result.state is S.CANCELLED
    assert result.reason is ReasonCode.CANCELLED_BY_OPERATOR
    assert result.delivered_kw == pytest.approx(150.0)  # it ran until the cancel
    assert (await parent.describe()).status == WorkflowExecutionStatus.CANCELED
    assert b.states(parent.id) == [S.SUBMITTED, S.SENT, S.ACKED, S.ACTIVE, S.CANCELLED]
    assert b.transitions[parent.id][-1].actor == "temporal"
    children = _children_of(dev, parent.id)
    assert children == sorted(f"{parent.id}.{a}" for a in ASSET_IDS)
    for cid in children:
        assert b.states(cid) == [S.SUBMITTED, S.SENT, S.ACKED, S.ACTIVE, S.CANCELLED]
    released = sorted(c.arg.dispatch_id for c in b.called("deliver_release"))
    assert released == children


# ---------------------------------------------------------------- supersede at handover


async def _superseded_by(harness, dispatch_id: str) -> str | None:
    """Once the workflow has taken in the supersede (its claim's cancel signal)."""

    async def taken_in() -> str | None:
        return (await _status(harness, dispatch_id)).superseded_by

    return await wait_for(taken_in, what=f"{dispatch_id} to take in its supersede", interval=0.1)


@pytest.mark.parametrize("how", ["agent-rejects", "limits-changed"])
async def test_superseding_dispatch_that_never_takes_over_leaves_the_old_one_running(
    dev, record_histories, how
):
    b = dev.backend
    b.routes[ASSET] = _route(dev, -100.0, 100.0)
    old = await dev.start(await dev.dispatch_input(duration_s=30, p_kw=30.0))
    await _to_active(dev, old.id, p_kw=30.0)

    if how == "limits-changed":
        b.routes[ASSET] = _route(dev, -40.0, 40.0)
    new_inp = await dev.dispatch_input(duration_s=30, p_kw=80.0)
    if how == "agent-rejects":
        b.agent_rejects[new_inp.dispatch_id] = ReasonCode.OUT_OF_LIMITS  # its own rails
    new = await dev.start(new_inp)
    new_result = await dev.result(new)
    assert (new_result.state, new_result.reason) == (S.FAILED, ReasonCode.OUT_OF_LIMITS)
    assert b.superseded_by == {old.id: new.id}  # it claimed the asset ...

    # ... but never took over: the old setpoint still runs and is recorded so
    assert await _superseded_by(dev, old.id) == new.id
    assert (await _status(dev, old.id)).state is S.ACTIVE
    assert b.agent_active == {ASSET: old.id}
    # the agent completes it at its end
    await b.ack(old.id, "completed", asset_id=ASSET, applied_p_kw=30.0)
    old_result = await dev.result(old)
    assert (old_result.state, old_result.reason) == (S.COMPLETE, None)
    assert old_result.applied_p_kw == 30.0
    assert b.states(old.id) == HAPPY_PATH
    assert b.called("deliver_release") == []
    if how == "agent-rejects":
        await record_histories(superseded_never_taken_over=old)


async def test_superseded_dispatch_whose_successor_never_takes_over_is_ended_at_its_end_at(
    skipping,
):
    """The agent never confirms the old one's end either: the headend ends it at its
    end_at (complete, with a LEASE_ENDED Release), as any active dispatch."""
    b = skipping.backend
    b.online(ASSET)
    old_inp = await skipping.dispatch_input(duration_s=3600, ack_timeout_s=60)
    old = await skipping.start(old_inp)
    await _to_active(skipping, old.id)
    new_inp = await skipping.dispatch_input(duration_s=3600, ack_timeout_s=60, p_kw=80.0)
    b.agent_rejects[new_inp.dispatch_id] = ReasonCode.OUT_OF_LIMITS
    new = await skipping.start(new_inp)
    assert (await skipping.result(new)).state is S.FAILED
    assert await _superseded_by(skipping, old.id) == new.id

    old_result = await skipping.result(old)  # skips the hour

    assert (old_result.state, old_result.reason) == (S.COMPLETE, None)
    assert b.states(old.id) == HAPPY_PATH
    ended = b.transitions[old.id][-1]
    assert (ended.actor, ended.reason) == ("headend", None)
    assert ended.at >= old_inp.end_at
    (release,) = b.called("deliver_release")
    assert (release.arg.dispatch_id, release.arg.reason) == (old.id, ReasonCode.LEASE_ENDED)


async def test_scheduled_dispatch_supersedes_the_running_one_only_when_it_takes_over(skipping):
    b = skipping.backend
    env = skipping.env
    b.online(ASSET)
    running = await skipping.start(
        await skipping.dispatch_input(duration_s=3 * 3600, ack_timeout_s=60)
    )
    await _to_active(skipping, running.id)
    later_inp = _shift(
        await skipping.dispatch_input(duration_s=3600, ack_timeout_s=60),
        timedelta(hours=2),
        deliver_s=300,
    )
    later = await skipping.start(later_inp)
    await _wait_for_timer(skipping, later)  # its claim (and the supersede) is done

    assert await _superseded_by(skipping, running.id) == later.id
    assert (await _status(skipping, running.id)).state is S.ACTIVE

    # delivered 30 s before its start, the agent holds it for then: still no handover
    await env.sleep(later_inp.start_at - START_LEAD - (await skipping.now()) + timedelta(seconds=5))
    await b.wait_state(later.id, S.SENT)
    await b.ack(later.id, "accepted", asset_id=ASSET)
    await b.wait_state(later.id, S.ACKED)
    assert b.agent_scheduled == {ASSET: later.id}
    assert (await _status(skipping, running.id)).state is S.ACTIVE

    # at its start it takes over: only now does the running one end
    await env.sleep(later_inp.start_at - (await skipping.now()) + timedelta(seconds=1))
    await b.ack(later.id, "applied", asset_id=ASSET, applied_p_kw=50.0)
    result = await skipping.result(running)

    assert (result.state, result.reason) == (S.CANCELLED, ReasonCode.SUPERSEDED)
    assert result.detail == f"superseded by {later.id}"
    assert b.states(running.id) == [S.SUBMITTED, S.SENT, S.ACKED, S.ACTIVE, S.CANCELLED]
    ended = b.transitions[running.id][-1]
    assert ended.actor == "agent"
    assert ended.at >= later_inp.start_at
    await b.wait_state(later.id, S.ACTIVE)
    assert b.called("deliver_release") == []
    # Not awaited to its end (that lets the server skip to its end_at). An
    # operator cancel here timed out now and then on the time-skipping server
    # (2 of 5 full-suite runs; the same path passes on the dev server in
    # test_cancel_while_active_releases_asset_and_ends_cancelled_by_operator),
    # so the test ends it by terminating.
    await later.terminate("test over")
