"""Reading how a dispatch ended from its execution, without Temporal: the
DispatchResult a failed execution carries, and a finished child's result
whatever its execution status (gridpilot.workflows.outcome)."""

from __future__ import annotations

from typing import Any

import pytest
from temporalio.exceptions import ApplicationError, CancelledError

from gridpilot.core.lifecycle import DispatchState, ReasonCode
from gridpilot.workflows.models import ChildState, DispatchResult
from gridpilot.workflows.outcome import carried_result, child_result

S = DispatchState
FAILED = DispatchResult(
    dispatch_id="site-d.bess-1",
    state=S.FAILED,
    reason=ReasonCode.OUT_OF_LIMITS,
    detail="400 kW is outside [-100, 100]",
)


def carrying(result: Any) -> ApplicationError:
    """The error a failed dispatch's execution ends with (outcome.close)."""
    return ApplicationError("failed", result, type="OUT_OF_LIMITS", non_retryable=True)


def chained(*errors: BaseException) -> BaseException:
    """errors[0], caused by errors[1], caused by ... (as the SDK wraps failures)."""
    for outer, inner in zip(errors, errors[1:], strict=False):
        outer.__cause__ = inner
    return errors[0]


class Handle:
    """A child workflow handle that has finished: ``result()`` gives or raises."""

    def __init__(self, result: Any = None, error: BaseException | None = None) -> None:
        self.id = "site-d.bess-1"
        self._result, self._error = result, error

    def result(self) -> Any:
        if self._error is not None:
            raise self._error
        return self._result


# ------------------------------------------------------------------ carried_result


def test_a_failed_execution_carries_its_result_in_the_application_error() -> None:
    assert carried_result(carrying(FAILED.model_dump(mode="json"))) == FAILED


def test_the_carried_result_is_found_down_the_cause_chain() -> None:
    err = chained(RuntimeError("child failed"), RuntimeError("wrapped"), carrying(FAILED))
    assert carried_result(err) == FAILED


@pytest.mark.parametrize(
    "err",
    [
        None,
        RuntimeError("no application error"),
        ApplicationError("no details", type="OUT_OF_LIMITS"),
        carrying({"not": "a result"}),
    ],
    ids=["none", "other-error", "no-details", "not-a-result"],
)
def test_no_result_is_carried_otherwise(err: BaseException | None) -> None:
    assert carried_result(err) is None


# ------------------------------------------------------------------ child_result


def test_a_completed_child_gives_its_result() -> None:
    done = FAILED.model_copy(update={"state": S.COMPLETE, "reason": None})
    assert child_result(Handle(done.model_dump(mode="json")), None) == done


def test_a_failed_child_gives_the_result_its_execution_carries() -> None:
    err = chained(RuntimeError("child workflow failed"), carrying(FAILED))
    assert child_result(Handle(error=err), None) == FAILED


def test_a_cancelled_child_gives_the_last_state_it_signalled() -> None:
    last = ChildState(
        dispatch_id="site-d.bess-1",
        asset_id="bess-1",
        state=S.CANCELLED,
        reason=ReasonCode.SUPERSEDED,
        applied_p_kw=20.0,
    )
    err = chained(RuntimeError("child workflow cancelled"), CancelledError("cancelled"))
    assert child_result(Handle(error=err), last) == DispatchResult(
        dispatch_id="site-d.bess-1",
        state=S.CANCELLED,
        reason=ReasonCode.SUPERSEDED,
        applied_p_kw=20.0,
    )


def test_a_child_cancelled_before_it_said_anything_is_cancelled_by_the_operator() -> None:
    err = chained(RuntimeError("child workflow cancelled"), CancelledError("cancelled"))
    running = ChildState(dispatch_id="site-d.bess-1", asset_id="bess-1", state=S.ACTIVE)
    for last in (None, running):  # a live last state says nothing about the end
        result = child_result(Handle(error=err), last)
        assert (result.state, result.reason) == (S.CANCELLED, ReasonCode.CANCELLED_BY_OPERATOR)
        assert result.dispatch_id == "site-d.bess-1"


def test_a_child_that_ended_any_other_way_raises() -> None:
    err = chained(RuntimeError("child workflow timed out"), TimeoutError())
    with pytest.raises(RuntimeError, match="timed out"):
        child_result(Handle(error=err), None)
