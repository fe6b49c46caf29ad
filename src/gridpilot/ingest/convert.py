"""Protobuf <-> core conversions. Protobuf types stop here."""

from __future__ import annotations

import math
from datetime import UTC, datetime, timedelta
from typing import Any

from google.protobuf import struct_pb2, timestamp_pb2

from gridpilot.core.assets import Asset, AssetType, PowerLimits
from gridpilot.core.errors import ValidationFailed
from gridpilot.core.lifecycle import ReasonCode
from gridpilot.core.telemetry import CORE_FIELDS, Sample
from gridpilot.schema.pb import agent_pb2 as pb

ASSET_TYPE_FROM_PB = {
    pb.ASSET_TYPE_BESS: AssetType.BESS,
    pb.ASSET_TYPE_PV: AssetType.PV,
    pb.ASSET_TYPE_WIND: AssetType.WIND,
    pb.ASSET_TYPE_EV_CHARGER: AssetType.EV_CHARGER,
}
ASSET_TYPE_TO_PB = {v: k for k, v in ASSET_TYPE_FROM_PB.items()}

_EPOCH = datetime(1970, 1, 1, tzinfo=UTC)
# What google.protobuf.Timestamp may hold (0001-01-01 to 9999-12-31), and Python too.
_TS_SECONDS = range(-62_135_596_800, 253_402_300_800)
MAX_ID_CHARS = 200  # ids and names an agent declares (site, gateway, asset)

ACK_STATE_FROM_PB = {
    pb.ACK_STATE_ACCEPTED: "accepted",
    pb.ACK_STATE_APPLIED: "applied",
    pb.ACK_STATE_COMPLETED: "completed",
    pb.ACK_STATE_REJECTED: "rejected",
    pb.ACK_STATE_FAILED: "failed",
    pb.ACK_STATE_RELEASED: "released",
}


def check_text(field: str, value: str, limit: int = MAX_ID_CHARS) -> None:
    """Text PostgreSQL can store (no NUL) of a sane length; ValidationFailed names the field."""
    if "\x00" in value:
        raise ValidationFailed(f"{field} contains a NUL character", field=field)
    if len(value) > limit:
        raise ValidationFailed(f"{field} is longer than {limit} characters", field=field)


def check_hello_text(hello: pb.Hello) -> None:
    """Every text field of a Hello (they name rows in the database)."""
    for name in ("gateway_id", "site_id", "site_name", "agent_version"):
        check_text(f"hello.{name}", getattr(hello, name))
    for i, a in enumerate(hello.assets):
        check_text(f"hello.assets[{i}].asset_id", a.asset_id)
        check_text(f"hello.assets[{i}].name", a.name)


def clean_text(value: str, limit: int) -> str:
    """Free text from an agent (a detail, an actor), storable: NUL replaced, cut to limit."""
    return value.replace("\x00", "\ufffd")[:limit]


def ts_problem(ts: timestamp_pb2.Timestamp) -> str | None:
    """Why this Timestamp is no time (None: it is one)."""
    if ts.seconds not in _TS_SECONDS or not 0 <= ts.nanos < 1_000_000_000:
        return "is outside 0001-01-01..9999-12-31"
    return None


def ack_problem(raw: pb.DispatchAck) -> str | None:
    """Why a DispatchAck cannot be taken as it is (None: it can)."""
    if "\x00" in raw.dispatch_id or len(raw.dispatch_id) > MAX_ID_CHARS:
        return "dispatch_ack.dispatch_id is not a dispatch id"
    if raw.reason not in pb.ReasonCode.values():
        return f"dispatch_ack.reason {raw.reason} is not a known reason code"
    if raw.HasField("time") and (why := ts_problem(raw.time)):
        return f"dispatch_ack.time {why}"
    return None


def reason_from_pb(value: int) -> ReasonCode | None:
    if value == pb.REASON_CODE_UNSPECIFIED:
        return None
    name = pb.ReasonCode.Name(value).removeprefix("REASON_CODE_")
    return ReasonCode(name)


def reason_to_pb(reason: ReasonCode | None) -> int:
    if reason is None:
        return int(pb.REASON_CODE_UNSPECIFIED)
    return int(pb.ReasonCode.Value(f"REASON_CODE_{reason.value}"))


def ts_from_pb(ts: timestamp_pb2.Timestamp) -> datetime:
    return datetime.fromtimestamp(ts.seconds + ts.nanos / 1e9, tz=UTC)


def ts_to_pb(dt: datetime) -> timestamp_pb2.Timestamp:
    out = timestamp_pb2.Timestamp()
    out.FromDatetime(dt.astimezone(UTC))
    return out


def asset_from_pb(info: pb.AssetInfo, site_id: str, index: int) -> Asset:
    """An AssetInfo from Hello as a core Asset; ValidationFailed names the field."""
    where = f"hello.assets[{index}]"
    if not info.asset_id:
        raise ValidationFailed(f"{where}.asset_id is empty", field=f"{where}.asset_id")
    if info.asset_type not in ASSET_TYPE_FROM_PB:
        raise ValidationFailed(f"{where}.asset_type is not set", field=f"{where}.asset_type")
    for name in ("p_min_kw", "p_max_kw", "capacity_kwh", "default_p_kw"):
        if not math.isfinite(getattr(info, name)):
            raise ValidationFailed(f"{where}.{name} is not finite", field=f"{where}.{name}")
    try:
        limits = PowerLimits(info.p_min_kw, info.p_max_kw)
    except ValueError as exc:
        raise ValidationFailed(f"{where}: {exc}", field=f"{where}.p_min_kw") from exc
    if not limits.contains(info.default_p_kw):
        raise ValidationFailed(
            f"{where}.default_p_kw is outside its limits", field=f"{where}.default_p_kw"
        )
    return Asset(
        asset_id=info.asset_id,
        site_id=site_id,
        asset_type=ASSET_TYPE_FROM_PB[info.asset_type],
        limits=limits,
        name=info.name,
        capacity_kwh=info.capacity_kwh,
        default_p_kw=info.default_p_kw,
    )


def sample_from_pb(s: pb.TelemetrySample) -> Sample:
    """A sample as a core ``Sample``: plain attribute access, no json_format.
    Non-finite numbers in ``details`` are kept, for
    :func:`~gridpilot.core.telemetry.sample_problem` to reject. Ingest's hot
    path is :mod:`.copyrows`, which comes here only for samples its fast
    checks cannot prove storable (and for nested ``details``)."""
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


def struct_to_dict(st: struct_pb2.Struct) -> dict[str, Any]:
    fields = st.fields
    return {k: _value(fields[k]) for k in fields}  # faster than .items() on a upb map


def _value(v: struct_pb2.Value) -> Any:
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


def sample_to_pb(s: Sample) -> pb.TelemetrySample:
    out = pb.TelemetrySample(asset_id=s.asset_id, ts=ts_to_pb(s.ts))
    for name in CORE_FIELDS:
        value = getattr(s, name)
        if value is not None:
            setattr(out, name, value)
    if s.state is not None:
        out.state = s.state
    if s.details:
        details = struct_pb2.Struct()
        details.update(s.details)
        out.details.CopyFrom(details)
    return out
