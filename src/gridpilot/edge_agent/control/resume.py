"""Lease resumption after an agent restart: which leases the control journal
held are applied again, and which are acked as ended instead."""

from __future__ import annotations

from collections.abc import Callable, Collection, Mapping
from datetime import datetime

import structlog

from gridpilot.core.lifecycle import ReasonCode

from ..clock import Clock
from .acks import AckRecorder, AckState
from .commands import SetpointCommand
from .journal import ControlJournal
from .local_control import Source

log = structlog.get_logger(__name__)


def leases_to_resume(
    journal: ControlJournal,
    assets: Collection[str],
    acks: AckRecorder,
    *,
    now: datetime,
    failsafe_s: float,
) -> Mapping[str, list[SetpointCommand]]:
    """The journal's leases to apply again, by asset. One that ended while
    the agent was down, or a cloud one whose headend link was last seen
    longer ago than the fail-safe timeout (the fail-safe would have ended
    it), is acked as ended instead (the asset stays at its default)."""
    seen = journal.link_seen()
    resume: dict[str, list[SetpointCommand]] = {}
    for held in journal.leases():
        lease = held.lease
        ended: tuple[ReasonCode, str] | None = None
        if held.asset_id not in assets:
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
        journal.drop(lease.dispatch_id)
        reason, detail = ended
        acks.send(
            lease.dispatch_id,
            held.asset_id,
            AckState.RELEASED,
            reason,
            f"not resumed after an agent restart: {detail}; the asset is at its default",
            trace_context=lease.trace_context,
        )
    if resume:
        log.info(
            "resuming the leases held before the agent restarted",
            dispatches=",".join(c.dispatch_id for cs in resume.values() for c in cs),
        )
    return resume


async def mark_link_seen(
    journal: ControlJournal, link_up: Callable[[], bool], clock: Clock, every_s: float
) -> None:
    """Note in the journal, now and then, that the headend link is up: at
    a restart it tells whether a held cloud lease may be resumed."""
    while True:
        if link_up():
            journal.mark_link_seen(clock.now())
        await clock.sleep(every_s)
