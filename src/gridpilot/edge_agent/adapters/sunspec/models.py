"""SunSpec model layouts from pysunspec2's bundled JSON definitions, and the
discovery of a device's model chain over our own (async) Modbus transport.

pysunspec2's own client is synchronous; only its model definitions and point
decoders are used here, so the agent's event loop never blocks.
"""

from __future__ import annotations

import functools
import math
from collections.abc import Awaitable, Callable, Sequence
from dataclasses import dataclass
from typing import Any

import sunspec2.device as sdevice
import sunspec2.mb as smb

MARKER = (0x5375, 0x6E53)  # "SunS"
END_ID = 0xFFFF
DEFAULT_BASES = (40000, 0, 50000)
MAX_MODELS = 200


@dataclass(frozen=True, slots=True)
class PointDef:
    name: str
    offset: int  # registers from the model's ID register
    size: int
    type: str
    sf: str | None
    units: str
    writable: bool
    symbols: tuple[tuple[int, str], ...]

    def symbol(self, value: int) -> str | None:
        return next((name for v, name in self.symbols if v == value), None)


@dataclass(frozen=True, slots=True)
class ModelDef:
    id: int
    name: str
    points: dict[str, PointDef]


@dataclass(frozen=True, slots=True)
class FoundModel:
    id: int
    address: int  # of its ID register
    length: int  # L: registers after the ID and L registers

    @property
    def end(self) -> int:
        return self.address + 2 + self.length


@functools.cache
def model_def(model_id: int) -> ModelDef | None:
    """The top-level points of a model (None: pysunspec2 has no definition)."""
    try:
        model = sdevice.Model(model_id=model_id)
    except Exception:  # pysunspec2 raises plain exceptions for unknown ids
        return None
    if model.model_def is None or not model.points:
        return None
    points = {
        name: PointDef(
            name=name,
            offset=p.offset,
            size=p.len,
            type=p.pdef["type"],
            sf=p.pdef.get("sf") if isinstance(p.pdef.get("sf"), str) else None,
            units=p.pdef.get("units", ""),
            writable=p.pdef.get("access") == "RW",
            symbols=tuple((s["value"], s["name"]) for s in p.pdef.get("symbols", ())),
        )
        for name, p in model.points.items()
    }
    return ModelDef(model_id, str(model.gname or model_id), points)


def raw_value(point: PointDef, regs: Sequence[int]) -> Any:
    """The point's raw value from a model's registers (from its ID register
    on), or None when the device marks it unimplemented."""
    words = regs[point.offset : point.offset + point.size]
    if len(words) < point.size:
        return None
    info = smb.point_type_info[point.type]
    value = info.data_to(b"".join(int(w).to_bytes(2, "big") for w in words))
    if value is None or not info.is_impl(value):
        return None
    if isinstance(value, float) and not math.isfinite(value):
        return None
    return value


def scaled_value(model: ModelDef, point: PointDef, regs: Sequence[int]) -> float | None:
    """``raw * 10**sf`` (None when the value or its scale factor is unimplemented)."""
    raw = raw_value(point, regs)
    if raw is None or not isinstance(raw, int | float):
        return None
    if point.sf is None:
        return float(raw)
    sf_point = model.points.get(point.sf)
    sf = raw_value(sf_point, regs) if sf_point is not None else None
    if sf is None or not -10 <= sf <= 10:
        return None
    return float(raw) * 10.0**sf


def scale_factor(model: ModelDef, point: PointDef, regs: Sequence[int]) -> int | None:
    if point.sf is None:
        return 0
    sf_point = model.points.get(point.sf)
    sf = raw_value(sf_point, regs) if sf_point is not None else None
    return int(sf) if sf is not None and -10 <= sf <= 10 else None


Read = Callable[[int, int], Awaitable[list[int]]]


class NoSunSpec(Exception):
    """No 'SunS' marker at any base address."""


async def discover(
    read: Read, bases: Sequence[int], *, on_refused: type[Exception]
) -> list[FoundModel]:
    """Find the marker, then walk the model chain: ``[ID, L]`` headers,
    ``ID == 0xFFFF`` ends it. A base the device refuses (``on_refused``) is
    skipped; transport errors propagate."""
    for base in bases:
        try:
            marker = await read(base, 2)
        except on_refused:
            continue
        if tuple(marker) != MARKER:
            continue
        found: list[FoundModel] = []
        address = base + 2
        while len(found) < MAX_MODELS and address + 2 <= 65536:
            try:
                model_id, length = await read(address, 2)
            except on_refused:  # some devices end the map without 0xFFFF
                break
            if model_id == END_ID or model_id == 0:
                break
            found.append(FoundModel(model_id, address, length))
            address += 2 + length
        return found
    raise NoSunSpec(f"no SunSpec marker 'SunS' at {', '.join(map(str, bases))}")
