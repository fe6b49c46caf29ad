"""DispatchWorkflow's pure parts, without Temporal: how long it waits in each
state, what its signals keep, what its queries say, and how a delivery
refused as superseded names the winner."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

import pytest
from temporalio.exceptions import ActivityError, ApplicationError

from gridpilot.core.lifecycle import DispatchState, ReasonCode
from gridpilot.workflows.constants import ERROR_SUPERSEDED
from gridpilot.workflows.dispatch import DispatchWorkflow
from gridpilot.workflows.dispatch_rules import END_GRACE, superseded_by, wait_deadline
from gridpilot.workflows.models import (
    AgentAck,
    CancelRequest,
    DispatchInput,
    DispatchResult,
    TransitionRecord,
)

S = DispatchState
T0 = datetime(2026, 1, 1, 12, 0, tzinfo=UTC)
ACK_TIMEOUT = timedelta(seconds=30)


def dispatch(start_in_s: float = 0, duration_s: int = 600) -> DispatchWorkflow:
    start = T0 + timedelta(seconds=start_in_s)
    inp = DispatchInput(
        dispatch_id="dsp-1",
        kind="asset",
        p_kw=50.0,
        duration_s=duration_s,
        start_at=start,
        end_at=start + timedelta(seconds=duration_s),
        deliver_by=start + timedelta(seconds=60),
        asset_id="bess-1",
        ack_timeout_s=ACK_TIMEOUT.total_seconds(),
    )
    return DispatchWorkflow(inp)


def moved(wf: DispatchWorkflow, state: DispatchState, at: datetime, **kw: object) -> None:
    """The workflow's own record of a transition (what ``_to`` keeps before the activity)."""
    wf.transitions.append(
        TransitionRecord(
            dispatch_id=wf.inp.dispatch_id,
            seq=len(wf.transitions) + 1,
            from_state=wf.state,
            to_state=state,
            at=at,
            **kw,  # type: ignore[arg-type]
        )
    )
    wf.state = state


def deadline(wf: DispatchWorkflow) -> datetime:
    """How long the workflow waits now, as its run loop asks (``wait_deadline``)."""
    return wait_deadline(wf.inp, wf.state, wf.transitions[-1].at)


def ack(state: str, dispatch_id: str = "dsp-1") -> AgentAck:
    return AgentAck(dispatch_id=dispatch_id, state=state, at=T0)


# ------------------------------------------------------------------ deadlines


def test_a_sent_dispatch_waits_the_ack_timeout_from_when_it_was_sent() -> None:
    wf = dispatch()
    moved(wf, S.SUBMITTED, T0)
    moved(wf, S.SENT, T0 + timedelta(seconds=5))
    assert deadline(wf) == T0 + timedelta(seconds=5) + ACK_TIMEOUT


def test_a_sent_dispatch_never_waits_past_its_end() -> None:
    wf = dispatch(duration_s=10)
    moved(wf, S.SENT, T0 + timedelta(seconds=5))
    assert deadline(wf) == wf.inp.end_at


def test_an_acked_dispatch_waits_the_ack_timeout_from_its_start_when_that_is_later() -> None:
    wf = dispatch(start_in_s=3600)
    moved(wf, S.SENT, T0)
    moved(wf, S.ACKED, T0 + timedelta(seconds=1))
    assert deadline(wf) == wf.inp.start_at + ACK_TIMEOUT


def test_an_acked_dispatch_already_started_waits_the_ack_timeout_from_the_ack() -> None:
    wf = dispatch()
    acked_at = T0 + timedelta(seconds=20)
    moved(wf, S.SENT, T0)
    moved(wf, S.ACKED, acked_at)
    assert deadline(wf) == acked_at + ACK_TIMEOUT


def test_an_acked_dispatch_never_waits_past_its_end() -> None:
    wf = dispatch(duration_s=20)
    moved(wf, S.SENT, T0)
    moved(wf, S.ACKED, T0 + timedelta(seconds=10))
    assert deadline(wf) == wf.inp.end_at


@pytest.mark.parametrize("state", [S.SUBMITTED, S.ACTIVE])
def test_otherwise_it_waits_until_its_end_and_the_grace_for_the_agents_word(
    state: DispatchState,
) -> None:
    wf = dispatch()
    moved(wf, state, T0)
    assert deadline(wf) == wf.inp.end_at + END_GRACE


# ------------------------------------------------------------------ signals and queries


def test_acks_for_another_dispatch_are_ignored() -> None:
    wf = dispatch()
    wf.agent_ack(ack("accepted", dispatch_id="dsp-2"))
    assert wf.acks == [] and wf.late_acks == []


def test_acks_after_the_end_are_kept_as_late_and_change_nothing() -> None:
    wf = dispatch()
    moved(wf, S.ACTIVE, T0)
    wf.agent_ack(ack("applied"))
    moved(wf, S.COMPLETE, T0 + timedelta(seconds=600))
    wf.agent_ack(ack("released"))
    assert [a.state for a in wf.acks] == ["applied"]
    assert [a.state for a in wf.status().late_acks] == ["released"]


def test_the_first_cancel_request_is_the_one_kept() -> None:
    wf = dispatch()
    wf.cancel(CancelRequest(actor="op-alice"))
    wf.cancel(CancelRequest(actor="op-bob", reason=ReasonCode.SUPERSEDED))
    assert wf.cancel_request == CancelRequest(actor="op-alice")


def test_current_state_is_submitted_before_anything_is_recorded() -> None:
    assert dispatch().current_state() == DispatchResult(dispatch_id="dsp-1", state=S.SUBMITTED)


def test_current_state_is_the_last_transition_then_the_outcome() -> None:
    wf = dispatch()
    moved(wf, S.SUBMITTED, T0)
    moved(wf, S.FAILED, T0, reason=ReasonCode.OUT_OF_LIMITS, detail="400 kW")
    now = wf.current_state()
    assert (now.state, now.reason, now.detail) == (S.FAILED, ReasonCode.OUT_OF_LIMITS, "400 kW")
    wf.outcome = now.model_copy(update={"delivered_kw": 0.0})
    assert wf.current_state() is wf.outcome


def test_status_tells_the_state_the_transitions_and_the_superseder() -> None:
    wf = dispatch()
    moved(wf, S.SENT, T0)
    wf.superseded_by = "dsp-2"
    status = wf.status()
    assert (status.state, status.superseded_by) == (S.SENT, "dsp-2")
    assert [t.to_state for t in status.transitions] == [S.SENT]


# ------------------------------------------------------------------ superseded at delivery


def activity_error(cause: BaseException | None) -> ActivityError:
    err = ActivityError(
        "activity failed",
        scheduled_event_id=1,
        started_event_id=2,
        identity="worker",
        activity_type="deliver_setpoint",
        activity_id="1",
        retry_state=None,
    )
    err.__cause__ = cause
    return err


def test_a_delivery_refused_as_superseded_names_the_winner() -> None:
    cause = ApplicationError("superseded", "dsp-9", type=ERROR_SUPERSEDED, non_retryable=True)
    assert superseded_by(activity_error(cause)) == "dsp-9"


@pytest.mark.parametrize(
    "cause",
    [
        None,
        ApplicationError("gone", type="AGENT_OFFLINE", non_retryable=True),
        ApplicationError("no winner named", type=ERROR_SUPERSEDED),
        RuntimeError("not an application error"),
    ],
    ids=["no-cause", "other-type", "no-details", "other-error"],
)
def test_any_other_delivery_failure_is_not_a_supersede(cause: BaseException | None) -> None:
    assert superseded_by(activity_error(cause)) is None
