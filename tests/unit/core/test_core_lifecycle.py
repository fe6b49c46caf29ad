"""Dispatch lifecycle state machine (gridpilot.core.lifecycle)."""

from __future__ import annotations

import pytest

from gridpilot.core.errors import IllegalTransition
from gridpilot.core.lifecycle import (
    ALLOWED,
    NEEDS_REASON,
    DispatchState,
    ReasonCode,
    can_transition,
    check_transition,
    path_to,
)

S = DispatchState

# The lifecycle written out independently of the implementation (DESIGN.md):
#   submitted -> sent -> acked -> active -> complete; ends expired, failed, cancelled.
# Once applied at the device (active) a dispatch can no longer "expire".
EXPECTED_EXITS: dict[DispatchState, set[DispatchState]] = {
    S.SUBMITTED: {S.SENT, S.EXPIRED, S.FAILED, S.CANCELLED},
    S.SENT: {S.ACKED, S.EXPIRED, S.FAILED, S.CANCELLED},
    S.ACKED: {S.ACTIVE, S.EXPIRED, S.FAILED, S.CANCELLED},
    S.ACTIVE: {S.COMPLETE, S.FAILED, S.CANCELLED},
    S.COMPLETE: set(),
    S.EXPIRED: set(),
    S.FAILED: set(),
    S.CANCELLED: set(),
}
TERMINAL_STATES = [S.COMPLETE, S.EXPIRED, S.FAILED, S.CANCELLED]
NON_TERMINAL_STATES = [S.SUBMITTED, S.SENT, S.ACKED, S.ACTIVE]

ALLOWED_PAIRS = [(a, b) for a in S for b in S if b in EXPECTED_EXITS[a]]
FORBIDDEN_PAIRS = [(a, b) for a in S for b in S if b not in EXPECTED_EXITS[a]]


def _id(value: object) -> str:
    """Readable test ids: a (from, to) pair as ``from->to``, a state as its name."""
    if isinstance(value, tuple):
        return f"{value[0]}->{value[1]}"
    return str(value)


def test_transition_table_covers_every_state():
    assert set(ALLOWED) == set(S)
    assert {k: set(v) for k, v in ALLOWED.items()} == EXPECTED_EXITS
    assert len(ALLOWED_PAIRS) + len(FORBIDDEN_PAIRS) == len(S) ** 2


@pytest.mark.parametrize("pair", ALLOWED_PAIRS, ids=_id)
def test_allowed_transition_is_accepted(pair):
    current, target = pair
    assert can_transition(current, target) is True
    check_transition(current, target, ReasonCode.SUPERSEDED)  # does not raise


@pytest.mark.parametrize("pair", FORBIDDEN_PAIRS, ids=_id)
def test_forbidden_transition_is_refused(pair):
    current, target = pair
    assert can_transition(current, target) is False
    with pytest.raises(IllegalTransition) as exc:
        check_transition(current, target, ReasonCode.INVALID_COMMAND)
    assert exc.value.code == "illegal_transition"
    assert str(current) in exc.value.message and str(target) in exc.value.message


def test_a_new_dispatch_can_only_start_as_submitted():
    assert can_transition(None, S.SUBMITTED) is True
    check_transition(None, S.SUBMITTED, None)


@pytest.mark.parametrize("target", [s for s in S if s is not S.SUBMITTED], ids=str)
def test_a_new_dispatch_cannot_start_in_any_other_state(target):
    assert can_transition(None, target) is False
    with pytest.raises(IllegalTransition):
        check_transition(None, target, ReasonCode.INVALID_COMMAND)


@pytest.mark.parametrize("state", TERMINAL_STATES, ids=str)
def test_terminal_state_has_no_exits(state):
    assert state.terminal is True
    assert ALLOWED[state] == frozenset()
    for target in S:
        assert can_transition(state, target) is False


@pytest.mark.parametrize("state", NON_TERMINAL_STATES, ids=str)
def test_non_terminal_state_is_not_terminal_and_can_fail_or_be_cancelled(state):
    assert state.terminal is False
    assert can_transition(state, S.FAILED)
    assert can_transition(state, S.CANCELLED)


def test_active_dispatch_cannot_expire():
    assert can_transition(S.ACTIVE, S.EXPIRED) is False


@pytest.mark.parametrize("end", [S.EXPIRED, S.FAILED, S.CANCELLED], ids=str)
def test_end_state_other_than_complete_needs_a_reason(end):
    assert end in NEEDS_REASON
    with pytest.raises(IllegalTransition, match="reason"):
        check_transition(S.SUBMITTED, end, None)
    check_transition(S.SUBMITTED, end, ReasonCode.DEADLINE_PASSED)


def test_complete_needs_no_reason():
    assert S.COMPLETE not in NEEDS_REASON
    check_transition(S.ACTIVE, S.COMPLETE, None)


@pytest.mark.parametrize(
    ("current", "target"),
    [(None, S.SUBMITTED), (S.SUBMITTED, S.SENT), (S.SENT, S.ACKED), (S.ACKED, S.ACTIVE)],
    ids=_id,
)
def test_happy_path_steps_need_no_reason(current, target):
    check_transition(current, target, None)


def test_forbidden_transition_is_refused_even_with_a_reason():
    with pytest.raises(IllegalTransition):
        check_transition(S.COMPLETE, S.FAILED, ReasonCode.DEVICE_WRITE_FAILED)


def test_reason_codes_match_the_proto_enum_names():
    assert all(code.value == code.name for code in ReasonCode)
    assert {c.name for c in ReasonCode} >= {"SUPERSEDED", "CANCELLED_BY_OPERATOR"}


# --- path_to ----------------------------------------------------------------------


def test_path_to_from_sent_to_active_records_acked_first():
    assert path_to(S.SENT, S.ACTIVE) == [S.ACKED, S.ACTIVE]


def test_path_to_from_submitted_to_complete_walks_the_whole_happy_path():
    assert path_to(S.SUBMITTED, S.COMPLETE) == [S.SENT, S.ACKED, S.ACTIVE, S.COMPLETE]


@pytest.mark.parametrize(
    ("current", "target"),
    [(S.SUBMITTED, S.SENT), (S.SENT, S.ACKED), (S.ACKED, S.ACTIVE), (S.ACTIVE, S.COMPLETE)],
    ids=_id,
)
def test_path_to_the_next_state_is_just_that_state(current, target):
    assert path_to(current, target) == [target]


@pytest.mark.parametrize(
    ("current", "target"),
    [
        (S.SUBMITTED, S.FAILED),
        (S.SENT, S.EXPIRED),
        (S.ACKED, S.CANCELLED),
        (S.ACTIVE, S.FAILED),
        (S.ACTIVE, S.CANCELLED),
    ],
    ids=_id,
)
def test_path_to_an_end_state_goes_there_directly(current, target):
    assert path_to(current, target) == [target]


def test_every_path_to_result_is_a_chain_of_allowed_transitions():
    for current in S:
        for target in S:
            try:
                path = path_to(current, target)
            except IllegalTransition:
                continue
            assert path[-1] is target
            steps = [current, *path]
            assert all(can_transition(a, b) for a, b in zip(steps, steps[1:], strict=False))


@pytest.mark.parametrize(
    ("current", "target"),
    [
        (S.ACTIVE, S.SENT),  # backwards
        (S.ACKED, S.SUBMITTED),  # backwards
        (S.SENT, S.SENT),  # standing still
        (S.ACTIVE, S.EXPIRED),  # not an exit of active
        (S.COMPLETE, S.FAILED),  # out of a terminal state
        (S.FAILED, S.COMPLETE),  # out of a terminal state onto the happy path
        (S.CANCELLED, S.ACTIVE),
        (S.EXPIRED, S.SENT),
    ],
    ids=_id,
)
def test_path_to_an_unreachable_state_raises(current, target):
    with pytest.raises(IllegalTransition):
        path_to(current, target)
