"""Simulated device physics, driven by a manual clock."""

from __future__ import annotations

from datetime import UTC, datetime

import pytest

from gridpilot.edge_agent.adapters import DeviceUnavailable, DeviceWriteFailed
from gridpilot.edge_agent.adapters.simulated import (
    SimulatedBattery,
    SimulatedEvCharger,
    SimulatedPv,
    SimulatedWind,
    daylight_fraction,
)
from gridpilot.edge_agent.clock import ManualClock

NOON = datetime(2026, 6, 21, 12, 0, tzinfo=UTC)
MIDNIGHT = datetime(2026, 6, 21, 0, 0, tzinfo=UTC)


def battery(clock: ManualClock, soc: float = 50.0, efficiency: float = 1.0) -> SimulatedBattery:
    return SimulatedBattery(
        "bess",
        clock,
        capacity_kwh=500,
        charge_kw_max=250,
        discharge_kw_max=250,
        initial_soc_pct=soc,
        round_trip_efficiency=efficiency,
    )


async def test_battery_soc_integrates_power_over_elapsed_time() -> None:
    clock = ManualClock(NOON)
    bess = battery(clock)
    await bess.connect()
    assert await bess.write(100) == 100  # discharge 100 kW
    clock.advance(3600)
    sample = await bess.read()
    assert sample.soc_pct == pytest.approx(30.0)  # 100 kWh of 500 kWh
    assert sample.p_kw == 100 and sample.state == "discharging"
    assert sample.details["energy_discharged_kwh"] == pytest.approx(100)
    await bess.write(-50)  # charge 50 kW
    clock.advance(1800)
    sample = await bess.read()
    assert sample.soc_pct == pytest.approx(35.0)
    assert sample.p_kw == -50 and sample.state == "charging"


async def test_battery_losses_make_a_round_trip_cost_energy() -> None:
    clock = ManualClock(NOON)
    bess = battery(clock, efficiency=0.81)  # 0.9 each way
    await bess.connect()
    await bess.write(-90)
    clock.advance(3600)
    assert (await bess.read()).soc_pct == pytest.approx(50 + 81 / 5)  # 90 kWh in, 81 stored


async def test_battery_stops_discharging_at_empty_and_charging_at_full() -> None:
    clock = ManualClock(NOON)
    bess = battery(clock, soc=10.0)
    await bess.connect()
    await bess.write(250)
    clock.advance(3600)  # would need 250 kWh, only 50 are left
    sample = await bess.read()
    assert sample.soc_pct == 0.0
    assert sample.p_kw == 0.0 and sample.state == "idle"
    assert sample.available_discharge_kw == 0.0 and sample.available_charge_kw == 250
    assert sample.details["energy_discharged_kwh"] == pytest.approx(50)
    assert await bess.write(100) == 0.0  # still empty: nothing to give
    assert await bess.write(-250) == -250  # charging works
    clock.advance(3 * 3600)
    sample = await bess.read()
    assert sample.soc_pct == 100.0 and sample.p_kw == 0.0
    assert sample.available_charge_kw == 0.0 and sample.available_discharge_kw == 250


async def test_battery_reports_grid_and_cell_details() -> None:
    clock = ManualClock(NOON)
    bess = battery(clock)
    await bess.connect()
    sample = await bess.read()
    assert sample.voltage_v == pytest.approx(400, rel=0.01)
    assert sample.frequency_hz == pytest.approx(50, abs=0.05)
    assert sample.details["soh_pct"] == 98.0
    idle_temp = sample.details["cell_temp_max_c"]
    await bess.write(250)
    clock.advance(1200)
    assert (await bess.read()).details["cell_temp_max_c"] > idle_temp  # warms under load


async def test_a_device_must_be_connected_and_refuses_nan() -> None:
    bess = battery(ManualClock(NOON))
    with pytest.raises(DeviceUnavailable):
        await bess.read()
    await bess.connect()
    with pytest.raises(DeviceWriteFailed):
        await bess.write(float("nan"))
    await bess.close()
    with pytest.raises(DeviceUnavailable):
        await bess.write(0)


def test_daylight_curve_is_zero_at_night_and_peaks_mid_day() -> None:
    assert daylight_fraction(3.0, 6.0, 18.0) == 0.0
    assert daylight_fraction(6.0, 6.0, 18.0) == 0.0
    assert daylight_fraction(12.0, 6.0, 18.0) == pytest.approx(1.0)
    assert daylight_fraction(9.0, 6.0, 18.0) == pytest.approx(0.7071, abs=1e-4)
    assert daylight_fraction(20.0, 6.0, 18.0) == 0.0


async def test_pv_follows_the_sun_and_a_setpoint_curtails_it() -> None:
    clock = ManualClock(NOON)
    pv = SimulatedPv("pv", clock, peak_kw=300, sunrise_h=6, sunset_h=18, tz=UTC)
    await pv.connect()
    sample = await pv.read()
    assert sample.p_kw == pytest.approx(300) and sample.state == "producing"
    assert sample.details["irradiance_w_m2"] == pytest.approx(1000)
    assert await pv.write(120) == 120
    sample = await pv.read()
    assert sample.p_kw == 120 and sample.state == "curtailed"
    assert sample.available_discharge_kw == pytest.approx(300)
    assert sample.details["curtailed_kw"] == pytest.approx(180)
    assert sample.details["dc_power_kw"] == pytest.approx(120 / 0.97, abs=1e-3)
    clock.set(MIDNIGHT)
    sample = await pv.read()
    assert sample.p_kw == 0.0 and sample.state == "night"


async def test_pv_min_fraction_keeps_some_power_at_night() -> None:
    clock = ManualClock(MIDNIGHT)
    pv = SimulatedPv("pv", clock, peak_kw=300, min_fraction=0.1, tz=UTC)
    await pv.connect()
    assert (await pv.read()).p_kw == pytest.approx(30)


async def test_pv_cannot_import_whatever_the_setpoint() -> None:
    pv = SimulatedPv("pv", ManualClock(NOON), peak_kw=300, tz=UTC)
    await pv.connect()
    assert await pv.write(-50) == 0.0


async def test_wind_produces_on_its_power_curve_and_curtails() -> None:
    clock = ManualClock(NOON)
    calm = SimulatedWind("w", clock, rated_kw=2000, mean_wind_m_s=1.0)
    windy = SimulatedWind("w", clock, rated_kw=2000, mean_wind_m_s=18.0)
    for turbine in (calm, windy):
        await turbine.connect()
    assert (await calm.read()).p_kw == 0.0
    assert (await windy.read()).p_kw == pytest.approx(2000)
    assert await windy.write(500) == 500


async def test_ev_charger_draws_up_to_its_limit_while_a_car_is_plugged_in() -> None:
    clock = ManualClock(NOON)
    ev = SimulatedEvCharger("ev", clock, max_charge_kw=22)
    await ev.connect()
    assert await ev.write(-11) == -11
    assert await ev.write(-40) == -22  # p = max(setpoint, -22)
    clock.advance(1800)
    sample = await ev.read()
    assert sample.p_kw == -22 and sample.state == "charging"
    assert sample.details["session_energy_kwh"] == pytest.approx(11)
    assert sample.details["vehicle_connected"] is True
    assert await ev.write(5) == 0.0  # no V2G rating: cannot export
    assert (await ev.read()).details["session_state"] == "suspended_evse"


async def test_ev_charger_without_a_car_draws_nothing() -> None:
    clock = ManualClock(NOON)
    ev = SimulatedEvCharger("ev", clock, max_charge_kw=22, plugged_in=False)
    await ev.connect()
    assert await ev.write(-22) == 0.0
    sample = await ev.read()
    assert sample.details["session_state"] == "available"
    assert sample.details["vehicle_connected"] is False
    ev.plug_in()
    assert (await ev.read()).p_kw == -22


async def test_ev_car_limit_and_full_battery_stop_the_draw() -> None:
    clock = ManualClock(NOON)
    ev = SimulatedEvCharger(
        "ev",
        clock,
        max_charge_kw=22,
        vehicle_max_kw=11,
        vehicle_capacity_kwh=50,
        initial_vehicle_soc_pct=90,
    )
    await ev.connect()
    assert await ev.write(-22) == -11  # the car takes 11 kW at most
    clock.advance(3600)  # 11 kWh offered, 5 kWh fit
    sample = await ev.read()
    assert sample.details["vehicle_soc_pct"] == 100.0
    assert sample.details["session_energy_kwh"] == pytest.approx(5)
    assert sample.p_kw == 0.0 and sample.details["session_state"] == "suspended_ev"
