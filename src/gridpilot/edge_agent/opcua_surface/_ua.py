"""asyncua's stubs want its own int/str/datetime subclasses; these say so once."""

from __future__ import annotations

from datetime import datetime
from typing import cast

from asyncua import ua


def std_node(identifier: int) -> ua.NodeId:
    """A node of the standard namespace (ns=0)."""
    return ua.NodeId(ua.Int32(identifier), ua.Int16(0))


def str_node(identifier: str, ns: int) -> ua.NodeId:
    return ua.NodeId(ua.String(identifier), ua.Int16(ns))


def status(code: int) -> ua.StatusCode:
    return ua.StatusCode(ua.UInt32(code))


def ua_time(value: datetime) -> ua.DateTime:
    return cast(ua.DateTime, value)
