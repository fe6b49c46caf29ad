"""Point maps: how one device value becomes one normalized telemetry field.

A point reads a raw value (a register, a node, a JSON member) and stores
``raw * scale + offset`` under ``field`` (a name of docs/telemetry-model.md,
or ``x_<anything>`` for a vendor value kept in ``details``). A negative
``scale`` flips a device's sign into ours. ``enum`` maps raw integers to
text (for ``state``, ``session_state``). The one writable field in v1 is
``setpoint_kw``: the agent writes dispatches there (``(p_kw - offset) /
scale``), and with ``mode: rw`` it also reads it back as telemetry.
"""

from __future__ import annotations

from pathlib import Path
from typing import Annotated, Literal

from pydantic import AfterValidator, Field, ValidationInfo, model_validator

from .base import FiniteFloat, Loc, Strict, rule_error

WRITABLE_FIELDS = ("setpoint_kw",)

FieldName = Annotated[
    str,
    Field(
        pattern=r"^[a-z][a-z0-9_]{0,63}$",
        description="normalized field (docs/telemetry-model.md) or x_<vendor name>",
    ),
]
Mode = Literal["r", "w", "rw"]
ByteOrder = Literal["ABCD", "BADC", "CDAB", "DCBA"]
ModbusType = Literal[
    "int16", "uint16", "int32", "uint32", "int64", "uint64", "float32", "float64", "bool"
]


def _existing_file(value: Path, info: ValidationInfo) -> Path:
    base = (info.context or {}).get("base_dir")
    path = value if value.is_absolute() or base is None else Path(base) / value
    if not path.is_file():
        raise ValueError(f"file not found: {path}")
    return path


ExistingFile = Annotated[
    Path,
    AfterValidator(_existing_file),
    Field(description="a file; a relative path is taken from the config file's folder"),
]


class PointBase(Strict):
    field: FieldName
    mode: Mode = Field("r", description="r: read; w: written with dispatches; rw: both")
    scale: FiniteFloat = Field(1.0, description="normalized = raw * scale + offset")
    offset: FiniteFloat = 0.0
    enum: dict[int, str] | None = Field(
        None, description="raw integer -> text (e.g. for state); unknown values pass as numbers"
    )

    @model_validator(mode="after")
    def _point_rules(self) -> PointBase:
        problems: list[tuple[Loc, str]] = []
        if self.scale == 0:
            problems.append((("scale",), "must not be 0"))
        if self.mode != "r" and self.field not in WRITABLE_FIELDS:
            problems.append(
                (("mode",), f"only {', '.join(WRITABLE_FIELDS)} can be written; use mode: r")
            )
        if problems:
            raise rule_error(problems)
        return self

    @property
    def readable(self) -> bool:
        return self.mode in ("r", "rw")

    @property
    def writable(self) -> bool:
        return self.mode in ("w", "rw")


def point_list_problems(points: list[PointBase]) -> list[tuple[Loc, str]]:
    """Each field read by one point only; at most one writable point."""
    problems: list[tuple[Loc, str]] = []
    read: dict[str, int] = {}
    writer: int | None = None
    for i, p in enumerate(points):
        if p.readable:
            if p.field in read:
                msg = f"{p.field!r} is already read by points[{read[p.field]}]"
                problems.append((("points", i, "field"), msg))
            read.setdefault(p.field, i)
        if p.writable:
            if writer is not None:
                problems.append((("points", i, "mode"), f"points[{writer}] is already written"))
            writer = i if writer is None else writer
    return problems


class ModbusPoint(PointBase):
    """A register (or a bit of one), a coil or a discrete input."""

    address: Annotated[int, Field(ge=0, le=65535, description="0-based protocol address")]
    table: Literal["holding", "input", "coil", "discrete_input"] = Field(
        "holding",
        description="holding: FC3 read, FC6/FC16 write; input: FC4; coil: FC1 read, FC5 write; "
        "discrete_input: FC2",
    )
    type: ModbusType | None = Field(
        None, description="default: bool for coils and discrete inputs, else uint16"
    )
    byte_order: ByteOrder | None = Field(
        None,
        description="ABCD big-endian; CDAB word-swapped; BADC byte-swapped; DCBA little-endian "
        "(default: the device's)",
    )
    bit: Annotated[int, Field(ge=0, le=15)] | None = Field(
        None, description="read one bit (0 = least significant) of a 16-bit register as a bool"
    )
    unit_id: Annotated[int, Field(ge=0, le=255)] | None = Field(
        None, description="overrides the device's unit id"
    )

    @model_validator(mode="after")
    def _modbus_rules(self) -> ModbusPoint:
        problems: list[tuple[Loc, str]] = []
        bit_table = self.table in ("coil", "discrete_input")
        if bit_table and self.dtype != "bool":
            problems.append((("type",), f"a {self.table} is a bool"))
        if not bit_table and self.dtype == "bool":
            problems.append((("type",), "a register is a number; use bit: N for one of its bits"))
        if self.bit is not None and (bit_table or self.dtype not in ("int16", "uint16")):
            problems.append((("bit",), "only for int16/uint16 registers"))
        if self.writable and self.table not in ("holding", "coil"):
            problems.append((("table",), "only holding registers and coils can be written"))
        if self.writable and self.bit is not None:
            problems.append((("bit",), "a single bit cannot be written"))
        if self.address + self.registers - 1 > 65535:
            problems.append((("address",), "the value runs past register 65535"))
        if problems:
            raise rule_error(problems)
        return self

    @property
    def is_bit(self) -> bool:
        return self.table in ("coil", "discrete_input")

    @property
    def dtype(self) -> str:
        if self.type is not None:
            return self.type
        return "bool" if self.is_bit else "uint16"

    @property
    def registers(self) -> int:
        """How many 16-bit registers (or bits) the value spans."""
        if self.is_bit:
            return 1
        return {"int32": 2, "uint32": 2, "float32": 2, "int64": 4, "uint64": 4, "float64": 4}.get(
            self.dtype, 1
        )


class OpcUaPoint(PointBase):
    node: str = Field(
        min_length=3,
        description="NodeId; prefer 'nsu=<namespace URI>;s=<id>' (resolved after every connect) "
        "over 'ns=<index>;…'",
    )
    deadband: Annotated[float, Field(ge=0, allow_inf_nan=False)] | None = Field(
        None, description="absolute deadband in the node's raw units (subscribe mode)"
    )


class MqttPoint(PointBase):
    topic: str = Field(min_length=1, max_length=1024, pattern=r"^[^#+]+$")
    path: str | None = Field(
        None,
        pattern=r"^[^.]+(\.[^.]+)*$",
        description="dotted path into a JSON payload (a.b.0.c); none: the payload is the value",
    )
