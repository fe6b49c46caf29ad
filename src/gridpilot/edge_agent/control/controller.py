"""Per-asset dispatch control: leases, serialized device writes and their acks.

Every command for an asset (setpoint, release, lease timers, fail-safe,
shutdown) goes through one queue and one worker task, so the asset's state
and its device writes never interleave. Ack sequences (the headend relies on
them) are listed on :class:`AssetController`.
"""

from __future__ import annotations

import asyncio
from collections.abc import Callable, Sequence
from typing import TYPE_CHECKING

import structlog

from gridpilot.core.assets import Asset
from gridpilot.core.lifecycle import ReasonCode

from ..adapters import DeviceReadOnly
from ..clock import Clock
from ..device import ManagedDevice
from .acks import AckRecorder, AckState
from .arbitration import arbitrate
from .commands import Due, Lease, ReleaseCommand, Revert, SetpointCommand, TimerKind
from .local_control import Arbitration, ControlView, Mode, Source
from .output import RAMP_STEP_S, DeviceOutput, ramp_step
from .reporting import LeaseReporter, describe
from .timers import Timers
from .traced import admit, device_write_span, setpoint_span

if TYPE_CHECKING:
    from .journal import ControlJournal

Command = SetpointCommand | ReleaseCommand | Due | Revert

log = structlog.get_logger(__name__)


class AssetController:
    """One asset's dispatches. At most one *active* lease (applied at the
    device) and one *scheduled* lease (accepted, starting later).

    Ack sequences per dispatch:

    - rails refuse: ``REJECTED(reason)``
    - immediate start: ``ACCEPTED``, ``APPLIED(applied_p_kw)``, then one end:
      ``COMPLETED(LEASE_ENDED)`` at ``end``, ``RELEASED(<release reason>)``,
      ``RELEASED(SUPERSEDED)`` when a newer dispatch starts,
      ``RELEASED(LINK_LOST_REVERTED)`` after the fail-safe timeout, or
      ``RELEASED(AGENT_OFFLINE)`` when the agent stops
    - later start: ``ACCEPTED`` now, ``APPLIED`` at ``start``; released,
      superseded or fail-safed before then: ``RELEASED(reason)`` without APPLIED
    - with ``ramp_kw_per_s``: ``APPLIED`` after the first step (``applied_p_kw``
      is the target), the rest follows every RAMP_STEP_S until the target
    - device write fails: ``ACCEPTED``, ``FAILED(DEVICE_WRITE_FAILED)``; so does
      an end whose return to the default cannot be written
    - redelivered dispatch_id: the latest ack again, nothing re-applied

    Local dispatches (``source`` local, see :mod:`.local_control`) take the
    same path; the arbitration policy decides between them and cloud ones:
    the refused side gets ``REJECTED(PRIORITY_CONFLICT | LOCAL_CONTROL)``, a
    lease taken over ``RELEASED(SUPERSEDED | LOCAL_CONTROL)``. A lost headend
    link (fail-safe) ends cloud leases only: a local operator's setpoint does
    not depend on the cloud.
    """

    def __init__(
        self,
        asset: Asset,
        device: ManagedDevice,
        *,
        clock: Clock,
        acks: AckRecorder,
        revert_retry_s: float = 5.0,
        ramp_step_s: float = RAMP_STEP_S,
        arbitration: Arbitration = Arbitration.CLOUD_PRIORITY,
        on_change: Callable[[], None] | None = None,
        journal: ControlJournal | None = None,
    ) -> None:
        self.asset = asset
        self.arbitration = arbitration
        self._report = LeaseReporter(asset.asset_id, acks, journal=journal, on_change=on_change)
        self._clock = clock
        self._acks = acks
        self._revert_retry_s = revert_retry_s
        self._ramp_step_s = ramp_step_s
        self._queue: asyncio.Queue[Command] = asyncio.Queue(maxsize=64)
        self._active: Lease | None = None
        self._scheduled: Lease | None = None
        self._timers: Timers[TimerKind] = Timers(clock, self._deliver)
        self._revert_pending = True  # the agent starts by putting the asset at its default
        self._task: asyncio.Task[None] | None = None
        self._log = log.bind(asset_id=asset.asset_id)
        self._out = DeviceOutput(device, self._log)

    # ------------------------------------------------------------- public

    @property
    def active_dispatch_id(self) -> str | None:
        return self._active.dispatch_id if self._active else None

    @property
    def scheduled_dispatch_id(self) -> str | None:
        return self._scheduled.dispatch_id if self._scheduled else None

    def holds(self, dispatch_id: str) -> bool:
        return dispatch_id in (self.active_dispatch_id, self.scheduled_dispatch_id)

    def view(self) -> ControlView:
        lease = self._active
        return ControlView(
            asset_id=self.asset.asset_id,
            mode=Mode.DEFAULT if lease is None else Mode(lease.source.value),
            active_dispatch_id=lease.dispatch_id if lease else "",
            setpoint_kw=lease.p_kw if lease else None,
            setpoint_actual_kw=self._out.last_written,
            command_status=self._report.status,
        )

    def start(self, resume: Sequence[SetpointCommand] = ()) -> None:
        """Start the worker. ``resume``: leases held when the agent last died
        (see :mod:`.journal`), applied again before the start-up return to
        the default, so a resumed asset does not dip to it first."""
        self._task = asyncio.create_task(self._run(), name=f"control:{self.asset.asset_id}")
        for command in resume:
            self._queue.put_nowait(command)
        self._queue.put_nowait(Due("revert", ""))

    async def submit(self, command: SetpointCommand | ReleaseCommand) -> None:
        """Queue a command; waits when the asset is busy (backpressure on the stream)."""
        await self._queue.put(command)

    async def failsafe(self, detail: str) -> None:
        await self._queue.put(Revert(ReasonCode.LINK_LOST_REVERTED, detail))

    async def stop(self, timeout_s: float) -> None:
        """Release every lease (AGENT_OFFLINE), return to default, end the worker."""
        if self._task is None or self._task.done():
            return
        try:
            await asyncio.wait_for(
                self._queue.put(Revert(ReasonCode.AGENT_OFFLINE, "agent stopping", final=True)),
                timeout_s,
            )
            await asyncio.wait_for(asyncio.shield(self._task), timeout_s)
        except TimeoutError:
            self._log.warning("asset did not stop in time", timeout_s=timeout_s)
            self._task.cancel()
        finally:
            self._timers.cancel_all()

    # ------------------------------------------------------------- worker

    async def _run(self) -> None:
        while True:
            command = await self._queue.get()
            try:
                match command:
                    case SetpointCommand():
                        with setpoint_span(command):
                            await self._on_setpoint(command)
                    case ReleaseCommand():
                        await self._on_release(command)
                    case Due(kind="start"):
                        await self._on_start_due(command.dispatch_id)
                    case Due(kind="end"):
                        await self._on_end_due(command.dispatch_id)
                    case Due(kind="ramp"):
                        await self._on_ramp_due(command.dispatch_id)
                    case Due(kind="revert"):
                        if self._active is None and self._revert_pending:
                            await self._revert()
                    case Revert():
                        await self._on_revert(command)
                        if command.final:
                            return
            except Exception:  # a bug: keep controlling the asset, but show it
                self._log.exception("dispatch control error", command=type(command).__name__)

    async def _on_setpoint(self, cmd: SetpointCommand) -> None:
        # One log line per setpoint received: "did it arrive, once?" (on-call)
        if self._acks.resend_latest(cmd.dispatch_id):  # redelivery: never apply twice
            self._log.info("setpoint redelivered; ack resent", dispatch_id=cmd.dispatch_id)
            return
        self._log.info(
            "setpoint received", dispatch_id=cmd.dispatch_id, p_kw=cmd.p_kw, source=str(cmd.source)
        )
        now = self._clock.now()
        admission = admit(cmd, self.asset.limits, self.arbitration, self._active, now)
        lease = admission.lease
        if lease is None:
            self._report.reject(cmd, admission.reason, admission.detail)
            return
        self._report.ack(lease, AckState.ACCEPTED, None, admission.detail)
        # A newer cloud dispatch replaces one not yet started; a local write
        # (always immediate) leaves a scheduled cloud dispatch to arbitration.
        if self._scheduled is not None and lease.source is Source.CLOUD:
            self._report.ack(
                self._scheduled,
                AckState.RELEASED,
                ReasonCode.SUPERSEDED,
                f"superseded by {lease.dispatch_id} before it started",
            )
            self._scheduled = None
            self._timers.cancel("start")
        if lease.start > now:
            self._scheduled = lease
            self._timers.at("start", lease.dispatch_id, lease.start)
        else:
            await self._activate(lease)

    async def _activate(self, lease: Lease) -> None:
        if self._active is not None:
            old, self._active = self._active, None
            self._timers.cancel("end")
            if old.end <= self._clock.now():  # its end timer lost the race: it simply ended
                self._report.ack(
                    old,
                    AckState.COMPLETED,
                    ReasonCode.LEASE_ENDED,
                    f"lease ended; {lease.dispatch_id} follows",
                )
            elif old.source is Source.CLOUD and lease.source is Source.LOCAL:
                self._report.ack(
                    old,
                    AckState.RELEASED,
                    ReasonCode.LOCAL_CONTROL,
                    f"taken over by local dispatch {lease.dispatch_id} ({lease.actor}); "
                    f"arbitration {self.arbitration}",
                )
            else:
                self._report.ack(
                    old,
                    AckState.RELEASED,
                    ReasonCode.SUPERSEDED,
                    f"superseded by {describe(lease)}",
                )
        if lease.end <= self._clock.now():
            self._report.ack(
                lease,
                AckState.FAILED,
                ReasonCode.DEADLINE_PASSED,
                "the lease ended before it could start",
            )
            await self._revert()
            return
        first = lease.p_kw
        ramp = lease.ramp_kw_per_s
        if ramp and self._out.last_written is not None:
            first = ramp_step(self._out.last_written, lease.p_kw, ramp, self._ramp_step_s)
        with device_write_span(self.asset.asset_id, lease, first):  # + its ack
            try:
                applied = await self._out.write(first)
            except Exception as exc:
                self._out.log_error("setpoint", first, exc)
                self._report.ack(
                    lease,
                    AckState.FAILED,
                    ReasonCode.DEVICE_WRITE_FAILED,
                    f"device write failed: {exc}",
                )
                await self._revert()
                return
            self._active = lease
            self._revert_pending = False
            self._timers.cancel("revert")
            self._timers.cancel("ramp")
            if first != lease.p_kw:
                assert lease.ramp_kw_per_s is not None
                detail = f"ramping from {first:g} kW at {lease.ramp_kw_per_s:g} kW/s"
                self._report.ack(lease, AckState.APPLIED, None, detail, applied_p_kw=lease.p_kw)
                self._timers.after("ramp", lease.dispatch_id, self._ramp_step_s)
            else:
                self._report.ack(lease, AckState.APPLIED, None, "", applied_p_kw=applied)
            self._timers.at("end", lease.dispatch_id, lease.end)

    async def _on_ramp_due(self, dispatch_id: str) -> None:
        lease = self._active
        if lease is None or lease.dispatch_id != dispatch_id or lease.ramp_kw_per_s is None:
            return  # ended, released or superseded meanwhile
        current = lease.p_kw if self._out.last_written is None else self._out.last_written
        value = ramp_step(current, lease.p_kw, lease.ramp_kw_per_s, self._ramp_step_s)
        try:
            await self._out.write(value)
        except Exception as exc:  # the next step tries again; the lease still holds
            self._out.log_error("ramp step", value, exc)
        self._report.notify()
        if self._out.last_written != lease.p_kw:
            self._timers.after("ramp", dispatch_id, self._ramp_step_s)

    async def _on_start_due(self, dispatch_id: str) -> None:
        lease = self._scheduled
        if lease is None or lease.dispatch_id != dispatch_id:
            return  # released or superseded meanwhile
        if self._clock.now() < lease.start:  # the wall clock lags the timer
            self._timers.at("start", dispatch_id, lease.start)
            return
        self._scheduled = None
        refusal = arbitrate(self.arbitration, lease.source, self._active)
        if refusal is not None:  # e.g. a local operator took the asset meanwhile
            reason, detail = refusal
            self._report.ack(lease, AckState.RELEASED, reason, f"not started: {detail}")
            return
        await self._activate(lease)

    async def _on_end_due(self, dispatch_id: str) -> None:
        lease = self._active
        if lease is None or lease.dispatch_id != dispatch_id:
            return
        now = self._clock.now()
        if now < lease.end:
            self._timers.at("end", dispatch_id, lease.end)
            return
        nxt = self._scheduled
        if nxt is not None and nxt.start <= now:  # hand over without a dip to default
            self._scheduled = None
            self._timers.cancel("start")
            await self._activate(nxt)  # acks this one COMPLETED first
            return
        self._active = None
        await self._end_with_revert(
            lease, AckState.COMPLETED, ReasonCode.LEASE_ENDED, "lease ended"
        )

    async def _on_release(self, cmd: ReleaseCommand) -> None:
        reason = cmd.reason or ReasonCode.CANCELLED_BY_OPERATOR
        if self._active is not None and self._active.dispatch_id == cmd.dispatch_id:
            lease, self._active = self._active, None
            self._timers.cancel("end")
            await self._end_with_revert(lease, AckState.RELEASED, reason, "released")
        elif self._scheduled is not None and self._scheduled.dispatch_id == cmd.dispatch_id:
            lease, self._scheduled = self._scheduled, None
            self._timers.cancel("start")
            self._report.ack(lease, AckState.RELEASED, reason, "released before it started")
        else:
            self._acks.release_unknown(cmd.dispatch_id, self.asset.asset_id, cmd.reason)

    async def _on_revert(self, cmd: Revert) -> None:
        scheduled, self._scheduled = self._scheduled, None
        active, self._active = self._active, None
        if (
            active is not None
            and active.source is Source.LOCAL
            and not cmd.final
            and cmd.reason is ReasonCode.LINK_LOST_REVERTED
        ):
            # the cloud link is not the local operator's: their setpoint holds
            self._active, active = active, None
            self._timers.cancel("start")
        else:
            self._timers.cancel_all()
        if scheduled is not None:
            self._report.ack(
                scheduled,
                AckState.RELEASED,
                cmd.reason,
                f"{cmd.detail}; released before it started",
            )
        if active is not None:
            await self._end_with_revert(active, AckState.RELEASED, cmd.reason, cmd.detail)
        elif cmd.final or self._revert_pending:
            await self._revert()

    # ------------------------------------------------------------ helpers

    async def _end_with_revert(
        self, lease: Lease, state: AckState, reason: ReasonCode, detail: str
    ) -> None:
        error = await self._revert()
        default = f"{self.asset.default_p_kw:g} kW"
        if error is None:
            self._report.ack(lease, state, reason, f"{detail}; back to default {default}")
        else:
            self._report.ack(
                lease,
                AckState.FAILED,
                ReasonCode.DEVICE_WRITE_FAILED,
                f"{detail}, but returning to default {default} failed: {error}",
            )

    async def _revert(self) -> str | None:
        """Write the default; on failure retry later (while no lease runs)."""
        self._timers.cancel("ramp")
        try:
            await self._out.write(self.asset.default_p_kw)
        except DeviceReadOnly:  # a device that takes no setpoint has no default to return to
            self._revert_pending = False
            return None
        except Exception as exc:
            self._out.log_error("default", self.asset.default_p_kw, exc)
            self._revert_pending = True
            self._timers.after("revert", "", self._revert_retry_s)
            return str(exc) or type(exc).__name__
        self._revert_pending = False
        return None

    async def _deliver(self, kind: TimerKind, dispatch_id: str) -> None:
        await self._queue.put(Due(kind, dispatch_id))
