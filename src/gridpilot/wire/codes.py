"""The protocol's enums <-> ours: reason codes, ack states, asset types.

Proto enum values are ``<ENUM>_<NAME>``; ours carry the ``NAME`` (reason
codes as their value, ack states as their member name). A number newer than
this code reads as None: enums only grow.
"""

from __future__ import annotations

from enum import Enum
from typing import cast

from gridpilot.core.assets import AssetType
from gridpilot.core.lifecycle import ReasonCode
from gridpilot.schema.pb import agent_pb2 as pb

ASSET_TYPE_FROM_PB = {
    pb.ASSET_TYPE_BESS: AssetType.BESS,
    pb.ASSET_TYPE_PV: AssetType.PV,
    pb.ASSET_TYPE_WIND: AssetType.WIND,
    pb.ASSET_TYPE_EV_CHARGER: AssetType.EV_CHARGER,
}
ASSET_TYPE_TO_PB = {v: k for k, v in ASSET_TYPE_FROM_PB.items()}


def reason_to_pb(reason: ReasonCode | None) -> pb.ReasonCode:
    if reason is None:
        return pb.REASON_CODE_UNSPECIFIED
    return cast(pb.ReasonCode, pb.ReasonCode.Value(f"REASON_CODE_{reason.value}"))


def reason_from_pb(value: int) -> ReasonCode | None:
    """None for UNSPECIFIED and for codes newer than this code."""
    if not reason_known(value):
        return None
    name = pb.ReasonCode.Name(value).removeprefix("REASON_CODE_")
    return ReasonCode.__members__.get(name)


def reason_known(value: int) -> bool:
    """A number the proto's ReasonCode has (UNSPECIFIED included)."""
    return value in pb.ReasonCode.values()


def ack_state_to_pb(state: Enum) -> pb.AckState:
    """Any ack-state enum whose member names are the proto's (ACCEPTED, ...)."""
    return cast(pb.AckState, pb.AckState.Value(f"ACK_STATE_{state.name}"))


def ack_state_name(value: int) -> str | None:
    """The proto AckState's name without its prefix (ACCEPTED, ...); None for
    UNSPECIFIED and for states newer than this code."""
    if value == pb.ACK_STATE_UNSPECIFIED or value not in pb.AckState.values():
        return None
    return pb.AckState.Name(value).removeprefix("ACK_STATE_")
