"""ramp_kw_per_s: the controller walks the device to the setpoint in steps."""

from __future__ import annotations

from datetime import timedelta

import pytest
from test_edge_control import ASSET, T0, FakeDevice, until

from gridpilot.edge_agent.clock import ManualClock
from gridpilot.edge_agent.control.acks import Ack, AckHistory, AckRecorder, AckState
from gridpilot.edge_agent.control.commands import SetpointCommand
from gridpilot.edge_agent.control.controller import AssetController
from gridpilot.edge_agent.control.output import ramp_step
from gridpilot.edge_agent.device import ManagedDevice


@pytest.mark.parametrize(
    ("current", "target", "ramp", "dt", "expected"),
    [
        (0, 100, 10, 1, 10),
        (0, -100, 10, 1, -10),
        (95, 100, 10, 1, 100),
        (100, 100, 10, 1, 100),
        (-50, 50, 25, 2, 0),
    ],
)
def test_ramp_step_moves_at_most_ramp_times_dt(
    current: float, target: float, ramp: float, dt: float, expected: float
) -> None:
    assert ramp_step(current, target, ramp, dt) == expected


async def test_setpoint_with_ramp_is_written_in_steps_until_the_target() -> None:
    device = FakeDevice()
    acks: list[Ack] = []
    clock = ManualClock(T0)
    controller = AssetController(
        ASSET,
        ManagedDevice("bess", device, timeout_s=1),
        clock=clock,
        acks=AckRecorder(AckHistory(), acks.append, clock),
        ramp_step_s=0.5,
    )
    controller.start()
    await until(lambda: device.writes == [0.0])  # the default, at start
    now = clock.now()
    await controller.submit(
        SetpointCommand("d1", "bess", 40.0, now, now + timedelta(seconds=30), ramp_kw_per_s=20)
    )
    await until(lambda: device.writes[-1:] == [10.0])  # the first step, at once

    def step() -> bool:  # virtual time: a ramp step's worth per check
        clock.advance(0.5)
        return True

    await until(lambda: step() and device.writes[-1:] == [40.0])
    # 20 kW/s in 0.5 s steps: 10 kW a step, from the default 0.
    assert device.writes == [0.0, 10.0, 20.0, 30.0, 40.0]
    applied = [a for a in acks if a.state is AckState.APPLIED]
    assert len(applied) == 1 and applied[0].applied_p_kw == 40.0
    assert "ramping from 10 kW" in applied[0].detail
    await controller.stop(2)
    assert device.writes[-1] == 0.0  # back to default on stop (a step, not a ramp)
