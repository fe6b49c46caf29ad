"""Request and response bodies of /api/v1 (pydantic types stop here)."""

from __future__ import annotations

from datetime import datetime
from typing import Annotated, Any

from pydantic import BaseModel, Field

from gridpilot.core.acks import AckState
from gridpilot.core.lifecycle import DispatchState, ReasonCode

from .inputs import MAX_KW, Instant, Kw, RequestBody

Id = Annotated[str, Field(min_length=1, max_length=200, pattern=r"^[A-Za-z0-9._:-]+$")]


class DispatchCreate(RequestBody):
    asset_id: Id | None = Field(None, description="target asset; wins over site_id")
    site_id: Id | None = Field(None, description="target site, split over its assets")
    p_kw: Kw = Field(description="active power, kW; > 0 exports, < 0 imports")
    duration_s: Annotated[int, Field(strict=True, description="how long the setpoint holds")]
    q_kvar: Kw | None = None
    start_at: Instant | None = Field(
        None, description="scheduled start; default now; at most 366 days ahead"
    )
    deliver_by: Instant | None = Field(
        None, description="expire if not delivered by then; default start + 60 s"
    )
    ramp_kw_per_s: (
        Annotated[float, Field(strict=True, gt=0, le=MAX_KW, allow_inf_nan=False)] | None
    ) = None
    priority: Annotated[int, Field(strict=True, ge=0, le=100)] = Field(
        0, description="higher wins: >= the asset's live dispatch supersedes it, lower is 409"
    )
    accept_partial: Annotated[bool, Field(strict=True)] = Field(
        False,
        description="site target beyond the site's capacity: dispatch what it can (201 with "
        "a warning) instead of 422",
    )


class Transition(BaseModel):
    seq: int
    from_state: DispatchState | None
    to_state: DispatchState
    at: datetime
    reason: ReasonCode | None
    detail: str
    actor: str


class Evidence(BaseModel):
    """What the asset's own telemetry says happened during the active window."""

    window_start: datetime
    window_end: datetime
    samples: int
    setpoint_kw: float
    mean_p_kw: float | None
    mean_abs_deviation_kw: float | None
    max_abs_deviation_kw: float | None
    time_to_target_s: float | None = Field(
        description="from active to the first sample within tolerance of the setpoint"
    )
    tolerance_kw: float


class LateAck(BaseModel):
    """What the agent reported after the dispatch had ended; it changes nothing."""

    state: AckState
    at: datetime = Field(description="the agent's time")
    reason: ReasonCode | None
    detail: str
    gateway_id: str
    received_at: datetime


class DispatchView(BaseModel):
    id: str
    kind: str
    state: DispatchState
    asset_id: str | None
    site_id: str | None
    parent_id: str | None
    p_kw: float
    q_kvar: float | None
    duration_s: int
    start_at: datetime
    end_at: datetime
    deliver_by: datetime
    reason: ReasonCode | None
    detail: str
    applied_p_kw: float | None
    policy: str | None
    allocation: dict[str, Any] | None
    warnings: list[str]
    submitted_by: str
    created_at: datetime
    updated_at: datetime
    priority: int = 0
    superseded_by: str | None = None
    submit_seq: int | None = Field(
        default=None,
        description="submission order: at equal priority the higher one supersedes; "
        "a site's children carry their parent's",
    )
    # cloud: submitted through this API; local: written on site (the agent's OPC UA
    # surface) and reported by the agent, which applied it.
    source: str = "cloud"
    trace_id: str | None = Field(
        default=None,
        description="OpenTelemetry trace id of the submit: the dispatch's one trace across "
        "headend and agent (null when tracing was off)",
    )
    trace_url: str | None = Field(
        default=None,
        description="the trace in the configured trace UI (GRIDPILOT_TRACE_UI_URL), if any",
    )
    children: list[str] = Field(default_factory=list)
    transitions: list[Transition] | None = None
    evidence: Evidence | None = None
    late_acks: list[LateAck] | None = Field(
        default=None,
        description="acks that reached the headend after the dispatch had ended, in the "
        "order received: the agent confirming a release, or reporting that its fail-safe "
        "had returned the asset to its default while the headend ended the dispatch at "
        "end_at; kept for the record, the state does not change",
    )


class SplitLine(BaseModel):
    asset_id: str
    p_kw: float
    weight_kw: float
    bound_kw: float
    clamped: bool


class SplitPreview(BaseModel):
    site_id: str | None
    asset_id: str | None
    policy: str
    target_kw: float
    allocated_kw: float
    unallocated_kw: float
    allocations: list[SplitLine]
    warnings: list[str]
    refused: str | None = Field(
        None, description="why a submit of this body would be refused (422), if it would"
    )


class CancelBody(RequestBody):
    detail: str = Field("", max_length=500)


class AgentView(BaseModel):
    gateway_id: str
    site_id: str
    site_name: str
    connected: bool
    session_id: str | None
    peer: str | None
    headend_id: str | None
    connected_at: datetime | None
    last_seen: datetime
    agent_version: str
    # A str, not the enum: rows written before these reasons existed are shown as they are.
    last_end_reason: str | None = Field(
        None,
        description="why the gateway's last session ended: closed, network, unresponsive, "
        "revoked, superseded, invalid_message, ... (docs/guarantees.md)",
    )
    last_ended_at: datetime | None = None
    buffered_batches: int = Field(
        0, description="telemetry batches waiting in the agent's buffer, as last reported"
    )
    buffered_bytes: int = Field(0, description="their serialized bytes, as last reported")
    dropped_batches: int = Field(
        0, description="batches the agent dropped unsent (buffer full or too old), cumulative"
    )
    dropped_samples: int = Field(0, description="samples in those batches, cumulative")
    rejected_samples: int = Field(
        0, description="samples of this gateway the headend refused (never stored), cumulative"
    )
    last_rejection: str | None = Field(None, description="why the newest refused sample was")
    reported_at: datetime | None = Field(
        None, description="when the agent's buffer was last reported (its last heartbeat)"
    )
    last_drop_at: datetime | None = Field(
        None,
        description="when a heartbeat last showed the dropped counts grow (null: never "
        "since this was recorded); data is being dropped at the edge while it is recent",
    )


class AgentSessionView(BaseModel):
    """One stream of a gateway's agent to a headend, live or ended."""

    id: str
    gateway_id: str
    site_id: str
    headend_id: str
    peer: str
    agent_version: str
    connected_at: datetime
    last_seen: datetime
    ended_at: datetime | None = Field(None, description="null while the session is live")
    end_reason: str | None = Field(
        None, description="why it ended: closed, network, unresponsive, revoked, ..."
    )


class SiteView(BaseModel):
    id: str
    name: str
    asset_ids: list[str]
    p_min_kw: float
    p_max_kw: float


class AssetView(BaseModel):
    id: str
    site_id: str
    gateway_id: str
    name: str
    asset_type: str
    p_min_kw: float
    p_max_kw: float
    capacity_kwh: float
    default_p_kw: float
    held_reason: str | None = Field(
        None,
        description="set while the asset waits for an admin's approval "
        "(POST /assets/{id}/approve); a held asset is not dispatched to or counted",
    )


class SampleView(BaseModel):
    asset_id: str
    ts: datetime
    received_at: datetime
    p_kw: float | None
    q_kvar: float | None
    soc_pct: float | None
    available_charge_kw: float | None
    available_discharge_kw: float | None
    voltage_v: float | None
    frequency_hz: float | None
    state: str | None
    details: dict[str, Any]


class BucketView(BaseModel):
    """One asset's telemetry over one bucket [bucket, bucket + width_s): averages, extremes
    and the last value (that of the bucket's newest sample) of p_kw, q_kvar and soc_pct."""

    asset_id: str
    bucket: datetime
    width_s: int = Field(description="the bucket's width in seconds")
    samples: int
    p_kw_avg: float | None
    p_kw_min: float | None
    p_kw_max: float | None
    p_kw_last: float | None
    q_kvar_avg: float | None
    q_kvar_min: float | None
    q_kvar_max: float | None
    q_kvar_last: float | None
    soc_pct_avg: float | None
    soc_pct_min: float | None
    soc_pct_max: float | None
    soc_pct_last: float | None
