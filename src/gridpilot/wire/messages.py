"""The protocol's message classes (generated), for annotations and for
reading a message's ``oneof``. Building and reading them field by field is
the other modules' job."""

from gridpilot.schema.pb.agent_pb2 import (
    AgentMessage,
    DispatchAck,
    HeadendMessage,
    Heartbeat,
    Hello,
    LocalDispatch,
    TelemetryBatch,
    TelemetrySample,
    Welcome,
)

__all__ = [
    "AgentMessage",
    "DispatchAck",
    "HeadendMessage",
    "Heartbeat",
    "Hello",
    "LocalDispatch",
    "TelemetryBatch",
    "TelemetrySample",
    "Welcome",
]
