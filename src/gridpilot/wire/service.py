"""The AgentGateway gRPC service (generated glue): the servicer's base class
and its registration for the headend, the stub for the agent."""

from gridpilot.schema.pb.agent_pb2_grpc import (
    AgentGatewayServicer,
    AgentGatewayStub,
    add_AgentGatewayServicer_to_server,
)

__all__ = ["AgentGatewayServicer", "AgentGatewayStub", "add_AgentGatewayServicer_to_server"]
