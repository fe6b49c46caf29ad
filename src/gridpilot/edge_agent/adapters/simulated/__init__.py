"""Simulated devices with plausible physics, advanced by elapsed clock time.

Each simulator integrates its state over the time since it was last touched
(read or write), so a unit test drives it with a
:class:`~gridpilot.edge_agent.clock.ManualClock` and a running agent with the
system clock. They model physics only (a full battery takes no charge, PV
cannot give more than the sun provides); they do not enforce the asset's
configured limits, which is the rails' job.
"""

from .base import SimulatedDevice
from .battery import SimulatedBattery
from .ev import SimulatedEvCharger
from .generation import SimulatedPv, SimulatedWind, daylight_fraction

__all__ = [
    "SimulatedBattery",
    "SimulatedDevice",
    "SimulatedEvCharger",
    "SimulatedPv",
    "SimulatedWind",
    "daylight_fraction",
]
