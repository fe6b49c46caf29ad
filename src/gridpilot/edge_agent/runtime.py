"""The edge agent's composition root: every part is built and wired here.

devices ─ pollers ─ batcher ─ buffer ─┐                      (telemetry/)
                                      ├─ outbound ─ HeadendLink ═ gRPC ═ headend   (uplink/)
controllers (one per asset) ─ acks ───┘                │
     ▲                                                 │
     └────────── router: Setpoint / Release ◀──────────┘     (control/, uplink/router.py)

The fail-safe, lease resumption and the local desk are in control/; the OPC
UA surface and its supervisor in opcua_surface/.
"""

from __future__ import annotations

import asyncio
import random
import time
from collections.abc import Mapping
from pathlib import Path
from typing import TYPE_CHECKING
from zoneinfo import ZoneInfo

import structlog

from gridpilot import __version__
from gridpilot.wire import session as wire_session
from gridpilot.wire.messages import AgentMessage, Welcome

from .adapters import DeviceAdapter, build_adapter
from .clock import Clock, SystemClock
from .config import OpcuaServerConfig, SiteConfig, site_assets
from .control.acks import Ack, AckHistory, AckOutbox, AckRecorder, PendingReports, UnconfirmedAcks
from .control.controller import AssetController
from .control.failsafe import FailSafe
from .control.journal import ControlJournal
from .control.local_control import Arbitration
from .control.local_desk import LocalDesk
from .control.resume import leases_to_resume, mark_link_seen
from .device import ManagedDevice
from .tasks import wait_ended
from .telemetry.batcher import Batcher
from .telemetry.buffer import DropPolicy, TelemetryBuffer
from .telemetry.buffer_sqlite import MEMORY, SqliteTelemetryBuffer
from .telemetry.polling import Poller
from .telemetry.publish import MqttTelemetryPublisher
from .uplink.link import HeadendLink
from .uplink.outbound import AgentOutbound
from .uplink.router import HeadendRouter

if TYPE_CHECKING:
    from .opcua_surface import OpcuaSurface
    from .opcua_surface.supervisor import SurfaceSupervisor

log = structlog.get_logger(__name__)


class EdgeAgent:
    """One site's agent (gateway mode): ``await agent.run()`` until ``agent.stop()``.

    ``adapters`` replaces the device adapter of the named assets (tests, or a
    caller that builds its own); every other asset gets the adapter its config
    names. The telemetry buffer is the config's ``buffer.path``, else
    ``<state_dir>/<gateway_id>.telemetry.sqlite3``, else (no state_dir: tests,
    embedding) in memory; the control journal (:mod:`.control.journal`: held
    leases, unconfirmed local reports and acks) lives in the same file. On
    stop every lease is released (``RELEASED AGENT_OFFLINE``), every asset
    returns to its default, pending acks get a moment to leave, and the
    channel is closed.
    """

    def __init__(
        self,
        config: SiteConfig,
        *,
        clock: Clock | None = None,
        adapters: Mapping[str, DeviceAdapter] | None = None,
        device_timeout_s: float = 5.0,
        revert_retry_s: float = 5.0,
        stop_flush_s: float = 2.0,
        rng: random.Random | None = None,
        state_dir: Path | None = None,
    ) -> None:
        self.config = config
        self._clock = clock or SystemClock()
        self._device_timeout_s = device_timeout_s
        self._stop_flush_s = stop_flush_s
        self._rng = rng or random.Random()
        self._state_dir = state_dir
        context = {"gateway_id": config.gateway_id, "site_id": config.site.id}
        self._log = log.bind(**context)
        tz = ZoneInfo(config.site.timezone) if config.site.timezone else None
        self.assets = {a.asset_id: a for a in site_assets(config)}

        self.adapters: dict[str, DeviceAdapter] = dict(adapters or {})
        for asset_cfg in config.assets:
            if asset_cfg.id not in self.adapters:
                self.adapters[asset_cfg.id] = build_adapter(asset_cfg, clock=self._clock, tz=tz)
        self._devices = {
            asset_id: ManagedDevice(asset_id, self.adapters[asset_id], timeout_s=device_timeout_s)
            for asset_id in self.assets
        }

        # ---- telemetry
        where = buffer_path(config, state_dir)
        self.buffer: TelemetryBuffer = SqliteTelemetryBuffer(
            where,
            max_bytes=config.buffer.max_bytes,
            max_age_s=config.buffer.max_age_s,
            policy=DropPolicy(config.buffer.policy),
        )
        self.pollers = {
            asset_id: Poller(device, interval_s=config.poll_interval_s(asset_id), clock=self._clock)
            for asset_id, device in self._devices.items()
        }
        self.publisher = (
            MqttTelemetryPublisher(
                config.mqtt_publish, site_id=config.site.id, gateway_id=config.gateway_id, rng=rng
            )
            if config.mqtt_publish is not None
            else None
        )

        # ---- control: held leases, unconfirmed local reports and acks are
        # journaled in the buffer's file (its lock keeps one agent per file)
        self.journal = ControlJournal(str(where))
        self.history = AckHistory()
        self.acks = AckOutbox()
        self.local_reports = PendingReports(journal=self.journal)
        self.unconfirmed = UnconfirmedAcks()
        for made in self.journal.acks():  # unconfirmed when the agent last stopped or died
            self.acks.put(made)
        self._recorder = AckRecorder(self.history, self._emit, self._clock)
        self.outbound = AgentOutbound(self.acks, self.buffer, self.local_reports, self.unconfirmed)
        surface = config.opcua_server
        self.arbitration = (
            Arbitration(surface.arbitration) if surface is not None else Arbitration.CLOUD_PRIORITY
        )
        self.local = LocalDesk(
            outbox=self.acks,
            reports=self.local_reports,
            notify=self.outbound.notify,
            clock=self._clock,
            lease_s=(
                surface.local_lease_s
                if surface is not None
                else OpcuaServerConfig.model_fields["local_lease_s"].default
            ),
        )
        self.controllers = {
            asset_id: AssetController(
                asset,
                self._devices[asset_id],
                clock=self._clock,
                acks=self._recorder,
                revert_retry_s=revert_retry_s,
                arbitration=self.arbitration,
                on_change=self.local.changer(asset_id),
                journal=self.journal,
            )
            for asset_id, asset in self.assets.items()
        }
        self.local.controllers = self.controllers
        self.failsafe = FailSafe(
            self.controllers, timeout_s=config.failsafe_timeout_s, clock=self._clock
        )
        self.batcher = Batcher(
            self.pollers,
            self.buffer,
            interval_s=config.telemetry_interval_s,
            limits=config.buffer,
            notify=self.outbound.notify,
            publisher=self.publisher,
            log_context=context,
        )

        # ---- uplink
        self.router = HeadendRouter(
            controllers=self.controllers,
            acks=self._recorder,
            buffer=self.buffer,
            unconfirmed=self.unconfirmed,
            reports=self.local_reports,
            journal=self.journal,
            clock=self._clock,
            log_context=context,
        )
        self.link = HeadendLink(
            config.headend,
            hello=self._hello,
            outbound=self.outbound,
            on_up=self._on_up,
            on_message=self.router.on_message,
            on_down=self.failsafe.arm,
            clock=self._clock,
            heartbeat_interval_s=config.heartbeat_interval_s,
            rng=rng,
        )

        # ---- the OPC UA server surface for a local SCADA (docs/opcua-surface.md)
        self._surface = self._new_supervisor()
        self._stop = asyncio.Event()
        self._started = False

    # ------------------------------------------------------------- public

    @property
    def connected(self) -> bool:
        return self.link.up

    @property
    def opcua(self) -> OpcuaSurface | None:
        """The OPC UA surface now serving (a new one after a failed start)."""
        return self._surface.surface if self._surface is not None else None

    def stop(self) -> None:
        """Ask :meth:`run` to finish (safe from a signal handler in the loop)."""
        self._stop.set()

    async def run(self) -> None:
        if self._started:
            raise RuntimeError("EdgeAgent.run() can only be called once")
        self._started = True
        self.batcher.start(self._clock.now())
        self._log.info(
            "edge agent starting",
            version=__version__,
            headend=",".join(self.config.headend.addresses),
            assets=",".join(self.assets),
        )
        resume = leases_to_resume(
            self.journal,
            self.controllers,
            self._recorder,
            now=self._clock.now(),
            failsafe_s=self.config.failsafe_timeout_s,
        )
        for asset_id, controller in self.controllers.items():
            controller.start(resume.get(asset_id, []))
        workers = [asyncio.create_task(p.run(), name=f"poll:{a}") for a, p in self.pollers.items()]
        workers.append(asyncio.create_task(self.batcher.run(), name="telemetry"))
        every_s = min(10.0, self.config.failsafe_timeout_s / 4)
        seen = mark_link_seen(self.journal, lambda: self.link.up, self._clock, every_s)
        workers.append(asyncio.create_task(seen, name="link-seen"))
        if self.publisher is not None:
            workers.append(asyncio.create_task(self.publisher.run(), name="mqtt-publish"))
        if self._surface is not None:
            workers.append(asyncio.create_task(self._surface.run(), name="opcua-surface"))
        link = asyncio.create_task(self.link.run(), name="headend-link")
        self.failsafe.arm()  # the link is down until the first Welcome
        try:
            await self._stop.wait()
        finally:
            await self._shutdown(workers, link)

    # ------------------------------------------------------------- wiring

    def _emit(self, ack: Ack) -> None:
        self.journal.ack_made(ack)  # on disk until the headend confirms it
        self.acks.put(ack)
        self.outbound.notify()
        self.local.on_ack(ack)
        self._log.info(
            "dispatch ack",
            dispatch_id=ack.dispatch_id,
            asset_id=ack.asset_id,
            state=str(ack.state),
            reason=str(ack.reason) if ack.reason else None,
            detail=ack.detail or None,
        )

    def _hello(self) -> AgentMessage:
        cfg = self.config
        return wire_session.hello(cfg.gateway_id, cfg.site.id, cfg.site.name, self.assets.values())

    async def _on_up(self, welcome: Welcome) -> None:
        self.failsafe.disarm()
        self.journal.mark_link_seen(self._clock.now())
        self.router.check_skew(welcome)
        # Welcome.last_acked_batch_seq is not used to free batches: the backlog
        # is replayed interleaved with live batches, so a higher seq may be
        # stored while lower ones are not. Only a TelemetryAck frees a batch.

    def _new_supervisor(self) -> SurfaceSupervisor | None:
        surface = self.config.opcua_server
        if surface is None:
            return None
        # asyncua only where it is used
        from .opcua_surface import OpcuaSurface
        from .opcua_surface.supervisor import SurfaceSupervisor

        def build() -> OpcuaSurface:
            return OpcuaSurface(
                surface,
                site_id=self.config.site.id,
                gateway_id=self.config.gateway_id,
                assets=self.assets,
                pollers=self.pollers,
                desk=self.local,
                link_up=lambda: self.link.up,
                state_dir=self._state_dir,
                clock=self._clock,
            )

        return SurfaceSupervisor(
            build,
            endpoint=surface.endpoint,
            rng=self._rng,
            log_context={"gateway_id": self.config.gateway_id, "site_id": self.config.site.id},
        )

    # ----------------------------------------------------------- shutdown

    async def _shutdown(self, workers: list[asyncio.Task[None]], link: asyncio.Task[None]) -> None:
        self._log.info("edge agent stopping")
        self.failsafe.disarm()
        if self._surface is not None:  # no SCADA write may arrive while control stops
            await self._surface.stop()
        for task in workers:
            task.cancel()
        await wait_ended(workers, "workers", self._log)
        stop_timeout = 2 * self._device_timeout_s + 1
        await asyncio.gather(*(c.stop(stop_timeout) for c in self.controllers.values()))
        deadline = time.monotonic() + self._stop_flush_s
        # let the last acks (RELEASED AGENT_OFFLINE) leave while the link is up
        while len(self.acks) and self.link.up and time.monotonic() < deadline:  # noqa: ASYNC110
            await asyncio.sleep(0.02)
        self.link.close()  # half-close, so the headend records the session closed
        await asyncio.wait([link], timeout=1.0)
        link.cancel()
        await wait_ended([link], "link", self._log)
        for device in self._devices.values():
            await device.close()
        self._log.info(
            "edge agent stopped", unsent_acks=len(self.acks), unacked_batches=len(self.buffer)
        )
        self.buffer.close()
        self.journal.close()


def buffer_path(config: SiteConfig, state_dir: Path | None) -> Path | str:
    """Where the telemetry buffer lives (see :class:`EdgeAgent`)."""
    if config.buffer.path is not None:
        return config.buffer.path
    if state_dir is not None:
        return state_dir / f"{config.gateway_id}.telemetry.sqlite3"
    return MEMORY
