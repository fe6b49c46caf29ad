"""Group points into as few reads as the device allows.

Points of one unit id and table are sorted by address and merged into one
request while the request stays within ``max_count`` registers and the gap
between them is at most ``max_gap`` (0: only contiguous or overlapping
points). Many devices refuse a read that touches an unmapped register, so the
default reads contiguous runs only.
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass

from ...config import ModbusPoint

MAX_REGISTERS = 125  # per FC3/FC4 request (Modbus spec)
MAX_BITS = 2000  # per FC1/FC2 request


@dataclass(frozen=True, slots=True)
class Block:
    unit_id: int
    table: str
    start: int
    count: int
    points: tuple[ModbusPoint, ...]

    def words(self, values: list[int] | list[bool], point: ModbusPoint) -> list[int] | list[bool]:
        """The part of this block's response that holds ``point``."""
        at = point.address - self.start
        return values[at : at + point.registers]


def plan_reads(
    points: Iterable[ModbusPoint], *, unit_id: int, max_count: int = MAX_REGISTERS, max_gap: int = 0
) -> list[Block]:
    groups: dict[tuple[int, str], list[ModbusPoint]] = {}
    for p in points:
        if p.readable:
            key = (p.unit_id if p.unit_id is not None else unit_id, p.table)
            groups.setdefault(key, []).append(p)
    blocks: list[Block] = []
    for (unit, table), members in sorted(groups.items()):
        limit = MAX_BITS if table in ("coil", "discrete_input") else max_count
        members.sort(key=lambda p: (p.address, p.registers))
        start, end = members[0].address, members[0].address + members[0].registers
        current: list[ModbusPoint] = []
        for p in members:
            p_end = p.address + p.registers
            fits = p.address <= end + max_gap and max(end, p_end) - start <= limit
            if current and not fits:
                blocks.append(Block(unit, table, start, end - start, tuple(current)))
                start, end, current = p.address, p_end, []
            current.append(p)
            end = max(end, p_end)
        blocks.append(Block(unit, table, start, end - start, tuple(current)))
    return blocks
