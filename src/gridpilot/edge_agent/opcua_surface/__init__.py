"""The agent's OPC UA server surface for a local SCADA (docs/opcua-surface.md)."""

from .surface import ControlDesk, OpcuaSurface

__all__ = ["ControlDesk", "OpcuaSurface"]
