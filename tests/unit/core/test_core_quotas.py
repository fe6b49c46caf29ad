"""Quotas: token buckets refill at their rate and say how long to wait; per
tenant overrides; limits that are off; refusals counted and named; the
settings that configure them are checked at start-up."""

from __future__ import annotations

import pytest

from gridpilot.core.quotas import Limit, QuotaLimits, Quotas
from gridpilot.ops.settings import Settings, load_settings


class FakeClock:
    def __init__(self) -> None:
        self.now = 1000.0

    def __call__(self) -> float:
        return self.now


def test_a_bucket_allows_its_burst_then_its_rate_and_says_how_long_to_wait() -> None:
    clock = FakeClock()
    q = Quotas(QuotaLimits(api_requests_per_s=10), clock=clock)
    # a burst of 2 s worth: 20 requests, then the 21st waits 0.1 s
    assert all(q.rate(Limit.API_REQUESTS_PER_S, "t", "tok") == 0 for _ in range(20))
    assert q.rate(Limit.API_REQUESTS_PER_S, "t", "tok") == pytest.approx(0.1)
    assert q.rate(Limit.API_REQUESTS_PER_S, "t", "other-token") == 0  # its own bucket
    clock.now += 0.1
    assert q.rate(Limit.API_REQUESTS_PER_S, "t", "tok") == 0
    clock.now += 60  # refills up to the burst only
    assert sum(q.rate(Limit.API_REQUESTS_PER_S, "t", "tok") == 0 for _ in range(30)) == 20


def test_per_minute_limits_and_oversized_takes() -> None:
    clock = FakeClock()
    q = Quotas(QuotaLimits(dispatch_submits_per_min=2, telemetry_samples_per_s=10), clock=clock)
    assert q.rate(Limit.DISPATCH_SUBMITS_PER_MIN, "t", "t") == 0
    assert q.rate(Limit.DISPATCH_SUBMITS_PER_MIN, "t", "t") == 0
    assert q.rate(Limit.DISPATCH_SUBMITS_PER_MIN, "t", "t") == pytest.approx(30.0)
    # a telemetry batch larger than the bucket (100) passes on a full bucket,
    # and its debt is paid before the next one
    assert q.rate(Limit.TELEMETRY_SAMPLES_PER_S, "t", "gw", 150) == 0
    assert q.rate(Limit.TELEMETRY_SAMPLES_PER_S, "t", "gw", 10) == pytest.approx(6.0)


def test_tenants_have_their_own_limits_and_zero_is_off() -> None:
    clock = FakeClock()
    q = Quotas(
        QuotaLimits(dispatch_submits_per_min=1),
        {"acme": QuotaLimits().replace({"dispatch_submits_per_min": 0, "max_assets": 2})},
        clock=clock,
    )
    assert all(q.rate(Limit.DISPATCH_SUBMITS_PER_MIN, "acme", "acme") == 0 for _ in range(100))
    assert q.rate(Limit.DISPATCH_SUBMITS_PER_MIN, "default", "default") == 0
    assert q.rate(Limit.DISPATCH_SUBMITS_PER_MIN, "default", "default") > 0
    assert q.check_count(Limit.MAX_ASSETS, "acme", 2) is None
    over = q.check_count(Limit.MAX_ASSETS, "acme", 3)
    assert over is not None and over.limit is Limit.MAX_ASSETS
    assert over.message == "quota max_assets (2) exceeded for tenant acme: this would make 3"
    refused = q.refuse(Limit.DISPATCH_SUBMITS_PER_MIN, "default", "tenant default", 42.0)
    assert refused.retry_after_s == 42.0
    assert "quota dispatch_submits_per_min (1/min) exceeded for tenant default" in refused.message
    assert q.refused == {("max_assets", "acme"): 1, ("dispatch_submits_per_min", "default"): 1}


def test_unknown_or_negative_tenant_quotas_are_refused_at_start(
    capsys: pytest.CaptureFixture[str],
) -> None:
    ok = Settings(  # type: ignore[call-arg]
        _env_file=None, tenant_quotas={"acme": {"max_assets": 5}}, quota_max_assets=7
    )
    default, per_tenant = ok.quota_limits
    assert default.max_assets == 7 and per_tenant["acme"].max_assets == 5
    assert per_tenant["acme"].api_requests_per_s == default.api_requests_per_s
    for bad, said in (
        ({"acme": {"max_asets": 5}}, "unknown quota 'max_asets'"),
        ({"acme": {"max_assets": -1}}, "quota 'max_assets' must be a finite number >= 0"),
    ):
        with pytest.raises(SystemExit):
            load_settings(_env_file=None, tenant_quotas=bad)
        err = capsys.readouterr().err
        assert "GRIDPILOT_TENANT_QUOTAS" in err and "tenant 'acme'" in err and said in err
