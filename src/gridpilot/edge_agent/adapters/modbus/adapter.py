"""A device described by a Modbus point map (YAML data, not code)."""

from __future__ import annotations

import random
from typing import Any

from gridpilot.core.telemetry import Sample
from gridpilot.core.telemetry_fields import Quality

from ...clock import Clock
from ...config import ModbusDevice, ModbusPoint
from ..base import DeviceReadOnly, DeviceWriteFailed
from ..common import make_sample, normalize, raw_for, tidy
from . import codec
from .plan import Block, plan_reads
from .transport import ModbusNoAnswer, ModbusRefused, ModbusTransport


class ModbusAdapter:
    def __init__(
        self,
        asset_id: str,
        cfg: ModbusDevice,
        *,
        clock: Clock,
        rng: random.Random | None = None,
    ) -> None:
        self.asset_id = asset_id
        self.cfg = cfg
        self._clock = clock
        self.transport = ModbusTransport(
            asset_id,
            cfg.host,
            cfg.port,
            timeout_s=cfg.timeout_s,
            recycle_after_timeouts=cfg.recycle_after_timeouts,
            backoff_max_s=cfg.reconnect_backoff_max_s,
            rng=rng,
        )
        self._blocks = plan_reads(
            cfg.points,
            unit_id=cfg.unit_id,
            max_count=cfg.max_registers_per_read,
            max_gap=cfg.max_gap_registers,
        )
        self._setpoint = next((p for p in cfg.points if p.writable), None)
        self._refused: set[int] = set()  # blocks the device refuses now (logged once)
        self._unanswered: set[int] = set()  # blocks the device does not answer now (logged once)

    # ------------------------------------------------------------ interface

    async def connect(self) -> None:
        await self.transport.connect()

    async def close(self) -> None:
        await self.transport.close()

    async def read(self) -> Sample:
        values: dict[str, Any] = {}
        quality: dict[str, Quality] = {}
        await self.read_points(values, quality)
        return make_sample(self.asset_id, self._clock.now(), values, quality)

    async def write(self, p_kw: float) -> float:
        if self._setpoint is None:
            raise DeviceReadOnly(f"{self.asset_id}: no point with field setpoint_kw and mode w/rw")
        return await self.write_point(self._setpoint, p_kw)

    # ------------------------------------------------------------ points

    async def read_points(self, values: dict[str, Any], quality: dict[str, Quality]) -> None:
        """Read every block; a block the device refuses or does not answer makes
        only its own points bad (telemetry-model.md, Quality). The device is
        unavailable only when the connection is lost or no block answers."""
        unanswered: list[str] = []
        for i, block in enumerate(self._blocks):
            try:
                words = await self.transport.read(
                    block.table, block.start, block.count, block.unit_id
                )
            except ModbusRefused as exc:  # the link is fine, this part of the map is not
                if i not in self._refused:
                    self._warn_block(block, "device refuses a register block", exc)
                    self._refused.add(i)
                self._mark_bad(block, values, quality)
                continue
            except ModbusNoAnswer as exc:  # the connection stands; this block is silent
                unanswered.append(str(exc))
                if len(unanswered) == len(self._blocks):
                    self.transport.link.lost(unanswered[0])
                    raise
                if i not in self._unanswered:
                    self._warn_block(block, "device does not answer a register block", exc)
                    self._unanswered.add(i)
                self._mark_bad(block, values, quality)
                continue
            self._refused.discard(i)
            self._unanswered.discard(i)
            for p in block.points:
                values[p.field], quality[p.field] = self.decode_point(p, block.words(words, p))

    def _warn_block(self, block: Block, event: str, exc: Exception) -> None:
        self.transport.link.warning(
            f"{event}; its points are bad (check the map)",
            error=str(exc),
            fields=",".join(p.field for p in block.points),
        )

    @staticmethod
    def _mark_bad(block: Block, values: dict[str, Any], quality: dict[str, Quality]) -> None:
        for p in block.points:
            quality[p.field] = Quality.BAD
            values[p.field] = None

    def decode_point(self, p: ModbusPoint, words: list[Any]) -> tuple[Any, Quality]:
        if p.is_bit:
            return bool(words[0]), Quality.GOOD
        raw = codec.decode(words, p.dtype, p.byte_order or self.cfg.byte_order)
        if p.bit is not None:
            return bool((int(raw) >> p.bit) & 1), Quality.GOOD
        return normalize(p, raw)

    async def write_point(self, p: ModbusPoint, value: float) -> float:
        unit = p.unit_id if p.unit_id is not None else self.cfg.unit_id
        raw = raw_for(p, value)
        try:
            if p.is_bit:
                await self.transport.write_coil(p.address, raw != 0, unit)
                return 1.0 if raw != 0 else 0.0
            order = p.byte_order or self.cfg.byte_order
            try:
                words = codec.encode(raw, p.dtype, order)
            except ValueError as exc:
                raise DeviceWriteFailed(f"{value:g} kW cannot be written: {exc}") from None
            await self.transport.write_registers(
                p.address, words, unit, multiple=self.cfg.write_multiple
            )
            held = codec.decode(words, p.dtype, order) * p.scale + p.offset
            if p.mode == "rw":
                back = await self.transport.read(p.table, p.address, p.registers, unit)
                if back != words:
                    raise DeviceWriteFailed(f"wrote {words} to {p.address} but it reads {back}")
        except ModbusRefused as exc:
            raise DeviceWriteFailed(str(exc)) from None
        return tidy(held)
