"""OPC UA client adapter (asyncua)."""

from .adapter import OpcUaAdapter

__all__ = ["OpcUaAdapter"]
