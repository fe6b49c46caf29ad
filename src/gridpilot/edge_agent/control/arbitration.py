"""Whether a setpoint becomes a lease (pure): the arbitration rule between
local and cloud commands (the policies are described in :mod:`.local_control`),
then the agent's own rails (:mod:`.rails`)."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime

from gridpilot.core.assets import PowerLimits
from gridpilot.core.lifecycle import ReasonCode

from .commands import Lease, SetpointCommand
from .local_control import Arbitration, Source
from .rails import decide


@dataclass(frozen=True, slots=True)
class Admission:
    """The lease to hold (``detail`` for its ACCEPTED ack), or None and why not."""

    lease: Lease | None
    reason: ReasonCode | None = None
    detail: str = ""


def admit(
    cmd: SetpointCommand,
    limits: PowerLimits,
    policy: Arbitration,
    active: Lease | None,
    now: datetime,
) -> Admission:
    refusal = arbitrate(policy, cmd.source, active)
    if refusal is not None:
        return Admission(None, *refusal)
    decision = decide(
        cmd.p_kw,
        limits,
        now,
        cmd.start,
        cmd.end,
        q_kvar=cmd.q_kvar,
        ramp_kw_per_s=cmd.ramp_kw_per_s,
    )
    if decision.p_kw is None or cmd.end is None:
        return Admission(None, decision.reason, decision.detail)
    lease = Lease(
        cmd.dispatch_id,
        decision.p_kw,
        cmd.start or now,
        cmd.end,
        cmd.trace_context,
        ramp_kw_per_s=cmd.ramp_kw_per_s or None,
        source=cmd.source,
        actor=cmd.actor,
    )
    later = lease.start > now
    detail = decision.detail or (f"starts at {lease.start.isoformat()}" if later else "")
    if cmd.resumed:
        detail = "; ".join(filter(None, ["resumed after an agent restart", detail]))
    return Admission(lease, None, detail)


def arbitrate(
    policy: Arbitration, source: Source, active: Lease | None
) -> tuple[ReasonCode, str] | None:
    """Why ``policy`` refuses a new command from ``source`` while ``active``
    holds the asset, or None when it may go ahead (taking the asset over)."""
    if source is Source.CLOUD:
        if policy is Arbitration.LOCAL_ONLY:
            return ReasonCode.LOCAL_CONTROL, (
                "the site is under local control only (arbitration local_only): "
                "cloud dispatches are refused"
            )
        if policy is Arbitration.LOCAL_PRIORITY and active and active.source is Source.LOCAL:
            return ReasonCode.LOCAL_CONTROL, (
                f"asset under local control by {active.dispatch_id} ({active.actor}); "
                "arbitration local_priority"
            )
    elif policy is Arbitration.CLOUD_PRIORITY and active and active.source is Source.CLOUD:
        return ReasonCode.PRIORITY_CONFLICT, (
            f"cloud dispatch {active.dispatch_id} holds the asset until "
            f"{active.end.isoformat(timespec='seconds')}; arbitration cloud_priority"
        )
    return None
