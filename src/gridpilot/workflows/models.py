"""Typed inputs and outputs of the dispatch workflows and their activities."""

from __future__ import annotations

from datetime import datetime

from pydantic import BaseModel, Field

from gridpilot.core.acks import AckState
from gridpilot.core.lifecycle import DispatchState, ReasonCode


class DispatchInput(BaseModel):
    dispatch_id: str
    kind: str  # core.dispatch.DispatchKind
    p_kw: float
    duration_s: int
    start_at: datetime
    end_at: datetime
    deliver_by: datetime
    asset_id: str | None = None
    site_id: str | None = None
    q_kvar: float | None = None
    ramp_kw_per_s: float | None = None
    parent_id: str | None = None
    submitted_by: str = "anonymous"
    warnings: list[str] = Field(default_factory=list)
    ack_timeout_s: float = 30.0
    idempotency_key: str | None = None
    request_hash: str | None = None
    # Higher wins; a dispatch with priority >= the asset's live one supersedes it.
    priority: int = 0
    # "cloud" (the API) or "local": written on site and reported by the agent, which
    # already applied it; the workflow only records what the agent reports.
    source: str = "cloud"
    # The submission order (core.supersede), taken in the API submit; a site's
    # children carry their parent's. 0: submitted before it was recorded.
    submit_seq: int = 0
    # The OpenTelemetry trace id of its submit (32 hex digits); None: not traced.
    trace_id: str | None = None


class AgentAck(BaseModel):
    """An agent's DispatchAck, as the headend signals it to the workflow."""

    dispatch_id: str
    state: AckState
    at: datetime
    reason: ReasonCode | None = None
    detail: str = ""
    asset_id: str = ""
    applied_p_kw: float | None = None
    gateway_id: str = ""


class CancelRequest(BaseModel):
    reason: ReasonCode = ReasonCode.CANCELLED_BY_OPERATOR
    actor: str = "anonymous"
    detail: str = ""
    superseded_by: str | None = None


class ClaimRequest(BaseModel):
    dispatch_id: str
    asset_id: str
    priority: int
    start_at: datetime
    end_at: datetime
    submit_seq: int = 0


class ClaimResult(BaseModel):
    """refused_by: the live dispatch of higher priority that keeps the asset;
    superseded_by: the newer one that keeps it (this one ends SUPERSEDED);
    superseded: the live dispatches this one replaces."""

    refused_by: str | None = None
    refused_priority: int | None = None
    superseded_by: str | None = None
    superseded: list[str] = Field(default_factory=list)


class ChildState(BaseModel):
    dispatch_id: str
    asset_id: str
    state: DispatchState
    reason: ReasonCode | None = None
    applied_p_kw: float | None = None
    # When the child made this transition, on its own clock. The parent measures
    # how long a child was active from these, not from when the signals reached
    # it (two signals can land in one of its workflow tasks). None in signals
    # sent before this field existed: the parent then uses its own clock.
    at: datetime | None = None
    # When the child went active, on its own clock (None: not yet, or sent
    # before patch "lean-records", which tells the parent fewer states).
    active_at: datetime | None = None


class TransitionRecord(BaseModel):
    dispatch_id: str
    seq: int
    from_state: DispatchState | None
    to_state: DispatchState
    at: datetime
    reason: ReasonCode | None = None
    detail: str = ""
    actor: str = ""
    applied_p_kw: float | None = None


class SubmissionRecord(BaseModel):
    """A dispatch's row and its first transition, written together."""

    dispatch: DispatchInput
    submitted: TransitionRecord


class TransitionBatch(BaseModel):
    """Transitions of one dispatch, in order."""

    records: list[TransitionRecord]


class Route(BaseModel):
    """Where an asset's agent is connected now; task_queue None = offline."""

    asset_id: str
    known: bool
    gateway_id: str | None = None
    task_queue: str | None = None
    # The asset's limits now (they may have changed since the submit).
    p_min_kw: float | None = None
    p_max_kw: float | None = None


class SetpointCommand(BaseModel):
    dispatch_id: str
    asset_id: str
    gateway_id: str
    p_kw: float
    start_at: datetime
    end_at: datetime
    q_kvar: float | None = None
    ramp_kw_per_s: float | None = None


class SetpointDelivery(BaseModel):
    """A setpoint and its SENT transition, written once it is sent (patch
    "lean-records": one activity, not two)."""

    command: SetpointCommand
    sent: TransitionRecord


class ReleaseCommand(BaseModel):
    dispatch_id: str
    asset_id: str
    gateway_id: str
    reason: ReasonCode


class SplitAsset(BaseModel):
    asset_id: str
    asset_type: str
    p_min_kw: float
    p_max_kw: float
    available_charge_kw: float | None = None
    available_discharge_kw: float | None = None


class SplitInputs(BaseModel):
    site_id: str
    assets: list[SplitAsset]


class AllocationLine(BaseModel):
    asset_id: str
    p_kw: float
    weight_kw: float
    bound_kw: float
    clamped: bool
    child_dispatch_id: str | None = None


class AllocationRecord(BaseModel):
    dispatch_id: str
    policy: str
    version: int
    target_kw: float
    allocated_kw: float
    unallocated_kw: float
    lines: list[AllocationLine]


class DispatchResult(BaseModel):
    dispatch_id: str
    state: DispatchState
    reason: ReasonCode | None = None
    detail: str = ""
    applied_p_kw: float | None = None
    requested_kw: float | None = None
    delivered_kw: float | None = None
    # site dispatches (patch "site-outcome"): the energy asked for and delivered
    requested_kwh: float | None = None
    delivered_kwh: float | None = None


class DispatchStatus(BaseModel):
    dispatch_id: str
    state: DispatchState | None
    transitions: list[TransitionRecord]
    late_acks: list[AgentAck] = Field(default_factory=list)
    # The dispatch that superseded this one after it was sent (see DispatchWorkflow).
    superseded_by: str | None = None


class OwnCancel(BaseModel):
    """A dispatch that ended cancelled asks Temporal to cancel its own execution."""

    workflow_id: str
    run_id: str
