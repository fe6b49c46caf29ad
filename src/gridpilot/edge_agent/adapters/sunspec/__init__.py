"""SunSpec over Modbus TCP: discovery (SunS marker, model chain), automatic
mapping to normalized fields, and setpoints through the control models."""

from .adapter import SunSpecAdapter

__all__ = ["SunSpecAdapter"]
