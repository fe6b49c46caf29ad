"""DispatchWorkflow (one asset) on a real Temporal server, with in-memory activities.

Short dispatches run on the dev server in real time (ack windows of 1-2 s);
long timers (a 2 h dispatch, a 5 s pick-up timeout) run on the time-skipping server.
"""

from __future__ import annotations

import contextlib
from datetime import timedelta
from uuid import uuid4

import pytest
from gp_testing import wait_for
from temporalio.api.enums.v1 import EventType, TimeoutType
from temporalio.client import WorkflowFailureError
from temporalio.service import RPCError, RPCStatusCode
from temporalio.worker import Worker

from gridpilot.core.lifecycle import DispatchState, ReasonCode
from gridpilot.workflows.calls import DELIVERY_PICKUP
from gridpilot.workflows.constants import SIGNAL_CANCEL
from gridpilot.workflows.dispatch import DispatchWorkflow
from gridpilot.workflows.dispatch_rules import END_GRACE
from gridpilot.workflows.models import CancelRequest, DispatchStatus

pytestmark = pytest.mark.integration

S = DispatchState
ASSET = "bess-1"
HAPPY_PATH = [S.SUBMITTED, S.SENT, S.ACKED, S.ACTIVE, S.COMPLETE]


async def _to_active(harness, handle, applied_p_kw: float = 49.5) -> None:
    b = harness.backend
    await b.wait_state(handle.id, S.SENT)
    await b.ack(handle.id, "accepted", asset_id=ASSET)
    await b.wait_state(handle.id, S.ACKED)
    await b.ack(handle.id, "applied", asset_id=ASSET, applied_p_kw=applied_p_kw)
    await b.wait_state(handle.id, S.ACTIVE)


# ---------------------------------------------------------------- happy path


async def test_agent_accepting_applying_and_completing_takes_dispatch_to_complete(
    dev, record_histories
):
    b = dev.backend
    b.online(ASSET)
    inp = await dev.dispatch_input(p_kw=50.0)
    handle = await dev.start(inp)

    await _to_active(dev, handle, applied_p_kw=49.5)
    await b.ack(handle.id, "completed", asset_id=ASSET, reason=ReasonCode.LEASE_ENDED)
    result = await dev.result(handle)

    assert result.state is S.COMPLETE
    assert result.reason is None
    assert result.applied_p_kw == 49.5
    recorded = b.transitions[inp.dispatch_id]
    assert [r.seq for r in recorded] == [1, 2, 3, 4, 5]
    assert [r.to_state for r in recorded] == HAPPY_PATH
    assert [r.from_state for r in recorded] == [None, *HAPPY_PATH[:-1]]
    assert [r.actor for r in recorded] == ["op-alice", "headend", "agent", "agent", "agent"]
    assert [r.applied_p_kw for r in recorded] == [None, None, None, 49.5, 49.5]
    assert all(a.at <= z.at for a, z in zip(recorded, recorded[1:], strict=False))
    # the dispatch row is written with its first transition, before any other
    names = [c.name for c in b.calls if c.name.startswith("record_")]
    assert names[0] == "record_submission"
    assert "record_dispatch" not in names
    assert b.dispatches[inp.dispatch_id] == inp
    # the setpoint went to the replica holding the agent's stream, once
    (deliver,) = b.called("deliver_setpoint")
    assert deliver.task_queue == b.headend_queue
    assert deliver.arg.model_dump() == {
        "dispatch_id": inp.dispatch_id,
        "asset_id": ASSET,
        "gateway_id": "gw-test",
        "p_kw": 50.0,
        "start_at": inp.start_at,
        "end_at": inp.end_at,
        "q_kvar": None,
        "ramp_kw_per_s": None,
    }
    assert b.called("deliver_release") == []
    status: DispatchStatus = await handle.query(DispatchWorkflow.status)
    assert status.state is S.COMPLETE
    assert status.transitions == recorded
    assert status.late_acks == []
    await record_histories(complete=handle)


async def test_agent_acks_arriving_before_sent_is_recorded_are_applied_in_order(dev):
    """The agent may answer before the deliver activity's completion reaches the workflow."""
    b = dev.backend
    b.online(ASSET)
    b.agent_replies = ["accepted", "applied", "completed"]
    handle = await dev.start(await dev.dispatch_input())

    result = await dev.result(handle)

    assert result.state is S.COMPLETE
    assert result.applied_p_kw == 50.0
    assert b.states(handle.id) == HAPPY_PATH


async def test_agent_never_confirming_the_end_is_ended_by_headend_at_end_at_with_release(
    skipping, record_histories
):
    b = skipping.backend
    b.online(ASSET)
    inp = await skipping.dispatch_input(duration_s=2 * 3600, deliver_s=60, ack_timeout_s=30)
    handle = await skipping.start(inp)
    await _to_active(skipping, handle, applied_p_kw=50.0)

    result = await skipping.result(handle)  # skips the 2 h

    assert result.state is S.COMPLETE
    assert result.applied_p_kw == 50.0
    recorded = b.transitions[inp.dispatch_id]
    assert [r.to_state for r in recorded] == HAPPY_PATH
    end = recorded[-1]
    assert end.actor == "headend"
    assert end.reason is None
    assert "end_at" in end.detail
    assert end.at >= inp.end_at + END_GRACE
    (release,) = b.called("deliver_release")
    assert release.arg.reason is ReasonCode.LEASE_ENDED
    assert release.arg.dispatch_id == inp.dispatch_id
    assert release.arg.gateway_id == "gw-test"
    assert release.task_queue == b.headend_queue
    await record_histories(ended_by_headend=handle)


# ---------------------------------------------------------------- delivery


async def test_agent_offline_until_deliver_by_expires_with_agent_offline(dev, record_histories):
    b = dev.backend
    b.offline(ASSET)
    inp = await dev.dispatch_input(deliver_s=2.5)
    handle = await dev.start(inp)

    result = await dev.result(handle)

    assert result.state is S.EXPIRED
    assert result.reason is ReasonCode.AGENT_OFFLINE
    assert b.states(inp.dispatch_id) == [S.SUBMITTED, S.EXPIRED]
    assert b.transitions[inp.dispatch_id][-1].at >= inp.deliver_by
    assert len(b.called("resolve_route")) >= 2  # it kept looking for the agent
    assert b.called("deliver_setpoint") == []
    await record_histories(expired_agent_offline=handle)


async def test_agent_coming_online_before_deliver_by_gets_the_setpoint(dev, record_histories):
    b = dev.backend
    b.offline(ASSET)
    inp = await dev.dispatch_input(deliver_s=20)
    handle = await dev.start(inp)
    await b.wait_until("a first route lookup", lambda: len(b.called("resolve_route")) >= 1)
    assert b.states(inp.dispatch_id) == [S.SUBMITTED]

    b.online(ASSET)
    await b.wait_state(inp.dispatch_id, S.SENT)

    assert len(b.called("deliver_setpoint")) == 1
    assert len(b.called("resolve_route")) >= 2
    await b.ack(handle.id, "completed", asset_id=ASSET, applied_p_kw=50.0)
    result = await dev.result(handle)
    assert result.state is S.COMPLETE
    assert b.states(inp.dispatch_id) == HAPPY_PATH
    await record_histories(delivered_after_offline=handle)


async def test_setpoint_write_failing_because_stream_dropped_is_delivered_after_new_lookup(dev):
    b = dev.backend
    b.online(ASSET)
    b.deliver_failures = 1  # the session vanished between lookup and write
    b.agent_replies = ["accepted"]
    inp = await dev.dispatch_input(deliver_s=20)
    handle = await dev.start(inp)

    await b.wait_state(inp.dispatch_id, S.ACKED)

    assert len(b.called("deliver_setpoint")) == 2
    assert len(b.called("resolve_route")) == 2
    await handle.signal(SIGNAL_CANCEL, CancelRequest(actor="op-bob"))
    assert (await dev.result(handle)).state is S.CANCELLED


async def test_unknown_asset_fails_with_unknown_asset(dev, record_histories):
    b = dev.backend  # no route at all: the registry does not know the asset
    inp = await dev.dispatch_input(asset_id="ghost-1")
    handle = await dev.start(inp)

    result = await dev.result(handle)

    assert result.state is S.FAILED
    assert result.reason is ReasonCode.UNKNOWN_ASSET
    assert "ghost-1" in result.detail
    assert b.states(inp.dispatch_id) == [S.SUBMITTED, S.FAILED]
    assert b.called("deliver_setpoint") == []
    await record_histories(failed_unknown_asset=handle)


async def test_headend_queue_without_worker_times_out_on_pickup_and_route_is_resolved_again(
    skipping, record_histories
):
    """The replica that held the agent's stream died: nobody polls its queue."""
    b = skipping.backend
    dead_queue = f"headend-dead-{uuid4().hex}"
    b.online(ASSET, queue=dead_queue)
    b.agent_replies = ["accepted", "applied", "completed"]
    inp = await skipping.dispatch_input(duration_s=600, deliver_s=120, ack_timeout_s=30)
    handle = await skipping.start(inp)
    await b.wait_until("a first route lookup", lambda: len(b.called("resolve_route")) >= 1)
    b.online(ASSET)  # the agent reconnected to a live replica

    result = await skipping.result(handle)

    assert result.state is S.COMPLETE
    timed_out = [
        e.activity_task_timed_out_event_attributes
        async for e in handle.fetch_history_events()
        if e.event_type == EventType.EVENT_TYPE_ACTIVITY_TASK_TIMED_OUT
    ]
    assert len(timed_out) == 1
    timeout = timed_out[0].failure.timeout_failure_info.timeout_type
    assert timeout == TimeoutType.TIMEOUT_TYPE_SCHEDULE_TO_START
    (delivered,) = b.called("deliver_setpoint")  # only the live replica ran it
    assert delivered.task_queue == b.headend_queue
    assert len(b.called("resolve_route")) == 2
    sent = b.transitions[inp.dispatch_id][1]
    assert sent.to_state is S.SENT
    assert sent.at - b.transitions[inp.dispatch_id][0].at >= DELIVERY_PICKUP
    await record_histories(redelivered_after_dead_headend=handle)


async def test_a_replica_from_before_the_recorded_delivery_still_gets_the_setpoint(dev):
    """A rolling upgrade: the agent's replica runs an older headend without
    ``deliver_setpoint_sent``. The workflow delivers the old way and writes SENT
    itself, instead of retrying until deliver_by."""
    b = dev.backend
    old_queue = f"headend-old-{uuid4().hex}"
    b.online(ASSET, queue=old_queue)
    b.agent_replies = ["accepted", "applied", "completed"]
    inp = await dev.dispatch_input(duration_s=2)
    old = Worker(
        dev.env.client, task_queue=old_queue, activities=[b.deliver_setpoint, b.deliver_release]
    )
    async with old:
        handle = await dev.start(inp)
        result = await dev.result(handle)

    assert result.state is S.COMPLETE
    assert b.states(inp.dispatch_id) == HAPPY_PATH
    (delivered,) = b.called("deliver_setpoint")
    assert delivered.task_queue == old_queue
    sent = [c.arg for c in b.called("record_transition") if c.arg.to_state is S.SENT]
    assert len(sent) == 1 and sent[0].detail.startswith("gateway ")


# ---------------------------------------------------------------- agent answers


async def test_agent_rejecting_out_of_limits_fails_dispatch_with_that_reason(dev, record_histories):
    b = dev.backend
    b.online(ASSET)
    inp = await dev.dispatch_input(p_kw=500.0)
    handle = await dev.start(inp)
    await b.wait_state(inp.dispatch_id, S.SENT)

    await b.ack(
        handle.id,
        "rejected",
        asset_id=ASSET,
        reason=ReasonCode.OUT_OF_LIMITS,
        detail="p_kw 500.0 above p_max_kw 100.0",
    )
    result = await dev.result(handle)

    assert result.state is S.FAILED
    assert result.reason is ReasonCode.OUT_OF_LIMITS
    assert result.detail == "p_kw 500.0 above p_max_kw 100.0"
    assert b.states(inp.dispatch_id) == [S.SUBMITTED, S.SENT, S.FAILED]
    failed = b.transitions[inp.dispatch_id][-1]
    assert (failed.seq, failed.actor, failed.reason) == (3, "agent", ReasonCode.OUT_OF_LIMITS)
    assert b.called("deliver_release") == []  # nothing was applied
    await record_histories(failed_rejected=handle)


async def test_no_ack_within_ack_timeout_expires_with_deadline_passed(dev, record_histories):
    b = dev.backend
    b.online(ASSET)
    inp = await dev.dispatch_input(ack_timeout_s=1.0)
    handle = await dev.start(inp)

    result = await dev.result(handle)

    assert result.state is S.EXPIRED
    assert result.reason is ReasonCode.DEADLINE_PASSED
    submitted, sent, expired = b.transitions[inp.dispatch_id]
    assert (sent.to_state, expired.to_state) == (S.SENT, S.EXPIRED)
    assert expired.at - sent.at >= timedelta(seconds=1)
    assert expired.at < inp.end_at
    await record_histories(expired_deadline_passed=handle)


# ---------------------------------------------------------------- cancel


async def test_cancel_while_active_releases_asset_and_ends_cancelled_by_operator(
    dev, record_histories
):
    b = dev.backend
    b.online(ASSET)
    inp = await dev.dispatch_input(duration_s=30)
    handle = await dev.start(inp)
    await _to_active(dev, handle)

    await handle.signal(
        DispatchWorkflow.cancel, CancelRequest(actor="op-bob", detail="price spike over")
    )
    result = await dev.result(handle)

    assert result.state is S.CANCELLED
    assert result.reason is ReasonCode.CANCELLED_BY_OPERATOR
    assert result.detail == "price spike over"
    cancelled = b.transitions[inp.dispatch_id][-1]
    assert (cancelled.seq, cancelled.from_state, cancelled.to_state) == (5, S.ACTIVE, S.CANCELLED)
    assert cancelled.actor == "op-bob"
    assert cancelled.reason is ReasonCode.CANCELLED_BY_OPERATOR
    (release,) = b.called("deliver_release")
    assert release.arg.reason is ReasonCode.CANCELLED_BY_OPERATOR
    assert (release.arg.dispatch_id, release.arg.asset_id) == (inp.dispatch_id, ASSET)
    assert release.task_queue == b.headend_queue
    await record_histories(cancelled_active=handle)


async def test_cancel_before_delivery_ends_cancelled_without_any_delivery(dev, record_histories):
    b = dev.backend
    b.offline(ASSET)
    inp = await dev.dispatch_input(deliver_s=30)
    handle = await dev.start(inp)
    await b.wait_until("a first route lookup", lambda: len(b.called("resolve_route")) >= 1)

    await handle.signal(SIGNAL_CANCEL, CancelRequest(actor="op-bob"))
    result = await dev.result(handle)

    assert result.state is S.CANCELLED
    assert result.reason is ReasonCode.CANCELLED_BY_OPERATOR
    assert b.states(inp.dispatch_id) == [S.SUBMITTED, S.CANCELLED]
    assert b.transitions[inp.dispatch_id][-1].actor == "op-bob"
    assert b.called("deliver_setpoint") == []
    assert b.called("deliver_release") == []
    await record_histories(cancelled_before_delivery=handle)


# ---------------------------------------------------------------- late acks


async def test_ack_after_the_workflow_closed_is_refused_and_changes_nothing(dev):
    """A closed workflow takes no signal (NOT_FOUND): the headend logs it as a late ack."""
    b = dev.backend
    b.online(ASSET)
    b.agent_replies = ["accepted", "applied", "completed"]
    handle = await dev.start(await dev.dispatch_input())
    result = await dev.result(handle)
    recorded = len(b.called("record_transition"))

    with pytest.raises(RPCError) as refused:
        await b.ack(handle.id, "released", asset_id=ASSET, reason=ReasonCode.LINK_LOST_REVERTED)

    assert refused.value.status == RPCStatusCode.NOT_FOUND
    assert (await handle.result()) == result
    status: DispatchStatus = await handle.query(DispatchWorkflow.status)
    assert status.state is S.COMPLETE
    assert [t.to_state for t in status.transitions] == HAPPY_PATH
    assert len(b.called("record_transition")) == recorded


async def test_agent_answer_arriving_while_dispatch_ends_is_kept_as_late_ack(dev, record_histories):
    """The agent answers the cancel's Release at once; the workflow is already ending."""
    b = dev.backend
    b.online(ASSET)
    b.reply_to_release = True
    inp = await dev.dispatch_input(duration_s=30)
    handle = await dev.start(inp)
    await _to_active(dev, handle)

    await handle.signal(DispatchWorkflow.cancel, CancelRequest(actor="op-bob"))
    result = await dev.result(handle)

    assert result.state is S.CANCELLED  # the late ack changed nothing
    assert result.reason is ReasonCode.CANCELLED_BY_OPERATOR
    assert b.states(inp.dispatch_id)[-1] is S.CANCELLED
    status: DispatchStatus = await handle.query(DispatchWorkflow.status)
    assert [(a.state, a.reason) for a in status.late_acks] == [
        ("released", ReasonCode.CANCELLED_BY_OPERATOR)
    ]
    # ... and written where the acks after the end go (dispatch_late_acks), not
    # only into the workflow's result.
    kept = [c.arg for c in b.called("record_late_ack")]
    assert [(a.dispatch_id, a.state, a.reason) for a in kept] == [
        (inp.dispatch_id, "released", ReasonCode.CANCELLED_BY_OPERATOR)
    ]
    await record_histories(late_ack_while_ending=handle)


async def test_repeated_applied_ack_while_active_is_ignored(dev):
    """The agent answers a redelivered setpoint with its latest ack again (edge_agent.acks)."""
    b = dev.backend
    b.online(ASSET)
    inp = await dev.dispatch_input()
    handle = await dev.start(inp)
    await _to_active(dev, handle, applied_p_kw=50.0)

    await b.ack(handle.id, "applied", asset_id=ASSET, applied_p_kw=50.0)
    await _took_in_last_signal(handle)  # on its own, not together with the next one
    await b.ack(handle.id, "completed", asset_id=ASSET, applied_p_kw=50.0)
    result = await dev.result(handle)

    assert result.state is S.COMPLETE
    assert b.states(inp.dispatch_id) == HAPPY_PATH


async def _took_in_last_signal(handle) -> None:
    """Until a workflow task completed after the last signal: the workflow saw it
    (a signal that lands during a task is written after that task's completion)."""

    async def took_in() -> bool:
        events = [e.event_type async for e in handle.fetch_history_events()]
        signalled = EventType.EVENT_TYPE_WORKFLOW_EXECUTION_SIGNALED
        last = max(i for i, e in enumerate(events) if e == signalled)
        return EventType.EVENT_TYPE_WORKFLOW_TASK_COMPLETED in events[last:]

    await wait_for(took_in, what=f"{handle.id} to take in its last signal", interval=0.1)


# ---------------------------------------------------------------- visibility


async def test_dispatch_state_search_attribute_follows_the_lifecycle(dev):
    b = dev.backend
    b.online(ASSET)
    inp = await dev.dispatch_input(duration_s=30)
    handle = await dev.start(inp)
    await _to_active(dev, handle)
    await _wait_listed(dev.client, f'DispatchState = "active" AND WorkflowId = "{handle.id}"')

    await b.ack(handle.id, "completed", asset_id=ASSET, applied_p_kw=49.5)
    await dev.result(handle)

    query = f'DispatchState = "complete" AND AssetId = "{ASSET}" AND WorkflowId = "{handle.id}"'
    (listed,) = await _wait_listed(dev.client, query)
    assert listed.workflow_type == "DispatchWorkflow"


async def _wait_listed(client, query: str) -> list:
    """Visibility is eventually consistent: poll the list until the query matches."""

    async def listed() -> list:
        return [w async for w in client.list_workflows(query)]

    return await wait_for(listed, what=f"a workflow listed for {query!r}", interval=0.1)


async def test_temporal_cancel_request_while_active_releases_and_records_cancelled(dev):
    """An operator presses Cancel in the Temporal UI instead of the console."""
    b = dev.backend
    b.online(ASSET)
    inp = await dev.dispatch_input(duration_s=30)
    handle = await dev.start(inp)
    await _to_active(dev, handle)

    await handle.cancel()
    with contextlib.suppress(WorkflowFailureError):  # today it ends as Temporal-cancelled
        await dev.result(handle)

    assert b.states(inp.dispatch_id)[-1] is S.CANCELLED
    assert [c.arg.reason for c in b.called("deliver_release")] == [ReasonCode.CANCELLED_BY_OPERATOR]
