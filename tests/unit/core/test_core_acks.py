"""What each agent ack does to its dispatch's lifecycle."""

from __future__ import annotations

import pytest

from gridpilot.core.acks import AckEffect, AckState, ack_effect
from gridpilot.core.lifecycle import DispatchState as S
from gridpilot.core.lifecycle import ReasonCode as R
from gridpilot.schema.pb import agent_pb2 as pb


def test_ack_states_keep_their_recorded_values_and_the_proto_names() -> None:
    assert [a.value for a in AckState] == [
        "accepted",
        "applied",
        "completed",
        "rejected",
        "failed",
        "released",
    ]
    proto = {n.removeprefix("ACK_STATE_") for n in pb.AckState.keys()} - {"UNSPECIFIED"}
    assert proto == set(AckState.__members__)


@pytest.mark.parametrize(
    ("state", "reason", "effect"),
    [
        (AckState.ACCEPTED, None, AckEffect(S.ACKED)),
        (AckState.APPLIED, None, AckEffect(S.ACTIVE)),
        (AckState.COMPLETED, R.LEASE_ENDED, AckEffect(S.COMPLETE)),
        (AckState.REJECTED, R.OUT_OF_LIMITS, AckEffect(S.FAILED, R.OUT_OF_LIMITS)),
        (AckState.REJECTED, None, AckEffect(S.FAILED, R.INVALID_COMMAND)),
        (AckState.FAILED, None, AckEffect(S.FAILED, R.INVALID_COMMAND)),
        (AckState.FAILED, R.DEVICE_WRITE_FAILED, AckEffect(S.FAILED, R.DEVICE_WRITE_FAILED)),
        (AckState.RELEASED, None, AckEffect(S.FAILED, R.LINK_LOST_REVERTED)),
        (AckState.RELEASED, R.DEVICE_UNREACHABLE, AckEffect(S.FAILED, R.DEVICE_UNREACHABLE)),
        (AckState.RELEASED, R.SUPERSEDED, AckEffect(S.CANCELLED, R.SUPERSEDED)),
        (AckState.RELEASED, R.LOCAL_CONTROL, AckEffect(S.CANCELLED, R.LOCAL_CONTROL)),
        (
            AckState.RELEASED,
            R.CANCELLED_BY_OPERATOR,
            AckEffect(S.CANCELLED, R.CANCELLED_BY_OPERATOR),
        ),
    ],
)
def test_each_ack_moves_or_ends_its_dispatch(
    state: AckState, reason: R | None, effect: AckEffect
) -> None:
    assert ack_effect(state, reason) == effect
