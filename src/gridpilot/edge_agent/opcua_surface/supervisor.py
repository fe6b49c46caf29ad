"""Keeps the OPC UA surface up: if it cannot start (port taken, certificate
unreadable), the agent goes on without it (the cloud link and the rails
still work) and a fresh surface tries again with backoff."""

from __future__ import annotations

import asyncio
import random
from collections.abc import Callable, Mapping

import structlog

from ..uplink.link import backoff_delay
from .surface import OpcuaSurface

log = structlog.get_logger(__name__)


class SurfaceSupervisor:
    def __init__(
        self,
        build: Callable[[], OpcuaSurface],
        *,
        endpoint: str,
        rng: random.Random,
        log_context: Mapping[str, str] | None = None,
    ) -> None:
        self._build = build
        self._endpoint = endpoint
        self._rng = rng
        self._log = log.bind(**(log_context or {}))
        self.surface: OpcuaSurface | None = build()

    async def run(self) -> None:
        """Start the surface; return once it listens."""
        attempt = 0
        while self.surface is not None:
            try:
                await self.surface.start()
                return
            except Exception as exc:
                attempt += 1
                delay = backoff_delay(attempt, self._rng, base_s=1.0, cap_s=60.0)
                self._log.error(
                    "opcua server surface could not start; retrying",
                    endpoint=self._endpoint,
                    error=str(exc) or type(exc).__name__,
                    retry_in_s=round(delay, 1),
                )
                await self.surface.stop()
                await asyncio.sleep(delay)
                self.surface = self._build()

    async def stop(self) -> None:
        if self.surface is not None:
            await self.surface.stop()
