"""The delay before the headend signals a waiting agent ack again."""

from __future__ import annotations

import random

from gridpilot.ingest.acks import RETRY_MAX_S, retry_delay


def test_the_delay_doubles_from_half_a_second_up_to_the_cap() -> None:
    rng = random.Random(7)
    assert all(0.5 <= retry_delay(1, RETRY_MAX_S, rng) <= 1.0 for _ in range(100))
    assert all(0.5 <= retry_delay(3, RETRY_MAX_S, rng) <= 4.0 for _ in range(100))
    assert max(retry_delay(8, RETRY_MAX_S, rng) for _ in range(200)) > 9


def test_a_long_outage_keeps_the_delay_at_its_cap_instead_of_overflowing() -> None:
    # One failure per ~5 s: attempt 2000 is under three hours of Temporal outage.
    # Uncapped, 0.5 * 2**2000 raises OverflowError and ends the ack task.
    rng = random.Random(7)
    for attempt in (1024, 2000, 10**6):
        assert 0.5 <= retry_delay(attempt, RETRY_MAX_S, rng) <= RETRY_MAX_S
