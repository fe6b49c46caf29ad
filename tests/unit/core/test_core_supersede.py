"""The supersede order (gridpilot.core.supersede): who keeps an asset, whoever claims first."""

from __future__ import annotations

import itertools

import pytest

from gridpilot.core.supersede import ClaimKey, Verdict, decide_claim, resolve_claim

V = Verdict


def key(seq: int, priority: int = 0, superseded: bool = False) -> ClaimKey:
    return ClaimKey(f"d{seq}-p{priority}", priority, seq, superseded)


@pytest.mark.parametrize(
    ("holder", "claimant", "verdict"),
    [
        # equal priority: the newer submission wins, whichever claims first
        (key(1), key(2), V.TAKES),
        (key(2), key(1), V.SUPERSEDED),
        # a newer, higher priority one takes it; an older, higher one refuses a newer, lower one
        (key(1, priority=0), key(2, priority=5), V.TAKES),
        (key(1, priority=5), key(2, priority=0), V.REFUSED),
        # an older, lower priority one that claims late loses to the newer, higher holder
        (key(2, priority=5), key(1, priority=0), V.SUPERSEDED),
        # a higher priority claimant takes it from a newer, lower holder
        (key(2, priority=0), key(1, priority=5), V.TAKES),
        # submitted before the order was recorded (0) is older than every numbered one
        (key(0), key(7), V.TAKES),
        (key(7), key(0), V.SUPERSEDED),
        # the same key (a site's re-spread child and the one it replaces): the claimant
        (key(3), key(3), V.TAKES),
    ],
)
def test_decide_claim(holder: ClaimKey, claimant: ClaimKey, verdict: Verdict) -> None:
    assert decide_claim(holder, claimant) is verdict


KEYS = [key(s, p) for s, p in [(1, 0), (2, 0), (3, 5), (4, 0), (5, 5), (6, 9)]]


@pytest.mark.parametrize(("a", "b"), list(itertools.permutations(KEYS, 2)))
def test_supersession_is_one_way_and_exactly_one_keeps_the_asset(a: ClaimKey, b: ClaimKey) -> None:
    # Whichever of the two claims first, the same one keeps the asset.
    a_first = decide_claim(holder=a, claimant=b) is V.TAKES
    b_first = decide_claim(holder=b, claimant=a) is not V.TAKES
    assert a_first == b_first
    winner = b if a_first else a
    assert winner.rank == max(a.rank, b.rank)


@pytest.mark.parametrize("order", list(itertools.permutations(range(5))))
def test_any_claim_order_leaves_the_strongest_one_holding(order: tuple[int, ...]) -> None:
    # Five dispatches of one asset claim in every order; a superseded one stays
    # live (a sent one runs until handed over), so later claims still see it.
    keys = [key(1, 0), key(2, 0), key(3, 5), key(4, 5), key(5, 0)]
    superseded_by: dict[str, str] = {}
    refused: set[str] = set()
    claimed: list[ClaimKey] = []
    for i in order:
        claimant = ClaimKey(
            keys[i].dispatch_id,
            keys[i].priority,
            keys[i].submit_seq,
            superseded=keys[i].dispatch_id in superseded_by,
        )
        decision = resolve_claim(claimant, claimed)
        if decision.verdict is V.TAKES:
            for other in decision.superseded:
                superseded_by[other] = claimant.dispatch_id
        elif decision.verdict is V.SUPERSEDED:
            if decision.winner is not None:
                superseded_by[claimant.dispatch_id] = decision.winner.dispatch_id
        else:
            refused.add(claimant.dispatch_id)  # failed: it ends at once
            continue
        claimed.append(keys[i])
    survivors = [k.dispatch_id for k in keys if k.dispatch_id not in set(superseded_by) | refused]
    assert survivors == ["d4-p5"]  # the newest of the highest priority
    by_id = {k.dispatch_id: k for k in keys}
    for loser, winner in superseded_by.items():
        assert by_id[winner].rank > by_id[loser].rank  # one-way: never to an older one
    # Only a newer, lower priority one is refused (by an older, higher priority one).
    assert refused <= {"d5-p0"}


def test_one_already_superseded_never_takes_the_asset_back() -> None:
    decision = resolve_claim(key(2, superseded=True), [key(1)])
    assert (decision.verdict, decision.winner, decision.superseded) == (V.SUPERSEDED, None, ())


def test_the_strongest_holder_that_beats_the_claimant_is_named() -> None:
    decision = resolve_claim(key(3), [key(1), key(4), key(5)])
    assert (decision.verdict, decision.winner) == (V.SUPERSEDED, key(5))
    refused = resolve_claim(key(3, priority=0), [key(2, priority=5), key(1, priority=9)])
    assert (refused.verdict, refused.winner) == (V.REFUSED, key(1, priority=9))


def test_a_claimant_that_wins_supersedes_every_live_holder() -> None:
    decision = resolve_claim(key(9), [key(1), key(3, superseded=True)])
    assert (decision.verdict, decision.superseded) == (V.TAKES, ("d1-p0", "d3-p0"))
