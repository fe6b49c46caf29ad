"""What an asset controller is asked to do: the headend's commands in the
agent's own terms (no protobuf), and the controller's own timer events."""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from datetime import datetime
from typing import Literal

from gridpilot.core.lifecycle import ReasonCode

from .local_control import Source


@dataclass(frozen=True, slots=True)
class SetpointCommand:
    """Hold ``p_kw`` on ``asset_id`` from ``start`` (None: now) until ``end`` (the lease)."""

    dispatch_id: str
    asset_id: str
    p_kw: float
    start: datetime | None
    end: datetime | None
    q_kvar: float | None = None
    ramp_kw_per_s: float | None = None
    trace_context: Mapping[str, str] = field(default_factory=dict)
    # Who asked: the headend (cloud), or a local operator (actor names them).
    source: Source = Source.CLOUD
    actor: str = ""
    resumed: bool = False  # held when the agent last died, applied again at start

    @classmethod
    def resuming(cls, asset_id: str, lease: Lease, now: datetime) -> SetpointCommand:
        """The command that applies ``lease`` again after an agent restart."""
        return cls(
            lease.dispatch_id,
            asset_id,
            lease.p_kw,
            start=lease.start if lease.start > now else None,
            end=lease.end,
            ramp_kw_per_s=lease.ramp_kw_per_s,
            trace_context=lease.trace_context,
            source=lease.source,
            actor=lease.actor,
            resumed=True,
        )


@dataclass(frozen=True, slots=True)
class ReleaseCommand:
    """Stop ``dispatch_id`` and return the asset to its default."""

    dispatch_id: str
    asset_id: str
    reason: ReasonCode | None = None


TimerKind = Literal["start", "end", "revert", "ramp"]


@dataclass(frozen=True, slots=True)
class Lease:
    """An accepted setpoint: held from ``start`` until ``end``."""

    dispatch_id: str
    p_kw: float
    start: datetime
    end: datetime
    trace_context: Mapping[str, str] = field(default_factory=dict)
    # kW/s; None or 0: the setpoint is written as one step.
    ramp_kw_per_s: float | None = None
    source: Source = Source.CLOUD
    actor: str = ""


@dataclass(frozen=True, slots=True)
class Due:
    """A controller timer went off: a lease starts or ends, a ramp steps, a revert is retried."""

    kind: TimerKind
    dispatch_id: str


@dataclass(frozen=True, slots=True)
class Revert:
    """End every lease of the asset and return it to its default."""

    reason: ReasonCode
    detail: str
    final: bool = False  # the agent is stopping: the worker exits afterwards
