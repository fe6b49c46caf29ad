"""What comes down the stream, to where it goes: setpoints and releases to
the asset's controller, TelemetryAck to the buffer, the headend's receipts
to the unconfirmed acks and pending local reports."""

from __future__ import annotations

from collections.abc import Mapping
from datetime import UTC

import structlog

from gridpilot.core.lifecycle import ReasonCode
from gridpilot.wire import agent as wire
from gridpilot.wire.messages import HeadendMessage, Welcome

from ..clock import Clock
from ..control.acks import AckRecorder, AckState, PendingReports, UnconfirmedAcks
from ..control.commands import ReleaseCommand, SetpointCommand
from ..control.controller import AssetController
from ..control.journal import ControlJournal
from ..telemetry.buffer import TelemetryBuffer

log = structlog.get_logger(__name__)

MAX_CLOCK_SKEW_S = 5.0


class HeadendRouter:
    def __init__(
        self,
        *,
        controllers: Mapping[str, AssetController],
        acks: AckRecorder,
        buffer: TelemetryBuffer,
        unconfirmed: UnconfirmedAcks,
        reports: PendingReports,
        journal: ControlJournal,
        clock: Clock,
        log_context: Mapping[str, str],
    ) -> None:
        self._controllers = controllers
        self._acks = acks
        self._buffer = buffer
        self._unconfirmed = unconfirmed
        self._reports = reports
        self._journal = journal
        self._clock = clock
        self._log = log.bind(**log_context)

    async def on_message(self, message: HeadendMessage) -> None:
        body = message.WhichOneof("body")
        if body == "setpoint":
            await self._on_setpoint(wire.setpoint_from_pb(message.setpoint))
        elif body == "release":
            await self._on_release(wire.release_from_pb(message.release))
        elif body == "telemetry_ack":
            self._buffer.ack(message.telemetry_ack.batch_seq)
        elif body == "dispatch_ack_received":
            received = message.dispatch_ack_received
            key = wire.ack_key_from_pb(received)
            ack = self._unconfirmed.confirmed(*key) if key is not None else None
            if key is not None:
                self._journal.ack_done(*key)
            if ack is not None and received.refused:
                self._log.warning(
                    "headend refused a dispatch ack",
                    dispatch_id=ack.dispatch_id,
                    state=str(ack.state),
                    refused=received.refused,
                )
        elif body == "local_dispatch_recorded":
            recorded = message.local_dispatch_recorded
            if self._reports.recorded(recorded.dispatch_id) and recorded.refused:
                self._log.warning(
                    "headend refused to record a local dispatch",
                    dispatch_id=recorded.dispatch_id,
                    refused=recorded.refused,
                )
        elif body == "welcome":
            self._log.warning("unexpected second Welcome ignored")
        # None: a message kind newer than this agent; fields are only added

    def check_skew(self, welcome: Welcome) -> None:
        """Leases are wall-clock times: a skewed agent clock shifts them."""
        if not welcome.HasField("server_time"):
            return
        skew_s = (self._clock.now() - welcome.server_time.ToDatetime(tzinfo=UTC)).total_seconds()
        if abs(skew_s) > MAX_CLOCK_SKEW_S:
            self._log.warning(
                "agent clock differs from the headend's; lease times shift by as much",
                skew_s=round(skew_s, 1),
            )

    async def _on_setpoint(self, cmd: SetpointCommand) -> None:
        controller = self._controllers.get(cmd.asset_id)
        if controller is not None:
            await controller.submit(cmd)
            return
        self._acks.send(
            cmd.dispatch_id,
            cmd.asset_id,
            AckState.REJECTED,
            ReasonCode.UNKNOWN_ASSET,
            f"this agent has no asset {cmd.asset_id!r} (it has: {', '.join(self._controllers)})",
            trace_context=cmd.trace_context,
        )

    async def _on_release(self, cmd: ReleaseCommand) -> None:
        # By asset first, so a Release queues behind its own Setpoint.
        controller = self._controllers.get(cmd.asset_id) or next(
            (c for c in self._controllers.values() if c.holds(cmd.dispatch_id)), None
        )
        if controller is not None:
            await controller.submit(cmd)
        else:
            self._acks.release_unknown(cmd.dispatch_id, cmd.asset_id, cmd.reason)
