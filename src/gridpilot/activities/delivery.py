"""Activities that run on the headend replica holding the agent's stream.

Their task queue belongs to that process (``gridpilot-headend-<id>``), so a
workflow reaches the right replica; if the stream is not here (the agent moved
or dropped) they fail without retry and the workflow resolves the route again.
"""

from __future__ import annotations

from temporalio import activity
from temporalio.exceptions import ApplicationError

from gridpilot.ingest.sessions import SessionClosed, SessionRegistry
from gridpilot.ops import spans
from gridpilot.store.dispatches import DispatchStore
from gridpilot.wire import dispatch as wire
from gridpilot.wire.messages import HeadendMessage
from gridpilot.workflows.constants import ERROR_SUPERSEDED
from gridpilot.workflows.models import (
    ReleaseCommand,
    SetpointCommand,
    SetpointDelivery,
    TransitionRecord,
)


class DeliveryActivities:
    def __init__(self, sessions: SessionRegistry, store: DispatchStore) -> None:
        self._sessions = sessions
        self._store = store

    def _send(self, gateway_id: str, msg: HeadendMessage) -> None:
        session = self._sessions.get(gateway_id)
        if session is None:
            raise ApplicationError(
                f"gateway {gateway_id} has no stream on this headend",
                type="AGENT_OFFLINE",
                non_retryable=True,
            )
        try:
            session.send_nowait(msg)
        except SessionClosed as exc:
            raise ApplicationError(str(exc), type="AGENT_OFFLINE", non_retryable=True) from exc

    @activity.defn(name="deliver_setpoint")
    async def deliver_setpoint(self, cmd: SetpointCommand) -> None:
        await self._deliver(cmd, None)

    @activity.defn(name="deliver_setpoint_sent")
    async def deliver_setpoint_sent(self, delivery: SetpointDelivery) -> None:
        """``deliver_setpoint``, and the dispatch's SENT transition written in
        the same transaction once the setpoint is on its way (patch "lean-records")."""
        await self._deliver(delivery.command, delivery.sent)

    async def _deliver(self, cmd: SetpointCommand, sent: TransitionRecord | None) -> None:
        async with self._store.held_for_delivery(cmd.asset_id, cmd.dispatch_id, sent) as winner:
            if winner is not None:
                raise ApplicationError(
                    f"superseded by {winner} before delivery",
                    winner,
                    type=ERROR_SUPERSEDED,
                    non_retryable=True,
                )
            attributes = {
                "gridpilot.dispatch_id": cmd.dispatch_id,
                "gridpilot.asset_id": cmd.asset_id,
                "gridpilot.gateway_id": cmd.gateway_id,
            }
            # The Setpoint carries this span's context: the agent's spans continue it.
            with spans.span("headend.send_setpoint", attributes=attributes):
                self._send(cmd.gateway_id, wire.setpoint(cmd, spans.carrier()))

    @activity.defn(name="deliver_release")
    async def deliver_release(self, cmd: ReleaseCommand) -> None:
        self._send(cmd.gateway_id, wire.release(cmd))
