"""The agent's local control desk: local setpoints and releases in, local
dispatch reports out, control-state changes to listeners (the OPC UA surface).
The vocabulary is in :mod:`.local_control`, the arbitration rule in :mod:`.arbitration`."""

from __future__ import annotations

import asyncio
import math
import uuid
from collections.abc import Awaitable, Callable, Mapping
from datetime import timedelta

import structlog

from gridpilot.core.dispatch import LOCAL_DISPATCH_PREFIX
from gridpilot.core.lifecycle import ReasonCode

from ..clock import Clock
from .acks import Ack, AckOutbox, AckState, LocalReport, PendingReports
from .commands import ReleaseCommand, SetpointCommand
from .controller import AssetController
from .local_control import ControlView, LocalResult, Mode, Outcome, Source

log = structlog.get_logger(__name__)

# What an ack means to a local writer waiting for its command.
_OUTCOME = {
    AckState.REJECTED: Outcome.REJECTED,
    AckState.APPLIED: Outcome.APPLIED,
    AckState.FAILED: Outcome.FAILED,
    AckState.RELEASED: Outcome.APPLIED,  # a waiting release is done
}


class LocalDesk:
    def __init__(
        self,
        *,
        outbox: AckOutbox,
        reports: PendingReports,
        notify: Callable[[], None],
        clock: Clock,
        lease_s: float,
    ) -> None:
        self.controllers: Mapping[str, AssetController] = {}
        self.listeners: list[Callable[[str], None]] = []
        self._outbox = outbox
        self._reports = reports
        self._notify = notify
        self._clock = clock
        self._lease_s = lease_s
        self._waiters: dict[str, asyncio.Future[LocalResult]] = {}

    def changer(self, asset_id: str) -> Callable[[], None]:
        """The controller's ``on_change`` for ``asset_id``: tells every listener."""

        def changed() -> None:
            for callback in self.listeners:
                try:
                    callback(asset_id)
                except Exception:  # a listener's bug must not stop control
                    log.exception("control listener failed", asset_id=asset_id)

        return changed

    def add_listener(self, callback: Callable[[str], None]) -> None:
        """``callback(asset_id)`` whenever that asset's control state changes."""
        self.listeners.append(callback)

    def view(self, asset_id: str) -> ControlView:
        """One asset's control state (KeyError for an asset the agent has not)."""
        return self.controllers[asset_id].view()

    def on_ack(self, ack: Ack) -> None:
        waiter = self._waiters.get(ack.dispatch_id)
        outcome = _OUTCOME.get(ack.state)
        if waiter is not None and not waiter.done() and outcome is not None:
            waiter.set_result(LocalResult(outcome, ack.dispatch_id, ack.reason, ack.detail))

    async def setpoint(
        self, asset_id: str, p_kw: float, actor: str, wait_s: float = 5.0, channel: str = "opcua"
    ) -> LocalResult:
        """A setpoint written on site: checked, reported to the headend as a
        local dispatch, queued behind the asset's other commands (same rails,
        same order as the cloud's), and awaited up to ``wait_s``."""
        controller = self.controllers.get(asset_id)
        if controller is None:
            return LocalResult(
                Outcome.REJECTED, None, ReasonCode.UNKNOWN_ASSET, f"no asset {asset_id!r}"
            )
        limits = controller.asset.limits
        if not math.isfinite(p_kw) or not limits.contains(p_kw):
            # refused at the boundary: no dispatch is made, nothing is reported
            return LocalResult(
                Outcome.REJECTED,
                None,
                ReasonCode.OUT_OF_LIMITS,
                f"p_kw {p_kw:g} is outside {limits.p_min_kw:g}..{limits.p_max_kw:g} kW",
            )
        now = self._clock.now()
        report = LocalReport(
            dispatch_id=f"{LOCAL_DISPATCH_PREFIX}{uuid.uuid4()}",
            asset_id=asset_id,
            p_kw=p_kw,
            start=now,
            end=now + timedelta(seconds=self._lease_s),
            actor=actor,
            channel=channel,
        )
        self._reports.add(report)
        self._outbox.put(report)  # ahead of its acks
        self._notify()
        log.info(
            "local setpoint",
            dispatch_id=report.dispatch_id,
            asset_id=asset_id,
            p_kw=p_kw,
            actor=actor,
        )
        command = SetpointCommand(
            report.dispatch_id,
            asset_id,
            p_kw,
            start=None,
            end=report.end,
            source=Source.LOCAL,
            actor=actor,
        )
        return await self._wait(report.dispatch_id, controller.submit(command), wait_s)

    async def release(self, asset_id: str, actor: str, wait_s: float = 5.0) -> LocalResult:
        """End the asset's active local dispatch (the asset returns to its default)."""
        controller = self.controllers.get(asset_id)
        view = controller.view() if controller is not None else None
        if controller is None or view is None or view.mode is not Mode.LOCAL:
            return LocalResult(
                Outcome.REJECTED,
                None,
                ReasonCode.INVALID_COMMAND,
                f"no local dispatch is active on {asset_id!r}",
            )
        dispatch_id = view.active_dispatch_id
        log.info("local release", dispatch_id=dispatch_id, asset_id=asset_id, actor=actor)
        command = ReleaseCommand(dispatch_id, asset_id, ReasonCode.CANCELLED_BY_OPERATOR)
        return await self._wait(dispatch_id, controller.submit(command), wait_s)

    async def _wait(
        self, dispatch_id: str, submitted: Awaitable[None], wait_s: float
    ) -> LocalResult:
        waiter = asyncio.get_running_loop().create_future()
        self._waiters[dispatch_id] = waiter
        try:
            async with asyncio.timeout(wait_s):
                await submitted
                return await waiter
        except TimeoutError:
            return LocalResult(
                Outcome.PENDING, dispatch_id, None, f"not finished within {wait_s:g} s"
            )
        finally:
            self._waiters.pop(dispatch_id, None)
