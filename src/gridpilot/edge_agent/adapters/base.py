"""The one narrow interface between the agent and a device.

A protocol adapter (simulated, Modbus/SunSpec, OPC UA, MQTT) only maps
device points to :class:`gridpilot.core.telemetry.Sample` fields and a power
setpoint to the device. It never clamps to the asset's limits (the rails in
:mod:`gridpilot.edge_agent.control.rails` decide what may be written) and raises only
:class:`DeviceError` subclasses for expected failures, mapping its own
transport errors in one place.

The agent serializes calls per device (one read or write at a time), so an
adapter needs no lock of its own for that.
"""

from __future__ import annotations

from typing import Protocol, runtime_checkable

from gridpilot.core.telemetry import Sample


class DeviceError(Exception):
    """An expected device failure (logged without a traceback)."""


class DeviceUnavailable(DeviceError):
    """The device cannot be reached or is not connected."""


class DeviceWriteFailed(DeviceError):
    """The device refused or did not confirm a setpoint."""


class DeviceReadOnly(DeviceWriteFailed):
    """The device config maps no point that takes a setpoint."""


class DeviceMisconfigured(DeviceError):
    """Retrying cannot help (wrong password, unknown node, no SunSpec map):
    the adapter stops trying until the agent restarts with a fixed config."""


@runtime_checkable
class DeviceAdapter(Protocol):
    async def connect(self) -> None:
        """Open the connection; raises :class:`DeviceUnavailable`."""
        ...

    async def read(self) -> Sample:
        """One fresh, normalized reading; raises :class:`DeviceError`."""
        ...

    async def write(self, p_kw: float) -> float:
        """Set active power (kW, sign convention of core); returns the power
        the device actually took. Raises :class:`DeviceError`."""
        ...

    async def close(self) -> None:
        """Release the connection; never raises."""
        ...
