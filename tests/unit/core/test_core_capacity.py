"""check_capacity: a site target beyond the site's capacity is refused naming it."""

from __future__ import annotations

import pytest

from gridpilot.core.assets import Asset, AssetType, PowerLimits
from gridpilot.core.errors import OutOfLimits
from gridpilot.core.split import Available, check_capacity, split

ASSETS = [
    Asset("bess-1", "s", AssetType.BESS, PowerLimits(-100, 100)),
    Asset("pv-1", "s", AssetType.PV, PowerLimits(0, 50)),
    Asset("ev-1", "s", AssetType.EV_CHARGER, PowerLimits(-22, 0)),
]


def test_target_within_capacity_passes_without_warning() -> None:
    assert check_capacity(split(150, ASSETS), "s") is None
    assert check_capacity(split(-122, ASSETS), "s") is None


def test_target_beyond_capacity_is_refused_naming_capacity_and_field() -> None:
    with pytest.raises(OutOfLimits) as err:
        check_capacity(split(5000, ASSETS), "s")
    assert err.value.field == "p_kw"
    assert "site s can export at most 150 kW" in err.value.message
    with pytest.raises(OutOfLimits, match="import at most 122 kW"):
        check_capacity(split(-500, ASSETS), "s")


def test_available_power_counts_towards_capacity() -> None:
    low_soc = {"bess-1": Available(charge_kw=100, discharge_kw=10)}
    with pytest.raises(OutOfLimits, match="at most 60 kW"):
        check_capacity(split(100, ASSETS, low_soc), "s")


def test_accept_partial_turns_the_refusal_into_a_warning() -> None:
    warning = check_capacity(split(5000, ASSETS), "s", accept_partial=True)
    assert warning is not None
    assert "at most 150 kW" in warning and "4850 kW" in warning
