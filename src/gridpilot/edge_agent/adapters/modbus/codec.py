"""Register words <-> numbers, in all four byte/word orders.

pymodbus's own converters know word order only, not byte swaps, so this is
done with :mod:`struct`. For a 32-bit value with bytes A (most significant)
to D: ``ABCD`` is big-endian (the Modbus default), ``CDAB`` swaps the words,
``BADC`` swaps the bytes in each word, ``DCBA`` is little-endian. Wider
values extend the same rule (64-bit ``CDAB`` reverses all four words).
"""

from __future__ import annotations

import math
import struct
from collections.abc import Sequence

FORMATS = {
    "int16": "h",
    "uint16": "H",
    "int32": "i",
    "uint32": "I",
    "int64": "q",
    "uint64": "Q",
    "float32": "f",
    "float64": "d",
}
ORDERS = ("ABCD", "BADC", "CDAB", "DCBA")


def width(dtype: str) -> int:
    """Registers a value of ``dtype`` takes."""
    return struct.calcsize(FORMATS[dtype]) // 2


def _reorder(data: bytes, order: str) -> bytes:
    """Wire bytes <-> big-endian bytes (each step is its own inverse)."""
    words = [data[i : i + 2] for i in range(0, len(data), 2)]
    if order in ("BADC", "DCBA"):
        words = [w[::-1] for w in words]
    if order in ("CDAB", "DCBA"):
        words.reverse()
    return b"".join(words)


def decode(registers: Sequence[int], dtype: str, order: str = "ABCD") -> int | float:
    """The value held in ``registers`` (exactly :func:`width` of them)."""
    if len(registers) != width(dtype):
        raise ValueError(f"{dtype} needs {width(dtype)} registers, got {len(registers)}")
    wire = b"".join(int(r).to_bytes(2, "big") for r in registers)
    value: int | float = struct.unpack(">" + FORMATS[dtype], _reorder(wire, order))[0]
    return value


def encode(value: float, dtype: str, order: str = "ABCD") -> list[int]:
    """The registers that hold ``value``; integers are rounded. Raises
    ValueError when the value does not fit the type."""
    fmt = FORMATS[dtype]
    if not math.isfinite(value):
        raise ValueError(f"{value} is not a number a register can hold")
    number: int | float = float(value) if dtype.startswith("float") else round(value)
    try:
        data = struct.pack(">" + fmt, number)
    except (struct.error, OverflowError):
        raise ValueError(f"{value:g} does not fit in {dtype}") from None
    if dtype == "float32" and math.isinf(struct.unpack(">f", data)[0]):
        raise ValueError(f"{value:g} does not fit in float32")
    wire = _reorder(data, order)
    return [int.from_bytes(wire[i : i + 2], "big") for i in range(0, len(wire), 2)]
