"""Modbus TCP: point maps (codec, read planner, supervised transport) and
SunSpec discovery on top of the same transport."""

from .adapter import ModbusAdapter

__all__ = ["ModbusAdapter"]
