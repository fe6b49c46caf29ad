"""The arbitration rule between local and cloud commands (pure); the
policies are described in :mod:`.local_control`."""

from __future__ import annotations

from gridpilot.core.lifecycle import ReasonCode

from .commands import Lease
from .local_control import Arbitration, Source


def arbitrate(
    policy: Arbitration, source: Source, active: Lease | None
) -> tuple[ReasonCode, str] | None:
    """Why ``policy`` refuses a new command from ``source`` while ``active``
    holds the asset, or None when it may go ahead (taking the asset over)."""
    if source is Source.CLOUD:
        if policy is Arbitration.LOCAL_ONLY:
            return ReasonCode.LOCAL_CONTROL, (
                "the site is under local control only (arbitration local_only): "
                "cloud dispatches are refused"
            )
        if policy is Arbitration.LOCAL_PRIORITY and active and active.source is Source.LOCAL:
            return ReasonCode.LOCAL_CONTROL, (
                f"asset under local control by {active.dispatch_id} ({active.actor}); "
                "arbitration local_priority"
            )
    elif policy is Arbitration.CLOUD_PRIORITY and active and active.source is Source.CLOUD:
        return ReasonCode.PRIORITY_CONFLICT, (
            f"cloud dispatch {active.dispatch_id} holds the asset until "
            f"{active.end.isoformat(timespec='seconds')}; arbitration cloud_priority"
        )
    return None
