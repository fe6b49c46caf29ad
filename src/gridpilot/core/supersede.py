"""Which of two overlapping dispatches of one asset keeps it: the supersede order.

Decided from what is known at submit, never from which workflow claims first:
higher priority wins; at equal priority the newer submission wins (its
``submit_seq``, taken from one database sequence in the submit). A newer
dispatch of lower priority is refused by an older one of higher priority, as
before. Site children carry their parent's ``submit_seq``.

The order is total and one-way: of any two dispatches exactly one keeps the
asset, whichever claims first, so no two can supersede each other.
``submit_seq`` 0 means "submitted before the order was recorded": it is older
than every numbered one. Two claims with the same key (a site's re-spread child
and the child it replaces) fall back to the old rule: the later claim wins,
unless the claimant was already superseded (``ClaimKey.superseded``).
"""

from __future__ import annotations

from dataclasses import dataclass
from enum import StrEnum


class Verdict(StrEnum):
    # The claimant takes the asset: the holder is superseded by it.
    TAKES = "takes"
    # The holder (older, higher priority) keeps it: the claimant fails PRIORITY_CONFLICT.
    REFUSED = "refused"
    # The holder is newer (or outranks an older claimant): the claimant ends SUPERSEDED.
    SUPERSEDED = "superseded"


@dataclass(frozen=True)
class ClaimKey:
    dispatch_id: str
    priority: int
    submit_seq: int = 0
    # Already marked superseded by another dispatch: it never takes the asset back.
    superseded: bool = False

    @property
    def rank(self) -> tuple[int, int]:
        return (self.priority, self.submit_seq)


def decide_claim(holder: ClaimKey, claimant: ClaimKey) -> Verdict:
    """What a claimant's claim does to one live, overlapping holder."""
    if holder.priority > claimant.priority:
        # A newer, higher-priority holder would have superseded this one had it
        # claimed first: same end either way. An older one refuses a newer claimant.
        return Verdict.SUPERSEDED if holder.submit_seq > claimant.submit_seq else Verdict.REFUSED
    if holder.priority < claimant.priority or claimant.submit_seq >= holder.submit_seq:
        return Verdict.TAKES
    return Verdict.SUPERSEDED


@dataclass(frozen=True)
class ClaimDecision:
    """The claim's outcome against all live holders: ``winner`` is None when the
    claimant takes the asset (superseding ``superseded``), else the holder that
    keeps it, with ``verdict`` REFUSED or SUPERSEDED for the claimant."""

    verdict: Verdict
    winner: ClaimKey | None = None
    superseded: tuple[str, ...] = ()


def resolve_claim(claimant: ClaimKey, holders: list[ClaimKey]) -> ClaimDecision:
    """The claimant against every live holder: it loses to the strongest one
    that beats it, else it supersedes them all. One already superseded loses
    to the dispatch that superseded it (``winner`` None: the caller knows it)."""
    if claimant.superseded:
        return ClaimDecision(Verdict.SUPERSEDED)
    beaten_by = [h for h in holders if decide_claim(h, claimant) is not Verdict.TAKES]
    if beaten_by:
        winner = max(beaten_by, key=lambda h: h.rank)
        return ClaimDecision(decide_claim(winner, claimant), winner)
    return ClaimDecision(Verdict.TAKES, superseded=tuple(h.dispatch_id for h in holders))
