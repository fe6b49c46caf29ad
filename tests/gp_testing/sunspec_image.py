"""SunSpec register images built from pysunspec2's model definitions."""

from __future__ import annotations

from typing import Any

import sunspec2.device as sdevice

MARKER = [0x5375, 0x6E53]


def model_registers(model_id: int, values: dict[str, Any]) -> list[int]:
    """One model (ID and L included) with raw point values; unset points are
    'unimplemented' as the spec says."""
    probe = sdevice.Model(model_id=model_id)
    length = len(probe.get_mb()) // 2 - 2
    model = sdevice.Model(model_id=model_id)
    model.set_dict({"ID": model_id, "L": length, **values}, computed=False)
    data = model.get_mb()
    return [int.from_bytes(data[i : i + 2], "big") for i in range(0, len(data), 2)]


def image(models: list[tuple[int, dict[str, Any]]]) -> list[int]:
    """'SunS', the models in order, the end marker."""
    regs = list(MARKER)
    for model_id, values in models:
        regs += model_registers(model_id, values)
    return regs + [0xFFFF, 0]


def offset_of(models: list[tuple[int, dict[str, Any]]], model_id: int, point: str) -> int:
    """Register offset of ``model_id.point`` from the image's start."""
    at = len(MARKER)
    for mid, values in models:
        if mid == model_id:
            return at + sdevice.Model(model_id=mid).points[point].offset
        at += len(model_registers(mid, values))
    raise KeyError(model_id)
