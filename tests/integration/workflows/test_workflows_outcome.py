"""The Temporal execution status tells the dispatch's business outcome (patch
``outcome-status``): failed / expired → a failed execution (non-retryable, its
reason code as the error type), cancelled → a cancelled execution, complete →
completed; the ``current_state`` query says where it is or how it ended."""

from __future__ import annotations

import pytest
from gp_testing.workflows import dispatch_result
from temporalio.client import WorkflowExecutionStatus, WorkflowFailureError
from temporalio.exceptions import ApplicationError, CancelledError
from temporalio.service import RPCError, RPCStatusCode

from gridpilot.core.lifecycle import DispatchState, ReasonCode
from gridpilot.workflows.constants import QUERY_CURRENT_STATE
from gridpilot.workflows.dispatch import DispatchWorkflow
from gridpilot.workflows.models import CancelRequest, DispatchResult

pytestmark = pytest.mark.integration

S = DispatchState
ASSET = "bess-1"


async def _activities(handle) -> list[str]:
    return [
        e.activity_task_scheduled_event_attributes.activity_type.name
        async for e in handle.fetch_history_events()
        if e.HasField("activity_task_scheduled_event_attributes")
    ]


async def _failure(handle) -> BaseException:
    with pytest.raises(WorkflowFailureError) as ended:
        await handle.result()
    assert ended.value.cause is not None
    return ended.value.cause


async def test_agent_rejection_ends_as_failed_execution_typed_by_reason(dev, record_histories):
    b = dev.backend
    b.online(ASSET)
    inp = await dev.dispatch_input()
    b.agent_rejects[inp.dispatch_id] = ReasonCode.OUT_OF_LIMITS
    handle = await dev.start(inp)

    result = await dev.result(handle)

    assert (result.state, result.reason) == (S.FAILED, ReasonCode.OUT_OF_LIMITS)
    assert (await handle.describe()).status == WorkflowExecutionStatus.FAILED
    cause = await _failure(handle)
    assert isinstance(cause, ApplicationError)
    assert cause.type == "OUT_OF_LIMITS"
    assert cause.non_retryable
    assert b.states(inp.dispatch_id)[-1] is S.FAILED  # the record says the same
    state = await handle.query(QUERY_CURRENT_STATE, result_type=DispatchResult)
    assert (state.state, state.reason) == (S.FAILED, ReasonCode.OUT_OF_LIMITS)
    # a late ack still reads as "closed" (ingest/acks.py keeps it as late, no retry)
    with pytest.raises(RPCError) as late:
        await b.ack(inp.dispatch_id, "applied", asset_id=ASSET)
    assert late.value.status == RPCStatusCode.NOT_FOUND
    assert "already completed" in late.value.message
    await record_histories(outcome_failed=handle)


async def test_agent_offline_until_deliver_by_ends_as_failed_execution(dev, record_histories):
    b = dev.backend
    b.offline(ASSET)
    handle = await dev.start(await dev.dispatch_input(deliver_s=1.0))

    result = await dev.result(handle)

    assert (result.state, result.reason) == (S.EXPIRED, ReasonCode.AGENT_OFFLINE)
    assert (await handle.describe()).status == WorkflowExecutionStatus.FAILED
    cause = await _failure(handle)
    assert isinstance(cause, ApplicationError)
    assert cause.type == "AGENT_OFFLINE"
    await record_histories(outcome_expired=handle)


async def test_operator_cancel_ends_as_cancelled_execution(dev, record_histories):
    b = dev.backend
    b.online(ASSET)
    b.agent_replies = ["accepted", "applied"]
    inp = await dev.dispatch_input(duration_s=30)
    handle = await dev.start(inp)
    await b.wait_state(inp.dispatch_id, S.ACTIVE)
    state = await handle.query(DispatchWorkflow.current_state)
    assert state.state is S.ACTIVE

    await handle.signal(DispatchWorkflow.cancel, CancelRequest(actor="op-bob", detail="storm"))
    result = await dev.result(handle)

    assert (result.state, result.reason) == (S.CANCELLED, ReasonCode.CANCELLED_BY_OPERATOR)
    assert (await handle.describe()).status == WorkflowExecutionStatus.CANCELED
    assert isinstance(await _failure(handle), CancelledError)
    assert b.states(inp.dispatch_id)[-1] is S.CANCELLED
    assert [c.arg.reason for c in b.called("deliver_release")] == [ReasonCode.CANCELLED_BY_OPERATOR]
    assert (await _activities(handle))[-1] == "request_own_cancel"
    await record_histories(outcome_cancelled=handle)


async def test_temporal_cancel_ends_as_cancelled_execution_and_is_recorded(dev):
    b = dev.backend
    b.online(ASSET)
    b.agent_replies = ["accepted", "applied"]
    inp = await dev.dispatch_input(duration_s=30)
    handle = await dev.start(inp)
    await b.wait_state(inp.dispatch_id, S.ACTIVE)

    await handle.cancel()
    result = await dispatch_result(handle)

    assert result.state is S.CANCELLED
    assert (await handle.describe()).status == WorkflowExecutionStatus.CANCELED
    assert b.states(inp.dispatch_id)[-1] is S.CANCELLED
    assert "request_own_cancel" not in await _activities(handle)  # it was cancelled already


async def test_complete_dispatch_ends_as_completed_execution(dev):
    b = dev.backend
    b.online(ASSET)
    b.agent_replies = ["accepted", "applied", "completed"]
    handle = await dev.start(await dev.dispatch_input())

    assert (await dev.result(handle)).state is S.COMPLETE
    assert (await handle.describe()).status == WorkflowExecutionStatus.COMPLETED
    state = await handle.query(DispatchWorkflow.current_state)
    assert state.state is S.COMPLETE
