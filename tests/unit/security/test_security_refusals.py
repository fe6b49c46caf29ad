"""Refusals reach the audit log once per distinct cause and window, at most
``max_causes`` per window; the rest are counted and reported with the next one."""

from __future__ import annotations

from gridpilot.security.refusals import RefusalLimiter, credential_hint


class Clock:
    def __init__(self) -> None:
        self.now = 1000.0

    def __call__(self) -> float:
        return self.now


def test_each_distinct_cause_is_admitted_once_per_window() -> None:
    clock = Clock()
    lim = RefusalLimiter(window_s=60, max_causes=10, clock=clock)
    a = ("credential:gp_aaaaaa", "POST /api/v1/dispatches", 401)
    b = ("credential:gp_bbbbbb", "POST /api/v1/dispatches", 401)
    assert lim.admit(a) == 0
    assert [lim.admit(a) for _ in range(5)] == [None] * 5
    assert lim.admit(b) == 5  # the five repeats of a were not audited
    assert lim.admit((a[0], a[1], 403)) == 0  # another status is another cause
    clock.now += 60
    assert lim.admit(a) == 0
    assert lim.admit(a) is None


def test_a_flood_of_distinct_causes_is_capped_per_window() -> None:
    clock = Clock()
    lim = RefusalLimiter(window_s=60, max_causes=3, clock=clock)
    admitted = [lim.admit(("x", f"GET /r{i}", 403)) for i in range(1000)]
    assert admitted[:3] == [0, 0, 0]
    assert admitted[3:] == [None] * 997
    assert lim.unrecorded == 997
    clock.now += 61
    assert lim.admit(("y", "GET /r", 403)) == 997
    assert lim.unrecorded == 0


def test_only_token_shaped_credentials_get_a_hint_and_never_the_secret() -> None:
    token = "gp_" + "A1b2C3d4" * 5
    assert credential_hint(f"Bearer {token}") == "credential:gp_A1b2C3"
    jwt = "eyJhbGciOiJSUzI1NiJ9.eyJzdWIiOiJhbGljZSJ9.c2lnbmF0dXJl"
    hint = credential_hint(f"bearer {jwt}")
    assert hint is not None and hint.startswith("credential:jwt-sha256-") and jwt not in hint
    for header in (
        None,
        "",
        "Bearer",
        "Bearer x",
        "Basic dXNlcjpwYXNz",
        "Bearer gp_short",
        "Bearer a b",
    ):
        assert credential_hint(header) is None
