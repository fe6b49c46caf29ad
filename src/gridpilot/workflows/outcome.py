"""The Temporal execution status tells a dispatch's business outcome (patch
``outcome-status``): a failed or expired dispatch ends as a *failed* execution
(a non-retryable ApplicationError whose type is the reason code and whose
details carry the DispatchResult), a cancelled one as a *cancelled* execution,
so the Temporal UI's own status filters agree with the console. The business
state itself stays in the dispatch's records, its search attribute and its
``current_state`` query.

A site parent reads a child's ending with ``child_result``, whatever the
execution status (tests: ``gp_testing.workflows.dispatch_result``).
"""

from __future__ import annotations

import asyncio
from datetime import timedelta
from typing import Any

from temporalio import workflow
from temporalio.common import RetryPolicy
from temporalio.exceptions import ActivityError, ApplicationError, CancelledError

with workflow.unsafe.imports_passed_through():
    from gridpilot.activities.outcome import request_own_cancel
    from gridpilot.core.lifecycle import DispatchState, ReasonCode

    from .models import ChildState, DispatchResult, OwnCancel

PATCH_OUTCOME_STATUS = "outcome-status"
S = DispatchState


async def close(end: DispatchResult, cancel_requested: bool) -> DispatchResult:
    """End the execution the way the dispatch ended. ``cancel_requested``: a
    Temporal cancel was already delivered (and handled) in this run."""
    if end.state not in (S.FAILED, S.EXPIRED, S.CANCELLED):
        return end
    if not workflow.patched(PATCH_OUTCOME_STATUS):
        return end  # started before: it completes, as it always did
    if end.state is S.CANCELLED:
        if cancel_requested:
            raise asyncio.CancelledError()  # the SDK ends it cancelled
        info = workflow.info()
        try:
            await workflow.execute_activity(
                request_own_cancel,
                OwnCancel(workflow_id=info.workflow_id, run_id=info.run_id),
                start_to_close_timeout=timedelta(seconds=10),
                retry_policy=RetryPolicy(maximum_attempts=3),
            )
        except ActivityError:
            workflow.logger.warning("own cancel not requested: completing plainly")
            return end
        # The server accepted the request: it comes back as the cancellation of this
        # wait, the run raises CancelledError and the execution ends cancelled. No
        # timer here: a time-skipping server would jump over it (and other dispatches'
        # windows) before the request lands; the execution timeout bounds it anyway.
        await workflow.wait_condition(lambda: False, timeout_summary="own cancel")
        return end
    assert end.reason is not None  # every failed / expired end has one
    # Non-retryable: retrying the run would send the setpoint again.
    raise ApplicationError(
        f"{end.state} / {end.reason}: {end.detail}",
        end,
        type=end.reason.value,
        non_retryable=True,
    )


def carried_result(err: BaseException | None) -> DispatchResult | None:
    """The DispatchResult a failed execution carries in its ApplicationError."""
    while err is not None:
        if isinstance(err, ApplicationError) and err.details:
            try:
                return DispatchResult.model_validate(err.details[0])
            except ValueError:
                return None
        err = err.__cause__ or getattr(err, "cause", None)
    return None


def child_result(handle: Any, last: ChildState | None) -> DispatchResult:
    """A finished child's result, whatever its execution status; ``last`` is the
    last state it signalled (a cancelled execution carries no result)."""
    try:
        return DispatchResult.model_validate(handle.result())
    except Exception as exc:
        carried = carried_result(exc)
        if carried is not None:
            return carried
        if last is not None and last.state.terminal:
            return DispatchResult(
                dispatch_id=last.dispatch_id,
                state=last.state,
                reason=last.reason,
                applied_p_kw=last.applied_p_kw,
            )
        if isinstance(exc.__cause__, CancelledError):  # cancelled before it said anything
            return DispatchResult(
                dispatch_id=handle.id,
                state=S.CANCELLED,
                reason=ReasonCode.CANCELLED_BY_OPERATOR,
                detail="cancelled through Temporal",
            )
        raise
