"""Refusal audits: once per distinct cause a window, never fewer."""

from __future__ import annotations

from gridpilot.ingest.refusals import Cause, RefusalLimiter


class Clock:
    def __init__(self) -> None:
        self.now = 1000.0

    def __call__(self) -> float:
        return self.now


def _cause(fingerprint: str = "aa", reason: str = "bad SAN") -> Cause:
    return Cause("gateway.identity_refused", "peer:ipv4:10.0.0.7", "", fingerprint, reason)


def test_a_retried_refusal_is_audited_once_a_window() -> None:
    clock = Clock()
    limiter = RefusalLimiter(window_s=60, clock=clock)
    assert limiter.admit(_cause())
    clock.now += 59
    assert not limiter.admit(_cause())
    clock.now += 1  # a window after the audited one
    assert limiter.admit(_cause())


def test_another_certificate_or_reason_from_the_same_host_is_audited_at_once() -> None:
    limiter = RefusalLimiter(window_s=60, clock=Clock())
    assert limiter.admit(_cause("aa", "bad SAN"))
    assert limiter.admit(_cause("bb", "bad SAN"))  # another certificate
    assert limiter.admit(_cause("aa", "revoked"))  # the same one, another reason
    assert limiter.admit(_cause("", "no client certificate"))
    assert not limiter.admit(_cause("bb", "bad SAN"))


def test_memory_is_bounded_and_forgetting_only_audits_again() -> None:
    clock = Clock()
    limiter = RefusalLimiter(window_s=60, max_causes=3, clock=clock)
    for fp in ("a", "b", "c", "d"):
        assert limiter.admit(_cause(fp))
    assert len(limiter) == 3
    assert limiter.admit(_cause("a"))  # the oldest was forgotten: audited again
    assert not limiter.admit(_cause("d"))
    clock.now += 60
    assert limiter.admit(_cause("d")) and len(limiter) == 1  # expired ones are dropped
