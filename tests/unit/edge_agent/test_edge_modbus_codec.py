"""Register codec (all types, all four byte/word orders) and read planning."""

from __future__ import annotations

import math

import pytest
from hypothesis import given
from hypothesis import strategies as st

from gridpilot.edge_agent.adapters.modbus.codec import FORMATS, ORDERS, decode, encode, width
from gridpilot.edge_agent.adapters.modbus.plan import plan_reads
from gridpilot.edge_agent.config import ModbusPoint

# 0x11223344 as the four orders put it on the wire
WIRE_32 = {
    "ABCD": [0x1122, 0x3344],
    "CDAB": [0x3344, 0x1122],
    "BADC": [0x2211, 0x4433],
    "DCBA": [0x4433, 0x2211],
}


@pytest.mark.parametrize("order", ORDERS)
def test_uint32_wire_layout_of_each_order(order: str) -> None:
    assert encode(0x11223344, "uint32", order) == WIRE_32[order]
    assert decode(WIRE_32[order], "uint32", order) == 0x11223344


def test_float32_and_64_bit_orders_match_the_reference_layouts() -> None:
    assert encode(3.5, "float32", "ABCD") == [0x4060, 0x0000]
    assert encode(3.5, "float32", "CDAB") == [0x0000, 0x4060]
    assert encode(0x0102030405060708, "uint64", "CDAB") == [0x0708, 0x0506, 0x0304, 0x0102]
    assert encode(0x0102030405060708, "uint64", "DCBA") == [0x0807, 0x0605, 0x0403, 0x0201]
    assert encode(0x0102, "uint16", "BADC") == [0x0201]
    assert encode(0x0102, "uint16", "CDAB") == [0x0102]


_RANGES = {
    "int16": st.integers(-(2**15), 2**15 - 1),
    "uint16": st.integers(0, 2**16 - 1),
    "int32": st.integers(-(2**31), 2**31 - 1),
    "uint32": st.integers(0, 2**32 - 1),
    "int64": st.integers(-(2**63), 2**63 - 1),
    "uint64": st.integers(0, 2**64 - 1),
    "float32": st.floats(width=32, allow_nan=False, allow_infinity=False),
    "float64": st.floats(allow_nan=False, allow_infinity=False),
}


@given(data=st.data(), dtype=st.sampled_from(sorted(FORMATS)), order=st.sampled_from(ORDERS))
def test_every_type_round_trips_in_every_order(data: st.DataObject, dtype: str, order: str) -> None:
    value = data.draw(_RANGES[dtype])
    words = encode(value, dtype, order)
    assert len(words) == width(dtype) and all(0 <= w <= 0xFFFF for w in words)
    assert decode(words, dtype, order) == value


def test_values_that_do_not_fit_are_refused() -> None:
    for value, dtype in [(70000, "uint16"), (-1, "uint32"), (1e39, "float32"), (math.nan, "int16")]:
        with pytest.raises(ValueError):
            encode(value, dtype)
    with pytest.raises(ValueError, match="needs 2 registers"):
        decode([1], "int32")


def p(address: int, **kw: object) -> ModbusPoint:
    return ModbusPoint.model_validate(
        {"field": f"x_{address}_{kw.get('table', 'h')}", "address": address, **kw}
    )


def test_contiguous_points_are_grouped_within_the_request_limit() -> None:
    points = [p(a, type="uint32") for a in range(0, 300, 2)]  # 300 contiguous registers
    blocks = plan_reads(points, unit_id=1)
    assert [(b.start, b.count) for b in blocks] == [(0, 124), (124, 124), (248, 52)]
    assert sum(len(b.points) for b in blocks) == 150


def test_gaps_tables_and_unit_ids_split_requests() -> None:
    points = [
        p(0),
        p(1),
        p(5),  # a gap of 3 registers
        p(0, table="input"),
        p(0, table="coil"),
        p(1, table="coil"),
        p(0, unit_id=2),
        p(50, mode="w", field="setpoint_kw"),  # write-only: never read
    ]
    blocks = plan_reads(points, unit_id=1)
    layout = [(b.unit_id, b.table, b.start, b.count) for b in blocks]
    assert layout == [
        (1, "coil", 0, 2),
        (1, "holding", 0, 2),
        (1, "holding", 5, 1),
        (1, "input", 0, 1),
        (2, "holding", 0, 1),
    ]
    merged = plan_reads(points, unit_id=1, max_gap=3)
    assert [(b.table, b.start, b.count) for b in merged if b.unit_id == 1][1] == ("holding", 0, 6)
