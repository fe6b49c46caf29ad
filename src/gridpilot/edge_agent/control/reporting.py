"""How a controller tells of its leases: the journal first (on disk before
the ack can leave), then the ack, then the asset's one-line command status
and whoever listens for control changes (the OPC UA surface)."""

from __future__ import annotations

from collections.abc import Callable
from typing import Protocol

from gridpilot.core.lifecycle import ReasonCode

from .acks import AckRecorder, AckState
from .commands import Lease, SetpointCommand
from .local_control import Source


class LeaseJournal(Protocol):
    """What the reporter writes of :class:`~.journal.ControlJournal`."""

    def hold(self, asset_id: str, lease: Lease) -> None: ...
    def drop(self, dispatch_id: str) -> None: ...


class LeaseReporter:
    def __init__(
        self,
        asset_id: str,
        acks: AckRecorder,
        *,
        journal: LeaseJournal | None = None,
        on_change: Callable[[], None] | None = None,
    ) -> None:
        self._asset_id = asset_id
        self._acks = acks
        self._journal = journal
        self._on_change = on_change or (lambda: None)
        self.status = ""  # the latest command and what became of it

    def ack(
        self,
        lease: Lease,
        state: AckState,
        reason: ReasonCode | None,
        detail: str,
        *,
        applied_p_kw: float | None = None,
    ) -> None:
        if self._journal is not None:  # on disk before the ack can leave
            if state is AckState.ACCEPTED:
                self._journal.hold(self._asset_id, lease)
            elif state is not AckState.APPLIED:  # the lease's end
                self._journal.drop(lease.dispatch_id)
        self._acks.send(
            lease.dispatch_id,
            self._asset_id,
            state,
            reason,
            detail,
            trace_context=lease.trace_context,
            applied_p_kw=applied_p_kw,
        )
        self._changed(lease.dispatch_id, lease.source, state, reason, detail)

    def reject(self, cmd: SetpointCommand, reason: ReasonCode | None, detail: str) -> None:
        self._acks.send(
            cmd.dispatch_id,
            self._asset_id,
            AckState.REJECTED,
            reason,
            detail,
            trace_context=cmd.trace_context,
        )
        self._changed(cmd.dispatch_id, cmd.source, AckState.REJECTED, reason, detail)

    def notify(self) -> None:
        """The control state changed without an ack (a ramp step)."""
        self._on_change()

    def _changed(
        self,
        dispatch_id: str,
        source: Source,
        state: AckState,
        reason: ReasonCode | None,
        detail: str,
    ) -> None:
        because = f" {reason}" if reason else ""
        said = f": {detail}" if detail else ""
        self.status = f"{state} {source} {dispatch_id}{because}{said}"
        self._on_change()


def describe(lease: Lease) -> str:
    """A lease as an ack's detail names it."""
    if lease.source is Source.LOCAL:
        return f"local dispatch {lease.dispatch_id} ({lease.actor})"
    return lease.dispatch_id
