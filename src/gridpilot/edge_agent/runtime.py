"""The edge agent's composition root: every part is built and wired here.

devices ─ pollers ─ batcher ─ buffer ─┐
                                      ├─ outbound ─ HeadendLink ═ gRPC ═ headend
controllers (one per asset) ─ acks ───┘                │
     ▲                                                 │
     └──────────── Setpoint / Release ◀────────────────┘
"""

from __future__ import annotations

import asyncio
import random
import time
from collections.abc import Callable, Mapping
from datetime import UTC, datetime
from pathlib import Path
from typing import TYPE_CHECKING, Any
from zoneinfo import ZoneInfo

import structlog

from gridpilot import __version__
from gridpilot.core.lifecycle import ReasonCode
from gridpilot.schema.pb import agent_pb2 as pb

from . import convert
from .adapters import DeviceAdapter, build_adapter
from .clock import Clock, SystemClock
from .config import OpcuaServerConfig, SiteConfig, site_assets
from .control.acks import (
    Ack,
    AckHistory,
    AckOutbox,
    AckRecorder,
    AckState,
    PendingReports,
    UnconfirmedAcks,
)
from .control.commands import ReleaseCommand, SetpointCommand
from .control.controller import AssetController
from .control.journal import ControlJournal
from .control.local_control import (
    Arbitration,
    ControlView,
    LocalResult,
    Source,
)
from .control.local_desk import LocalDesk
from .device import ManagedDevice
from .telemetry.buffer import Batch, DropPolicy, TelemetryBuffer
from .telemetry.buffer_sqlite import MEMORY, SqliteTelemetryBuffer
from .telemetry.polling import Poller
from .telemetry.publish import MqttTelemetryPublisher
from .uplink.link import HeadendLink, backoff_delay
from .uplink.outbound import AgentOutbound

if TYPE_CHECKING:
    from .opcua_surface import OpcuaSurface

log = structlog.get_logger(__name__)

MAX_CLOCK_SKEW_S = 5.0


class EdgeAgent:
    """One site's agent (gateway mode): ``await agent.run()`` until ``agent.stop()``.

    ``adapters`` replaces the device adapter of the named assets (tests, or a
    caller that builds its own); every other asset gets the adapter its config
    names. The telemetry buffer is the config's ``buffer.path``, else
    ``<state_dir>/<gateway_id>.telemetry.sqlite3``, else (no state_dir: tests,
    embedding) in memory; the control journal (:mod:`.journal`: held leases,
    unconfirmed local reports and acks) lives in the same file. On stop every lease is released
    (``RELEASED AGENT_OFFLINE``), every asset returns to its default, pending
    acks get a moment to leave, and the channel is closed.
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
        tz = ZoneInfo(config.site.timezone) if config.site.timezone else None
        self.assets = {a.asset_id: a for a in site_assets(config)}

        self.adapters: dict[str, DeviceAdapter] = dict(adapters or {})
        for asset_cfg in config.assets:
            if asset_cfg.id not in self.adapters:
                self.adapters[asset_cfg.id] = build_adapter(asset_cfg, clock=self._clock, tz=tz)
        devices = {
            asset_id: ManagedDevice(asset_id, self.adapters[asset_id], timeout_s=device_timeout_s)
            for asset_id in self.assets
        }
        self._devices = devices

        where = buffer_path(config, state_dir)
        self.buffer: TelemetryBuffer = SqliteTelemetryBuffer(
            where,
            max_bytes=config.buffer.max_bytes,
            max_age_s=config.buffer.max_age_s,
            policy=DropPolicy(config.buffer.policy),
        )
        # Held leases, unconfirmed local reports and acks: in the same file (its lock).
        self.journal = ControlJournal(str(where))
        self.history = AckHistory()
        self.acks = AckOutbox()
        self.local_reports = PendingReports(journal=self.journal)
        self._recorder = AckRecorder(self.history, self._emit, self._clock)
        surface = config.opcua_server
        self.arbitration = (
            Arbitration(surface.arbitration) if surface is not None else Arbitration.CLOUD_PRIORITY
        )
        self.unconfirmed = UnconfirmedAcks()
        for made in self.journal.acks():  # unconfirmed when the agent last stopped or died
            self.acks.put(made)
        self.outbound = AgentOutbound(self.acks, self.buffer, self.local_reports, self.unconfirmed)
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
                devices[asset_id],
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
        self._state_dir = state_dir
        # The OPC UA server surface for a local SCADA (docs/opcua-surface.md).
        self.opcua: OpcuaSurface | None = self._new_surface()
        self.pollers = {
            asset_id: Poller(device, interval_s=config.poll_interval_s(asset_id), clock=self._clock)
            for asset_id, device in devices.items()
        }
        self.publisher = (
            MqttTelemetryPublisher(
                config.mqtt_publish, site_id=config.site.id, gateway_id=config.gateway_id, rng=rng
            )
            if config.mqtt_publish is not None
            else None
        )
        self.link = HeadendLink(
            config.headend,
            hello=self._hello,
            outbound=self.outbound,
            on_up=self._on_up,
            on_message=self._on_message,
            on_down=self._arm_failsafe,
            clock=self._clock,
            heartbeat_interval_s=config.heartbeat_interval_s,
            rng=rng,
        )
        self._rng = rng or random.Random()
        self._stop = asyncio.Event()
        self._started = False
        self._seq = 0
        self._batched_ts: dict[str, datetime] = {}
        self._dropping = False
        self._failsafe: asyncio.Task[None] | None = None
        self._log = log.bind(gateway_id=config.gateway_id, site_id=config.site.id)

    # ------------------------------------------------------------- public

    @property
    def connected(self) -> bool:
        return self.link.up

    def stop(self) -> None:
        """Ask :meth:`run` to finish (safe from a signal handler in the loop)."""
        self._stop.set()

    async def run(self) -> None:
        if self._started:
            raise RuntimeError("EdgeAgent.run() can only be called once")
        self._started = True
        # batch_seq stays increasing across restarts: it starts from the clock
        # in milliseconds and counts one per batch (far below 1000 per second),
        # and never below what the buffer has seen (a clock set back).
        self._seq = max(int(self._clock.now().timestamp() * 1000), self.buffer.last_seq)
        self._log.info(
            "edge agent starting",
            version=__version__,
            headend=self.config.headend.address,
            assets=",".join(self.assets),
        )
        resume = self._held_leases()
        for asset_id, controller in self.controllers.items():
            controller.start(resume.get(asset_id, []))
        workers = [asyncio.create_task(p.run(), name=f"poll:{a}") for a, p in self.pollers.items()]
        workers.append(asyncio.create_task(self._batch_loop(), name="telemetry"))
        workers.append(asyncio.create_task(self._mark_link_seen(), name="link-seen"))
        if self.publisher is not None:
            workers.append(asyncio.create_task(self.publisher.run(), name="mqtt-publish"))
        if self.opcua is not None:
            workers.append(asyncio.create_task(self._serve_opcua(), name="opcua-surface"))
        link = asyncio.create_task(self.link.run(), name="headend-link")
        self._arm_failsafe()  # the link is down until the first Welcome
        try:
            await self._stop.wait()
        finally:
            await self._shutdown(workers, link)

    # ---------------------------------------------------------- telemetry

    async def _batch_loop(self) -> None:
        interval = self.config.telemetry_interval_s
        next_at = time.monotonic() + interval
        while True:
            await asyncio.sleep(max(0.0, next_at - time.monotonic()))
            next_at = max(next_at + interval, time.monotonic())
            try:
                self._make_batch()
            except Exception:  # a bug: keep the loop, show it
                self._log.exception("telemetry batch failed")

    def _make_batch(self) -> Batch | None:
        """One batch with every asset's latest sample not batched yet."""
        samples = []
        for asset_id, poller in self.pollers.items():
            sample = poller.latest
            if sample is not None and self._batched_ts.get(asset_id) != sample.ts:
                samples.append(sample)
                self._batched_ts[asset_id] = sample.ts
        if not samples:
            return None
        if self.publisher is not None:
            self.publisher.offer(samples)
        self._seq += 1
        batch = Batch(self._seq, tuple(samples))
        dropped = self.buffer.put(batch)
        if dropped and not self._dropping:
            stats = self.buffer.stats()
            self._log.warning(
                "telemetry buffer full or aged out; dropping batches (counted)",
                policy=self.config.buffer.policy,
                max_bytes=self.config.buffer.max_bytes,
                max_age_s=self.config.buffer.max_age_s,
                buffered_batches=stats.batches,
                dropped_batches_total=stats.dropped_batches,
            )
        elif not dropped and self._dropping:
            self._log.info(
                "telemetry buffer no longer dropping",
                dropped_batches_total=self.buffer.stats().dropped_batches,
            )
        self._dropping = bool(dropped)
        self.outbound.notify()
        return batch

    # ----------------------------------------------------------- dispatch

    def _held_leases(self) -> dict[str, list[SetpointCommand]]:
        """The journal's leases to apply again, by asset. One that ended while
        the agent was down, or a cloud one whose headend link was last seen
        longer ago than the fail-safe timeout (the fail-safe would have ended
        it), is acked as ended instead (the asset stays at its default)."""
        now = self._clock.now()
        seen = self.journal.link_seen()
        failsafe_s = self.config.failsafe_timeout_s
        resume: dict[str, list[SetpointCommand]] = {}
        for held in self.journal.leases():
            lease = held.lease
            ended: tuple[ReasonCode, str] | None = None
            if held.asset_id not in self.controllers:
                ended = (
                    ReasonCode.UNKNOWN_ASSET,
                    f"asset {held.asset_id!r} is no longer configured",
                )
            elif lease.end <= now:
                ended = (
                    ReasonCode.AGENT_OFFLINE,
                    f"the agent was not running when the lease ended at {lease.end.isoformat()}",
                )
            elif lease.source is Source.CLOUD and (
                seen is None or (now - seen).total_seconds() > failsafe_s
            ):
                last = seen.isoformat() if seen is not None else "never"
                ended = (
                    ReasonCode.LINK_LOST_REVERTED,
                    f"headend link last seen {last}, more than {failsafe_s:g} s before "
                    "the agent restarted",
                )
            if ended is None:
                resume.setdefault(held.asset_id, []).append(
                    SetpointCommand.resuming(held.asset_id, lease, now)
                )
                continue
            self.journal.drop(lease.dispatch_id)
            reason, detail = ended
            self._recorder.send(
                lease.dispatch_id,
                held.asset_id,
                AckState.RELEASED,
                reason,
                f"not resumed after an agent restart: {detail}; the asset is at its default",
                trace_context=lease.trace_context,
            )
        if resume:
            self._log.info(
                "resuming the leases held before the agent restarted",
                dispatches=",".join(c.dispatch_id for cs in resume.values() for c in cs),
            )
        return resume

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

    async def _on_message(self, message: pb.HeadendMessage) -> None:
        body = message.WhichOneof("body")
        if body == "setpoint":
            await self._on_setpoint(convert.setpoint_from_pb(message.setpoint))
        elif body == "release":
            await self._on_release(convert.release_from_pb(message.release))
        elif body == "telemetry_ack":
            self.buffer.ack(message.telemetry_ack.batch_seq)
        elif body == "dispatch_ack_received":
            received = message.dispatch_ack_received
            key = convert.ack_key_from_pb(received)
            ack = self.unconfirmed.confirmed(*key) if key is not None else None
            if key is not None:
                self.journal.ack_done(*key)
            if ack is not None and received.refused:
                self._log.warning(
                    "headend refused a dispatch ack",
                    dispatch_id=ack.dispatch_id,
                    state=str(ack.state),
                    refused=received.refused,
                )
        elif body == "local_dispatch_recorded":
            recorded = message.local_dispatch_recorded
            if self.local_reports.recorded(recorded.dispatch_id) and recorded.refused:
                self._log.warning(
                    "headend refused to record a local dispatch",
                    dispatch_id=recorded.dispatch_id,
                    refused=recorded.refused,
                )
        elif body == "welcome":
            self._log.warning("unexpected second Welcome ignored")
        # None: a message kind newer than this agent; fields are only added

    async def _on_setpoint(self, cmd: SetpointCommand) -> None:
        controller = self.controllers.get(cmd.asset_id)
        if controller is not None:
            await controller.submit(cmd)
            return
        self._recorder.send(
            cmd.dispatch_id,
            cmd.asset_id,
            AckState.REJECTED,
            ReasonCode.UNKNOWN_ASSET,
            f"this agent has no asset {cmd.asset_id!r} (it has: {', '.join(self.assets)})",
            trace_context=cmd.trace_context,
        )

    async def _on_release(self, cmd: ReleaseCommand) -> None:
        # By asset first, so a Release queues behind its own Setpoint.
        controller = self.controllers.get(cmd.asset_id) or next(
            (c for c in self.controllers.values() if c.holds(cmd.dispatch_id)), None
        )
        if controller is not None:
            await controller.submit(cmd)
        else:
            self._recorder.release_unknown(cmd.dispatch_id, cmd.asset_id, cmd.reason)

    # ------------------------------------------------------ local control

    async def local_setpoint(
        self, asset_id: str, p_kw: float, actor: str, wait_s: float = 5.0, channel: str = "opcua"
    ) -> LocalResult:
        return await self.local.setpoint(asset_id, p_kw, actor, wait_s, channel)

    async def local_release(self, asset_id: str, actor: str, wait_s: float = 5.0) -> LocalResult:
        return await self.local.release(asset_id, actor, wait_s)

    def control_view(self, asset_id: str) -> ControlView:
        return self.controllers[asset_id].view()

    def add_control_listener(self, callback: Callable[[str], None]) -> None:
        """``callback(asset_id)`` whenever that asset's control state changes."""
        self.local.listeners.append(callback)

    # --------------------------------------------------------------- link

    def _hello(self) -> pb.AgentMessage:
        cfg = self.config
        return convert.hello(cfg.gateway_id, cfg.site.id, cfg.site.name, self.assets.values())

    async def _on_up(self, welcome: pb.Welcome) -> None:
        self._disarm_failsafe()
        self.journal.mark_link_seen(self._clock.now())
        if welcome.HasField("server_time"):  # leases are wall-clock times: skew shifts them
            skew_s = (
                self._clock.now() - welcome.server_time.ToDatetime(tzinfo=UTC)
            ).total_seconds()
            if abs(skew_s) > MAX_CLOCK_SKEW_S:
                self._log.warning(
                    "agent clock differs from the headend's; lease times shift by as much",
                    skew_s=round(skew_s, 1),
                )
        # Welcome.last_acked_batch_seq is not used to free batches: the backlog
        # is replayed interleaved with live batches, so a higher seq may be
        # stored while lower ones are not. Only a TelemetryAck frees a batch.

    async def _mark_link_seen(self) -> None:
        """Note in the journal, now and then, that the headend link is up: at
        a restart it tells whether a held cloud lease may be resumed."""
        every_s = min(10.0, self.config.failsafe_timeout_s / 4)
        while True:
            if self.link.up:
                self.journal.mark_link_seen(self._clock.now())
            await asyncio.sleep(every_s)

    def _arm_failsafe(self) -> None:
        self._disarm_failsafe()
        self._failsafe = asyncio.create_task(self._failsafe_after(self.config.failsafe_timeout_s))

    def _disarm_failsafe(self) -> None:
        if self._failsafe is not None:
            self._failsafe.cancel()
            self._failsafe = None

    async def _failsafe_after(self, timeout_s: float) -> None:
        await asyncio.sleep(timeout_s)
        if any(c.active_dispatch_id or c.scheduled_dispatch_id for c in self.controllers.values()):
            self._log.warning(
                "headend link down longer than the fail-safe timeout; assets return to defaults",
                failsafe_timeout_s=timeout_s,
            )
        detail = f"headend link down for more than {timeout_s:g} s"
        for controller in self.controllers.values():
            await controller.failsafe(detail)

    # ---------------------------------------------------- OPC UA surface

    def _new_surface(self) -> OpcuaSurface | None:
        if self.config.opcua_server is None:
            return None
        from .opcua_surface import OpcuaSurface  # asyncua only where it is used

        return OpcuaSurface(
            self, self.config.opcua_server, state_dir=self._state_dir, clock=self._clock
        )

    async def _serve_opcua(self) -> None:
        """Start the surface; if it cannot (port taken, certificate unreadable),
        the agent goes on without it (the cloud link and the rails still work)
        and tries again with backoff."""
        attempt = 0
        while self.opcua is not None:
            try:
                await self.opcua.start()
                return
            except Exception as exc:
                attempt += 1
                delay = backoff_delay(attempt, self._rng, base_s=1.0, cap_s=60.0)
                self._log.error(
                    "opcua server surface could not start; retrying",
                    endpoint=self.config.opcua_server.endpoint if self.config.opcua_server else "",
                    error=str(exc) or type(exc).__name__,
                    retry_in_s=round(delay, 1),
                )
                await self.opcua.stop()
                await asyncio.sleep(delay)
                self.opcua = self._new_surface()

    # ----------------------------------------------------------- shutdown

    async def _shutdown(self, workers: list[asyncio.Task[None]], link: asyncio.Task[None]) -> None:
        self._log.info("edge agent stopping")
        self._disarm_failsafe()
        if self.opcua is not None:  # no SCADA write may arrive while control stops
            await self.opcua.stop()
        for task in workers:
            task.cancel()
        await self._ended(workers, "workers")
        stop_timeout = 2 * self._device_timeout_s + 1
        await asyncio.gather(*(c.stop(stop_timeout) for c in self.controllers.values()))
        deadline = time.monotonic() + self._stop_flush_s
        # let the last acks (RELEASED AGENT_OFFLINE) leave while the link is up
        while len(self.acks) and self.link.up and time.monotonic() < deadline:  # noqa: ASYNC110
            await asyncio.sleep(0.02)
        self.link.close()  # half-close, so the headend records the session closed
        await asyncio.wait([link], timeout=1.0)
        link.cancel()
        await self._ended([link], "link")
        for device in self._devices.values():
            await device.close()
        self._log.info(
            "edge agent stopped", unsent_acks=len(self.acks), unacked_batches=len(self.buffer)
        )
        self.buffer.close()
        self.journal.close()

    async def _ended(
        self, tasks: list[asyncio.Task[None]], what: str, timeout_s: float = 5.0
    ) -> None:
        """Wait for cancelled tasks to end, but not forever: a task that ignores
        its cancellation must not keep the agent from stopping (what it had
        buffered is on disk). Its stack goes to the log, to find out why."""
        if not tasks:
            return
        done, stuck = await asyncio.wait(tasks, timeout=timeout_s)
        for task in done:
            if not task.cancelled():
                task.exception()  # retrieved: ending is all that matters here
        for task in stuck:
            self._log.error(
                "task did not stop", step=what, task=task.get_name(), at=_awaiting(task)
            )


def _awaiting(task: asyncio.Task[None]) -> str:
    """Where a suspended task waits: its chain of awaited coroutines."""
    parts = []
    coro: Any = task.get_coro()
    while coro is not None:
        frame = getattr(coro, "cr_frame", None) or getattr(coro, "gi_frame", None)
        if frame is not None:
            name = frame.f_code.co_filename.rsplit("/", 1)[-1]
            parts.append(f"{name}:{frame.f_lineno} {frame.f_code.co_name}")
        coro = getattr(coro, "cr_await", None) or getattr(coro, "gi_yieldfrom", None)
    return " -> ".join(parts)


def buffer_path(config: SiteConfig, state_dir: Path | None) -> Path | str:
    """Where the telemetry buffer lives (see :class:`EdgeAgent`)."""
    if config.buffer.path is not None:
        return config.buffer.path
    if state_dir is not None:
        return state_dir / f"{config.gateway_id}.telemetry.sqlite3"
    return MEMORY
