import datetime

from google.protobuf import struct_pb2 as _struct_pb2
from google.protobuf import timestamp_pb2 as _timestamp_pb2
from google.protobuf.internal import containers as _containers
from google.protobuf.internal import enum_type_wrapper as _enum_type_wrapper
from google.protobuf import descriptor as _descriptor
from google.protobuf import message as _message
from collections.abc import Iterable as _Iterable, Mapping as _Mapping
from typing import ClassVar as _ClassVar, Optional as _Optional, Union as _Union

DESCRIPTOR: _descriptor.FileDescriptor

class AssetType(int, metaclass=_enum_type_wrapper.EnumTypeWrapper):
    __slots__ = ()
    ASSET_TYPE_UNSPECIFIED: _ClassVar[AssetType]
    ASSET_TYPE_BESS: _ClassVar[AssetType]
    ASSET_TYPE_PV: _ClassVar[AssetType]
    ASSET_TYPE_WIND: _ClassVar[AssetType]
    ASSET_TYPE_EV_CHARGER: _ClassVar[AssetType]

class ReasonCode(int, metaclass=_enum_type_wrapper.EnumTypeWrapper):
    __slots__ = ()
    REASON_CODE_UNSPECIFIED: _ClassVar[ReasonCode]
    REASON_CODE_OUT_OF_LIMITS: _ClassVar[ReasonCode]
    REASON_CODE_UNKNOWN_ASSET: _ClassVar[ReasonCode]
    REASON_CODE_DEVICE_WRITE_FAILED: _ClassVar[ReasonCode]
    REASON_CODE_DEVICE_UNREACHABLE: _ClassVar[ReasonCode]
    REASON_CODE_AGENT_OFFLINE: _ClassVar[ReasonCode]
    REASON_CODE_DEADLINE_PASSED: _ClassVar[ReasonCode]
    REASON_CODE_SUPERSEDED: _ClassVar[ReasonCode]
    REASON_CODE_CANCELLED_BY_OPERATOR: _ClassVar[ReasonCode]
    REASON_CODE_LINK_LOST_REVERTED: _ClassVar[ReasonCode]
    REASON_CODE_INVALID_COMMAND: _ClassVar[ReasonCode]
    REASON_CODE_LEASE_ENDED: _ClassVar[ReasonCode]
    REASON_CODE_PRIORITY_CONFLICT: _ClassVar[ReasonCode]
    REASON_CODE_LOCAL_CONTROL: _ClassVar[ReasonCode]

class AckState(int, metaclass=_enum_type_wrapper.EnumTypeWrapper):
    __slots__ = ()
    ACK_STATE_UNSPECIFIED: _ClassVar[AckState]
    ACK_STATE_ACCEPTED: _ClassVar[AckState]
    ACK_STATE_APPLIED: _ClassVar[AckState]
    ACK_STATE_COMPLETED: _ClassVar[AckState]
    ACK_STATE_REJECTED: _ClassVar[AckState]
    ACK_STATE_FAILED: _ClassVar[AckState]
    ACK_STATE_RELEASED: _ClassVar[AckState]
ASSET_TYPE_UNSPECIFIED: AssetType
ASSET_TYPE_BESS: AssetType
ASSET_TYPE_PV: AssetType
ASSET_TYPE_WIND: AssetType
ASSET_TYPE_EV_CHARGER: AssetType
REASON_CODE_UNSPECIFIED: ReasonCode
REASON_CODE_OUT_OF_LIMITS: ReasonCode
REASON_CODE_UNKNOWN_ASSET: ReasonCode
REASON_CODE_DEVICE_WRITE_FAILED: ReasonCode
REASON_CODE_DEVICE_UNREACHABLE: ReasonCode
REASON_CODE_AGENT_OFFLINE: ReasonCode
REASON_CODE_DEADLINE_PASSED: ReasonCode
REASON_CODE_SUPERSEDED: ReasonCode
REASON_CODE_CANCELLED_BY_OPERATOR: ReasonCode
REASON_CODE_LINK_LOST_REVERTED: ReasonCode
REASON_CODE_INVALID_COMMAND: ReasonCode
REASON_CODE_LEASE_ENDED: ReasonCode
REASON_CODE_PRIORITY_CONFLICT: ReasonCode
REASON_CODE_LOCAL_CONTROL: ReasonCode
ACK_STATE_UNSPECIFIED: AckState
ACK_STATE_ACCEPTED: AckState
ACK_STATE_APPLIED: AckState
ACK_STATE_COMPLETED: AckState
ACK_STATE_REJECTED: AckState
ACK_STATE_FAILED: AckState
ACK_STATE_RELEASED: AckState

class AgentMessage(_message.Message):
    __slots__ = ("hello", "telemetry", "dispatch_ack", "heartbeat", "local_dispatch")
    HELLO_FIELD_NUMBER: _ClassVar[int]
    TELEMETRY_FIELD_NUMBER: _ClassVar[int]
    DISPATCH_ACK_FIELD_NUMBER: _ClassVar[int]
    HEARTBEAT_FIELD_NUMBER: _ClassVar[int]
    LOCAL_DISPATCH_FIELD_NUMBER: _ClassVar[int]
    hello: Hello
    telemetry: TelemetryBatch
    dispatch_ack: DispatchAck
    heartbeat: Heartbeat
    local_dispatch: LocalDispatch
    def __init__(self, hello: _Optional[_Union[Hello, _Mapping]] = ..., telemetry: _Optional[_Union[TelemetryBatch, _Mapping]] = ..., dispatch_ack: _Optional[_Union[DispatchAck, _Mapping]] = ..., heartbeat: _Optional[_Union[Heartbeat, _Mapping]] = ..., local_dispatch: _Optional[_Union[LocalDispatch, _Mapping]] = ...) -> None: ...

class HeadendMessage(_message.Message):
    __slots__ = ("welcome", "setpoint", "release", "telemetry_ack", "local_dispatch_recorded", "dispatch_ack_received")
    WELCOME_FIELD_NUMBER: _ClassVar[int]
    SETPOINT_FIELD_NUMBER: _ClassVar[int]
    RELEASE_FIELD_NUMBER: _ClassVar[int]
    TELEMETRY_ACK_FIELD_NUMBER: _ClassVar[int]
    LOCAL_DISPATCH_RECORDED_FIELD_NUMBER: _ClassVar[int]
    DISPATCH_ACK_RECEIVED_FIELD_NUMBER: _ClassVar[int]
    welcome: Welcome
    setpoint: Setpoint
    release: Release
    telemetry_ack: TelemetryAck
    local_dispatch_recorded: LocalDispatchRecorded
    dispatch_ack_received: DispatchAckReceived
    def __init__(self, welcome: _Optional[_Union[Welcome, _Mapping]] = ..., setpoint: _Optional[_Union[Setpoint, _Mapping]] = ..., release: _Optional[_Union[Release, _Mapping]] = ..., telemetry_ack: _Optional[_Union[TelemetryAck, _Mapping]] = ..., local_dispatch_recorded: _Optional[_Union[LocalDispatchRecorded, _Mapping]] = ..., dispatch_ack_received: _Optional[_Union[DispatchAckReceived, _Mapping]] = ...) -> None: ...

class AssetInfo(_message.Message):
    __slots__ = ("asset_id", "name", "asset_type", "p_min_kw", "p_max_kw", "capacity_kwh", "default_p_kw")
    ASSET_ID_FIELD_NUMBER: _ClassVar[int]
    NAME_FIELD_NUMBER: _ClassVar[int]
    ASSET_TYPE_FIELD_NUMBER: _ClassVar[int]
    P_MIN_KW_FIELD_NUMBER: _ClassVar[int]
    P_MAX_KW_FIELD_NUMBER: _ClassVar[int]
    CAPACITY_KWH_FIELD_NUMBER: _ClassVar[int]
    DEFAULT_P_KW_FIELD_NUMBER: _ClassVar[int]
    asset_id: str
    name: str
    asset_type: AssetType
    p_min_kw: float
    p_max_kw: float
    capacity_kwh: float
    default_p_kw: float
    def __init__(self, asset_id: _Optional[str] = ..., name: _Optional[str] = ..., asset_type: _Optional[_Union[AssetType, str]] = ..., p_min_kw: _Optional[float] = ..., p_max_kw: _Optional[float] = ..., capacity_kwh: _Optional[float] = ..., default_p_kw: _Optional[float] = ...) -> None: ...

class Hello(_message.Message):
    __slots__ = ("gateway_id", "site_id", "site_name", "assets", "agent_version")
    GATEWAY_ID_FIELD_NUMBER: _ClassVar[int]
    SITE_ID_FIELD_NUMBER: _ClassVar[int]
    SITE_NAME_FIELD_NUMBER: _ClassVar[int]
    ASSETS_FIELD_NUMBER: _ClassVar[int]
    AGENT_VERSION_FIELD_NUMBER: _ClassVar[int]
    gateway_id: str
    site_id: str
    site_name: str
    assets: _containers.RepeatedCompositeFieldContainer[AssetInfo]
    agent_version: str
    def __init__(self, gateway_id: _Optional[str] = ..., site_id: _Optional[str] = ..., site_name: _Optional[str] = ..., assets: _Optional[_Iterable[_Union[AssetInfo, _Mapping]]] = ..., agent_version: _Optional[str] = ...) -> None: ...

class Welcome(_message.Message):
    __slots__ = ("session_id", "server_time", "last_acked_batch_seq")
    SESSION_ID_FIELD_NUMBER: _ClassVar[int]
    SERVER_TIME_FIELD_NUMBER: _ClassVar[int]
    LAST_ACKED_BATCH_SEQ_FIELD_NUMBER: _ClassVar[int]
    session_id: str
    server_time: _timestamp_pb2.Timestamp
    last_acked_batch_seq: int
    def __init__(self, session_id: _Optional[str] = ..., server_time: _Optional[_Union[datetime.datetime, _timestamp_pb2.Timestamp, _Mapping]] = ..., last_acked_batch_seq: _Optional[int] = ...) -> None: ...

class Heartbeat(_message.Message):
    __slots__ = ("time", "dropped_batches", "dropped_samples", "buffered_batches", "buffered_bytes")
    TIME_FIELD_NUMBER: _ClassVar[int]
    DROPPED_BATCHES_FIELD_NUMBER: _ClassVar[int]
    DROPPED_SAMPLES_FIELD_NUMBER: _ClassVar[int]
    BUFFERED_BATCHES_FIELD_NUMBER: _ClassVar[int]
    BUFFERED_BYTES_FIELD_NUMBER: _ClassVar[int]
    time: _timestamp_pb2.Timestamp
    dropped_batches: int
    dropped_samples: int
    buffered_batches: int
    buffered_bytes: int
    def __init__(self, time: _Optional[_Union[datetime.datetime, _timestamp_pb2.Timestamp, _Mapping]] = ..., dropped_batches: _Optional[int] = ..., dropped_samples: _Optional[int] = ..., buffered_batches: _Optional[int] = ..., buffered_bytes: _Optional[int] = ...) -> None: ...

class TelemetrySample(_message.Message):
    __slots__ = ("asset_id", "ts", "p_kw", "q_kvar", "soc_pct", "available_charge_kw", "available_discharge_kw", "voltage_v", "frequency_hz", "state", "details")
    ASSET_ID_FIELD_NUMBER: _ClassVar[int]
    TS_FIELD_NUMBER: _ClassVar[int]
    P_KW_FIELD_NUMBER: _ClassVar[int]
    Q_KVAR_FIELD_NUMBER: _ClassVar[int]
    SOC_PCT_FIELD_NUMBER: _ClassVar[int]
    AVAILABLE_CHARGE_KW_FIELD_NUMBER: _ClassVar[int]
    AVAILABLE_DISCHARGE_KW_FIELD_NUMBER: _ClassVar[int]
    VOLTAGE_V_FIELD_NUMBER: _ClassVar[int]
    FREQUENCY_HZ_FIELD_NUMBER: _ClassVar[int]
    STATE_FIELD_NUMBER: _ClassVar[int]
    DETAILS_FIELD_NUMBER: _ClassVar[int]
    asset_id: str
    ts: _timestamp_pb2.Timestamp
    p_kw: float
    q_kvar: float
    soc_pct: float
    available_charge_kw: float
    available_discharge_kw: float
    voltage_v: float
    frequency_hz: float
    state: str
    details: _struct_pb2.Struct
    def __init__(self, asset_id: _Optional[str] = ..., ts: _Optional[_Union[datetime.datetime, _timestamp_pb2.Timestamp, _Mapping]] = ..., p_kw: _Optional[float] = ..., q_kvar: _Optional[float] = ..., soc_pct: _Optional[float] = ..., available_charge_kw: _Optional[float] = ..., available_discharge_kw: _Optional[float] = ..., voltage_v: _Optional[float] = ..., frequency_hz: _Optional[float] = ..., state: _Optional[str] = ..., details: _Optional[_Union[_struct_pb2.Struct, _Mapping]] = ...) -> None: ...

class TelemetryBatch(_message.Message):
    __slots__ = ("batch_seq", "samples")
    BATCH_SEQ_FIELD_NUMBER: _ClassVar[int]
    SAMPLES_FIELD_NUMBER: _ClassVar[int]
    batch_seq: int
    samples: _containers.RepeatedCompositeFieldContainer[TelemetrySample]
    def __init__(self, batch_seq: _Optional[int] = ..., samples: _Optional[_Iterable[_Union[TelemetrySample, _Mapping]]] = ...) -> None: ...

class TelemetryAck(_message.Message):
    __slots__ = ("batch_seq", "accepted", "rejected", "rejections")
    BATCH_SEQ_FIELD_NUMBER: _ClassVar[int]
    ACCEPTED_FIELD_NUMBER: _ClassVar[int]
    REJECTED_FIELD_NUMBER: _ClassVar[int]
    REJECTIONS_FIELD_NUMBER: _ClassVar[int]
    batch_seq: int
    accepted: int
    rejected: int
    rejections: _containers.RepeatedScalarFieldContainer[str]
    def __init__(self, batch_seq: _Optional[int] = ..., accepted: _Optional[int] = ..., rejected: _Optional[int] = ..., rejections: _Optional[_Iterable[str]] = ...) -> None: ...

class Setpoint(_message.Message):
    __slots__ = ("dispatch_id", "asset_id", "p_kw", "q_kvar", "start", "end", "ramp_kw_per_s", "trace_context")
    class TraceContextEntry(_message.Message):
        __slots__ = ("key", "value")
        KEY_FIELD_NUMBER: _ClassVar[int]
        VALUE_FIELD_NUMBER: _ClassVar[int]
        key: str
        value: str
        def __init__(self, key: _Optional[str] = ..., value: _Optional[str] = ...) -> None: ...
    DISPATCH_ID_FIELD_NUMBER: _ClassVar[int]
    ASSET_ID_FIELD_NUMBER: _ClassVar[int]
    P_KW_FIELD_NUMBER: _ClassVar[int]
    Q_KVAR_FIELD_NUMBER: _ClassVar[int]
    START_FIELD_NUMBER: _ClassVar[int]
    END_FIELD_NUMBER: _ClassVar[int]
    RAMP_KW_PER_S_FIELD_NUMBER: _ClassVar[int]
    TRACE_CONTEXT_FIELD_NUMBER: _ClassVar[int]
    dispatch_id: str
    asset_id: str
    p_kw: float
    q_kvar: float
    start: _timestamp_pb2.Timestamp
    end: _timestamp_pb2.Timestamp
    ramp_kw_per_s: float
    trace_context: _containers.ScalarMap[str, str]
    def __init__(self, dispatch_id: _Optional[str] = ..., asset_id: _Optional[str] = ..., p_kw: _Optional[float] = ..., q_kvar: _Optional[float] = ..., start: _Optional[_Union[datetime.datetime, _timestamp_pb2.Timestamp, _Mapping]] = ..., end: _Optional[_Union[datetime.datetime, _timestamp_pb2.Timestamp, _Mapping]] = ..., ramp_kw_per_s: _Optional[float] = ..., trace_context: _Optional[_Mapping[str, str]] = ...) -> None: ...

class Release(_message.Message):
    __slots__ = ("dispatch_id", "asset_id", "reason")
    DISPATCH_ID_FIELD_NUMBER: _ClassVar[int]
    ASSET_ID_FIELD_NUMBER: _ClassVar[int]
    REASON_FIELD_NUMBER: _ClassVar[int]
    dispatch_id: str
    asset_id: str
    reason: ReasonCode
    def __init__(self, dispatch_id: _Optional[str] = ..., asset_id: _Optional[str] = ..., reason: _Optional[_Union[ReasonCode, str]] = ...) -> None: ...

class DispatchAck(_message.Message):
    __slots__ = ("dispatch_id", "state", "reason", "detail", "time", "asset_id", "trace_context", "applied_p_kw")
    class TraceContextEntry(_message.Message):
        __slots__ = ("key", "value")
        KEY_FIELD_NUMBER: _ClassVar[int]
        VALUE_FIELD_NUMBER: _ClassVar[int]
        key: str
        value: str
        def __init__(self, key: _Optional[str] = ..., value: _Optional[str] = ...) -> None: ...
    DISPATCH_ID_FIELD_NUMBER: _ClassVar[int]
    STATE_FIELD_NUMBER: _ClassVar[int]
    REASON_FIELD_NUMBER: _ClassVar[int]
    DETAIL_FIELD_NUMBER: _ClassVar[int]
    TIME_FIELD_NUMBER: _ClassVar[int]
    ASSET_ID_FIELD_NUMBER: _ClassVar[int]
    TRACE_CONTEXT_FIELD_NUMBER: _ClassVar[int]
    APPLIED_P_KW_FIELD_NUMBER: _ClassVar[int]
    dispatch_id: str
    state: AckState
    reason: ReasonCode
    detail: str
    time: _timestamp_pb2.Timestamp
    asset_id: str
    trace_context: _containers.ScalarMap[str, str]
    applied_p_kw: float
    def __init__(self, dispatch_id: _Optional[str] = ..., state: _Optional[_Union[AckState, str]] = ..., reason: _Optional[_Union[ReasonCode, str]] = ..., detail: _Optional[str] = ..., time: _Optional[_Union[datetime.datetime, _timestamp_pb2.Timestamp, _Mapping]] = ..., asset_id: _Optional[str] = ..., trace_context: _Optional[_Mapping[str, str]] = ..., applied_p_kw: _Optional[float] = ...) -> None: ...

class DispatchAckReceived(_message.Message):
    __slots__ = ("dispatch_id", "state", "time", "refused")
    DISPATCH_ID_FIELD_NUMBER: _ClassVar[int]
    STATE_FIELD_NUMBER: _ClassVar[int]
    TIME_FIELD_NUMBER: _ClassVar[int]
    REFUSED_FIELD_NUMBER: _ClassVar[int]
    dispatch_id: str
    state: AckState
    time: _timestamp_pb2.Timestamp
    refused: str
    def __init__(self, dispatch_id: _Optional[str] = ..., state: _Optional[_Union[AckState, str]] = ..., time: _Optional[_Union[datetime.datetime, _timestamp_pb2.Timestamp, _Mapping]] = ..., refused: _Optional[str] = ...) -> None: ...

class LocalDispatch(_message.Message):
    __slots__ = ("dispatch_id", "asset_id", "p_kw", "start", "end", "actor", "channel")
    DISPATCH_ID_FIELD_NUMBER: _ClassVar[int]
    ASSET_ID_FIELD_NUMBER: _ClassVar[int]
    P_KW_FIELD_NUMBER: _ClassVar[int]
    START_FIELD_NUMBER: _ClassVar[int]
    END_FIELD_NUMBER: _ClassVar[int]
    ACTOR_FIELD_NUMBER: _ClassVar[int]
    CHANNEL_FIELD_NUMBER: _ClassVar[int]
    dispatch_id: str
    asset_id: str
    p_kw: float
    start: _timestamp_pb2.Timestamp
    end: _timestamp_pb2.Timestamp
    actor: str
    channel: str
    def __init__(self, dispatch_id: _Optional[str] = ..., asset_id: _Optional[str] = ..., p_kw: _Optional[float] = ..., start: _Optional[_Union[datetime.datetime, _timestamp_pb2.Timestamp, _Mapping]] = ..., end: _Optional[_Union[datetime.datetime, _timestamp_pb2.Timestamp, _Mapping]] = ..., actor: _Optional[str] = ..., channel: _Optional[str] = ...) -> None: ...

class LocalDispatchRecorded(_message.Message):
    __slots__ = ("dispatch_id", "refused")
    DISPATCH_ID_FIELD_NUMBER: _ClassVar[int]
    REFUSED_FIELD_NUMBER: _ClassVar[int]
    dispatch_id: str
    refused: str
    def __init__(self, dispatch_id: _Optional[str] = ..., refused: _Optional[str] = ...) -> None: ...
