"""The fail-safe: when the headend link stays down longer than
``failsafe_timeout_s``, every asset's cloud leases end and it returns to its
default (local leases hold: the local operator does not depend on the cloud)."""

from __future__ import annotations

import asyncio
from collections.abc import Mapping

import structlog

from ..clock import Clock
from .controller import AssetController

log = structlog.get_logger(__name__)


class FailSafe:
    """Armed while the link is down (from start until the first Welcome, and
    again at each loss), disarmed when it comes up."""

    def __init__(
        self, controllers: Mapping[str, AssetController], *, timeout_s: float, clock: Clock
    ) -> None:
        self._controllers = controllers
        self._timeout_s = timeout_s
        self._clock = clock
        self._task: asyncio.Task[None] | None = None

    @property
    def armed(self) -> bool:
        return self._task is not None and not self._task.done()

    def arm(self) -> None:
        self.disarm()
        self._task = asyncio.create_task(self._after_timeout(), name="failsafe")

    def disarm(self) -> None:
        if self._task is not None:
            self._task.cancel()
            self._task = None

    async def _after_timeout(self) -> None:
        timeout_s = self._timeout_s
        await self._clock.sleep(timeout_s)
        controllers = self._controllers.values()
        if any(c.active_dispatch_id or c.scheduled_dispatch_id for c in controllers):
            log.warning(
                "headend link down longer than the fail-safe timeout; assets return to defaults",
                failsafe_timeout_s=timeout_s,
            )
        detail = f"headend link down for more than {timeout_s:g} s"
        for controller in controllers:
            await controller.failsafe(detail)
