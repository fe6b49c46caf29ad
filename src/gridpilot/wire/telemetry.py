"""Telemetry samples and batches: protobuf <-> core ``Sample``.

The agent encodes its samples here (they are also the bytes of its disk
buffer, so this encoding must not change for stored batches to read back);
the headend decodes here only what its COPY encoder (``ingest/copyrows.py``)
cannot prove storable by itself.
"""

from __future__ import annotations

import math
from collections.abc import Iterable, Mapping, Sequence
from datetime import UTC, datetime, timedelta
from typing import Any

from google.protobuf.struct_pb2 import Struct, Value

from gridpilot.core.telemetry import CORE_FIELDS, Sample
from gridpilot.schema.pb import agent_pb2 as pb

_EPOCH = datetime(1970, 1, 1, tzinfo=UTC)
MAX_REJECTION_LINES = 100  # per TelemetryAck


def sample_to_pb(sample: Sample) -> pb.TelemetrySample:
    msg = pb.TelemetrySample(asset_id=sample.asset_id, ts=sample.ts)
    for name in CORE_FIELDS:
        value = getattr(sample, name)
        if value is not None:
            setattr(msg, name, value)
    if sample.state is not None:
        msg.state = sample.state
    if sample.details:
        msg.details.update({k: _struct_value(v) for k, v in sample.details.items()})
    return msg


def sample_from_pb(s: pb.TelemetrySample) -> Sample:
    """A sample as a core ``Sample``: plain attribute access, no json_format
    (``details`` numbers come back as floats). Non-finite numbers in
    ``details`` are kept, for :func:`~gridpilot.core.telemetry.sample_problem`
    to reject; a ``ts`` beyond what a datetime holds raises OverflowError."""
    ts, has = s.ts, s.HasField
    return Sample(
        s.asset_id,
        _EPOCH + timedelta(seconds=ts.seconds, microseconds=ts.nanos // 1000),
        s.p_kw if has("p_kw") else None,
        s.q_kvar if has("q_kvar") else None,
        s.soc_pct if has("soc_pct") else None,
        s.available_charge_kw if has("available_charge_kw") else None,
        s.available_discharge_kw if has("available_discharge_kw") else None,
        s.voltage_v if has("voltage_v") else None,
        s.frequency_hz if has("frequency_hz") else None,
        s.state if has("state") else None,
        struct_to_dict(s.details) if has("details") else {},
    )


def telemetry_batch(seq: int, samples: Iterable[Sample]) -> pb.TelemetryBatch:
    return pb.TelemetryBatch(batch_seq=seq, samples=[sample_to_pb(s) for s in samples])


def batch_samples(msg: pb.TelemetryBatch) -> tuple[Sample, ...]:
    return tuple(sample_from_pb(s) for s in msg.samples)


def telemetry_ack(seq: int, accepted: int, rejections: Sequence[str]) -> pb.HeadendMessage:
    """The batch is durable: ``accepted`` samples stored, ``rejections`` one line each."""
    ack = pb.TelemetryAck(
        batch_seq=seq,
        accepted=accepted,
        rejected=len(rejections),
        rejections=rejections[:MAX_REJECTION_LINES],
    )
    return pb.HeadendMessage(telemetry_ack=ack)


def struct_to_dict(st: Struct) -> dict[str, Any]:
    fields = st.fields
    return {k: _value(fields[k]) for k in fields}  # faster than .items() on a upb map


def _value(v: Value) -> Any:
    kind = v.WhichOneof("kind")
    if kind == "number_value":
        return v.number_value
    if kind == "string_value":
        return v.string_value
    if kind == "bool_value":
        return v.bool_value
    if kind == "struct_value":
        return struct_to_dict(v.struct_value)
    if kind == "list_value":
        return [_value(x) for x in v.list_value.values]
    return None


def _struct_value(value: Any) -> Any:
    """Struct holds JSON values only; anything else travels as text."""
    if value is None or isinstance(value, bool | str):
        return value
    if isinstance(value, int | float):
        return value if math.isfinite(value) else None
    if isinstance(value, Mapping):
        return {str(k): _struct_value(v) for k, v in value.items()}
    if isinstance(value, list | tuple):
        return [_struct_value(v) for v in value]
    return str(value)
