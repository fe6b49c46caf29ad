"""The agent's OPC UA server surface for a local SCADA (docs/opcua-surface.md)."""

from .surface import OpcuaSurface, SurfaceAgent

__all__ = ["OpcuaSurface", "SurfaceAgent"]
