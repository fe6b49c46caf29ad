"""What a SCADA sees: telemetry quality and write results as OPC UA status
codes (pure functions, tested to every branch).

Telemetry (per node):

- ``Good``: a fresh value the device gave;
- ``UncertainLastUsableValue``: the last known value, kept, but the device
  or link did not confirm it lately (``details.quality`` says stale, the
  sample is older than ``stale_after_s``, or the field went missing). Not a
  Bad code: asyncua (and the spec) drop the value with a Bad status;
- ``BadDeviceFailure``: the device said the value is invalid (quality bad);
- ``BadWaitingForInitialData``: nothing read yet.

Writes: see :func:`write_status`.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from datetime import datetime
from typing import Any

from asyncua.ua import StatusCodes, VariantType

from gridpilot.core.lifecycle import ReasonCode
from gridpilot.core.telemetry import CORE_FIELDS, Sample
from gridpilot.core.telemetry_fields import FieldSpec, Quality

from ..control.local_control import LocalResult, Outcome

Value = float | str | bool | None


@dataclass(frozen=True, slots=True)
class PointValue:
    value: Value
    status: int  # an asyncua StatusCodes value
    source_ts: datetime | None

    def same_as(self, other: PointValue | None) -> bool:
        """Equal for publishing: a new timestamp alone is no change."""
        return other is not None and (self.value, self.status) == (other.value, other.status)


WAITING = PointValue(None, StatusCodes.BadWaitingForInitialData, None)


def telemetry_point(
    spec: FieldSpec,
    sample: Sample | None,
    previous: PointValue | None,
    now: datetime,
    stale_after_s: float,
) -> PointValue:
    """The value and status of one telemetry node for the poller's latest sample."""
    if sample is None:
        return previous or WAITING
    name = spec.name
    raw = (
        getattr(sample, name)
        if name in CORE_FIELDS or name == "state"
        else sample.details.get(name)
    )
    qualities = sample.details.get("quality")
    quality = qualities.get(name) if isinstance(qualities, dict) else None
    value = _coerce(spec, raw)
    if quality == Quality.BAD or (raw is not None and value is None):
        return PointValue(None, StatusCodes.BadDeviceFailure, sample.ts)
    if value is None:  # not in this sample: keep what we had, as uncertain
        if previous is None or previous.value is None:
            return WAITING
        return PointValue(previous.value, StatusCodes.UncertainLastUsableValue, previous.source_ts)
    old = (now - sample.ts).total_seconds() > stale_after_s
    if quality == Quality.STALE or old:
        return PointValue(value, StatusCodes.UncertainLastUsableValue, sample.ts)
    return PointValue(value, StatusCodes.Good, sample.ts)


def _coerce(spec: FieldSpec, raw: Any) -> Value:
    """The node's type from a sample value; None when missing or unusable."""
    if raw is None:
        return None
    if spec.kind == "number":
        if isinstance(raw, bool) or not isinstance(raw, int | float):
            return None
        number = float(raw)
        return number if math.isfinite(number) else None
    if spec.kind == "bool":
        return raw if isinstance(raw, bool) else None
    if spec.kind == "text":
        return str(raw)
    return None


# ------------------------------------------------------------------- writes

_LOCKED = frozenset({ReasonCode.PRIORITY_CONFLICT, ReasonCode.LOCAL_CONTROL})
_OUT_OF_RANGE = frozenset({ReasonCode.OUT_OF_LIMITS, ReasonCode.INVALID_COMMAND})
_DEVICE = frozenset({ReasonCode.DEVICE_WRITE_FAILED, ReasonCode.DEVICE_UNREACHABLE})


def write_status(result: LocalResult, *, release: bool = False) -> int:
    """The StatusCode a SCADA gets for a local setpoint (or release) write.

    - applied → ``Good``; accepted but not at the device within the wait →
      ``GoodCompletesAsynchronously`` (``CommandStatus`` tells the end);
    - refused by the limits or as invalid → ``BadOutOfRange``; a release with
      no local dispatch to end → ``BadInvalidState``;
    - refused by arbitration (the cloud holds the asset, or local control is
      not allowed) → ``BadLocked``;
    - the device write failed → ``BadDeviceFailure``.
    """
    if result.outcome is Outcome.APPLIED:
        return StatusCodes.Good
    if result.outcome is Outcome.PENDING:
        return StatusCodes.GoodCompletesAsynchronously
    if result.outcome is Outcome.FAILED or result.reason in _DEVICE:
        return StatusCodes.BadDeviceFailure
    if result.reason in _LOCKED:
        return StatusCodes.BadLocked
    if release and result.reason is ReasonCode.INVALID_COMMAND:
        return StatusCodes.BadInvalidState
    if result.reason in _OUT_OF_RANGE:
        return StatusCodes.BadOutOfRange
    return StatusCodes.BadInvalidState


def setpoint_problem(
    variant_type: object, value: object, p_min_kw: float, p_max_kw: float
) -> int | None:
    """Why a written SetpointKw is refused before anything is applied
    (``BadTypeMismatch``: not a Double; ``BadOutOfRange``: not finite or
    outside the asset's limits), else None."""
    if variant_type != VariantType.Double or not isinstance(value, float):
        return StatusCodes.BadTypeMismatch
    if not math.isfinite(value) or not p_min_kw <= value <= p_max_kw:
        return StatusCodes.BadOutOfRange
    return None
