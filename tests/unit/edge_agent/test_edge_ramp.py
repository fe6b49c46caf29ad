"""ramp_kw_per_s: the controller walks the device to the setpoint in steps."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

import pytest
from test_edge_control import ASSET, FakeDevice, until

from gridpilot.edge_agent.clock import SystemClock
from gridpilot.edge_agent.control.acks import Ack, AckHistory, AckRecorder, AckState
from gridpilot.edge_agent.control.commands import SetpointCommand
from gridpilot.edge_agent.control.controller import AssetController, ramp_step
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
    controller = AssetController(
        ASSET,
        ManagedDevice("bess", device, timeout_s=1),
        clock=SystemClock(),
        acks=AckRecorder(AckHistory(), acks.append, SystemClock()),
        ramp_step_s=0.05,
    )
    controller.start()
    await until(lambda: device.writes == [0.0])  # the default, at start
    now = datetime.now(UTC)
    await controller.submit(
        SetpointCommand("d1", "bess", 40.0, now, now + timedelta(seconds=30), ramp_kw_per_s=200)
    )
    await until(lambda: device.writes[-1:] == [40.0])
    # 200 kW/s in 50 ms steps: 10 kW a step, from the default 0.
    assert device.writes == [0.0, 10.0, 20.0, 30.0, 40.0]
    applied = [a for a in acks if a.state is AckState.APPLIED]
    assert len(applied) == 1 and applied[0].applied_p_kw == 40.0
    assert "ramping from 10 kW" in applied[0].detail
    await controller.stop(2)
    assert device.writes[-1] == 0.0  # back to default on stop (a step, not a ramp)
