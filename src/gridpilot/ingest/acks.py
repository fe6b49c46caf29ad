"""Agent DispatchAcks → signals to the dispatch workflows."""

from __future__ import annotations

import structlog
from temporalio.client import Client
from temporalio.service import RPCError, RPCStatusCode

from gridpilot.workflows.constants import SIGNAL_AGENT_ACK
from gridpilot.workflows.models import AgentAck

log = structlog.get_logger(__name__)


class TemporalAckSink:
    """A signal only needs the Temporal server, not a running worker, so the
    stream never blocks on workers that are deploying or down."""

    def __init__(self, client: Client) -> None:
        self._client = client

    async def __call__(self, ack: AgentAck) -> bool:
        """Signal the ack to its workflow; False when the workflow is closed
        (a late ack: the caller keeps it for the record)."""
        handle = self._client.get_workflow_handle(ack.dispatch_id)
        try:
            await handle.signal(SIGNAL_AGENT_ACK, ack)
        except RPCError as exc:
            if exc.status != RPCStatusCode.NOT_FOUND:
                raise
            return False
        return True
