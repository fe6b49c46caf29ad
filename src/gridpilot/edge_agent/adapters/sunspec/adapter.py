"""A SunSpec device: discovered on every new connection, mapped by itself.

Reads fetch each used model once per poll (its scale factors included, since
some devices change them at runtime), in chunks within the device's request
size. Setpoints: a PV or wind asset is curtailed through 704 WMaxLimPct
(or 123 WMaxLimPct) in % of its rating; other assets get 704 WSet in watts.
A writable ``setpoint_kw`` point in the device's ``points`` overrides both.
"""

from __future__ import annotations

import random
from typing import Any

from gridpilot.core.assets import AssetType
from gridpilot.core.telemetry import Sample
from gridpilot.core.telemetry_fields import Quality

from ...clock import Clock
from ...config import ModbusDevice
from ..base import DeviceMisconfigured, DeviceReadOnly, DeviceWriteFailed
from ..common import make_sample, tidy
from ..modbus.adapter import ModbusAdapter
from ..modbus.codec import encode
from ..modbus.transport import ModbusRefused
from .mapping import ENUM, Binding, bind
from .models import (
    DEFAULT_BASES,
    FoundModel,
    NoSunSpec,
    discover,
    model_def,
    scale_factor,
    scaled_value,
)

GENERATORS = (AssetType.PV, AssetType.WIND)


class SunSpecAdapter(ModbusAdapter):
    def __init__(
        self,
        asset_id: str,
        cfg: ModbusDevice,
        *,
        asset_type: AssetType,
        clock: Clock,
        rng: random.Random | None = None,
    ) -> None:
        super().__init__(asset_id, cfg, clock=clock, rng=rng)
        self.asset_type = asset_type
        self.models: list[FoundModel] = []
        self.bindings: list[Binding] = []
        self._generation = -1
        self._misconfigured: DeviceMisconfigured | None = None

    async def connect(self) -> None:
        if self._misconfigured is not None:
            raise self._misconfigured
        await self.transport.connect()
        if self._generation != self.transport.generation:
            await self._discover()
            self._generation = self.transport.generation

    async def _discover(self) -> None:
        base = self.cfg.sunspec_base_address
        bases = (base,) if base is not None else DEFAULT_BASES
        try:
            self.models = await discover(self._read_regs, bases, on_refused=ModbusRefused)
        except NoSunSpec as exc:
            self._misconfigured = DeviceMisconfigured(
                f"{exc} (unit {self.cfg.unit_id}); set sunspec: false and map points"
            )
            self.transport.link.misconfigured(str(self._misconfigured))
            raise self._misconfigured from None
        self.bindings = bind(self.models, self.asset_type)
        self.transport.link.info(
            "sunspec models discovered",
            models=",".join(str(m.id) for m in self.models),
            fields=",".join(f"{b.field}<-{b.source}" for b in self.bindings),
        )

    async def _read_regs(self, address: int, count: int) -> list[int]:
        return await self.transport.read("holding", address, count, self.cfg.unit_id)

    async def read_model(self, model: FoundModel, upto: int | None = None) -> list[int]:
        """A model's registers from its ID register, chunked per request."""
        end = model.end if upto is None else min(model.end, model.address + upto)
        regs: list[int] = []
        step = self.cfg.max_registers_per_read
        for start in range(model.address, end, step):
            regs += await self._read_regs(start, min(step, end - start))
        return regs

    # ------------------------------------------------------------- reading

    async def read(self) -> Sample:
        values: dict[str, Any] = {}
        quality: dict[str, Quality] = {}
        wanted: dict[FoundModel, int] = {}
        for b in self.bindings:
            need = max(b.point.offset + b.point.size, _sf_end(b))
            wanted[b.model] = max(wanted.get(b.model, 0), need)
        regs = {m: await self.read_model(m, upto) for m, upto in wanted.items()}
        for b in self.bindings:
            value = self._value(b, regs[b.model])
            if value is not None:
                values[b.field], quality[b.field] = value, Quality.GOOD
        await self.read_points(values, quality)  # the config's own points win
        return make_sample(self.asset_id, self._clock.now(), values, quality)

    def _value(self, b: Binding, regs: list[int]) -> Any:
        if b.factor == ENUM:
            raw = scaled_value(b.definition, b.point, regs)
            if raw is None:
                return None
            name = b.point.symbol(int(raw))
            return name.lower().replace(" ", "_") if name else int(raw)
        value = scaled_value(b.definition, b.point, regs)
        return None if value is None else tidy(value * b.factor)

    # ------------------------------------------------------------- writing

    async def write(self, p_kw: float) -> float:
        if self._setpoint is not None:
            return await self.write_point(self._setpoint, p_kw)
        found = {m.id: m for m in reversed(self.models)}  # first instance wins
        try:
            if self.asset_type in GENERATORS and (704 in found or 123 in found):
                return await self._write_limit(found, p_kw)
            if 704 in found:
                return await self._write_watts(found[704], p_kw)
        except ModbusRefused as exc:
            raise DeviceWriteFailed(str(exc)) from None
        have = ",".join(str(m.id) for m in self.models)
        raise DeviceReadOnly(f"no SunSpec control model for a {self.asset_type} (models {have})")

    async def _write_watts(self, model: FoundModel, p_kw: float) -> float:
        d = _def(704)
        regs = await self.read_model(model)
        sf = scale_factor(d, d.points["WSet"], regs)
        if sf is None:
            raise DeviceWriteFailed("704 WSet_SF is not implemented")
        raw = p_kw * 1000 / 10.0**sf
        words = [1, 1, *_encode(raw, "int32")]  # WSetEna=ENABLED, WSetMod=WATTS, WSet
        await self._write(model, d.points["WSetEna"].offset, words)
        return tidy(round(raw) * 10.0**sf / 1000)

    async def _write_limit(self, found: dict[int, FoundModel], p_kw: float) -> float:
        if p_kw < 0:
            raise DeviceWriteFailed(f"a {self.asset_type} cannot import {p_kw:g} kW")
        rating_w = await self._rating_w(found)
        model = found.get(704) or found[123]
        d = _def(model.id)
        pct_point = d.points["WMaxLimPct"]
        ena = d.points["WMaxLimPctEna" if model.id == 704 else "WMaxLim_Ena"]
        sf = scale_factor(d, pct_point, await self.read_model(model))
        if sf is None:
            raise DeviceWriteFailed(f"{model.id} WMaxLimPct_SF is not implemented")
        raw = p_kw * 1000 / rating_w * 100 / 10.0**sf
        await self._write(model, pct_point.offset, _encode(raw, "uint16"))
        await self._write(model, ena.offset, [1])
        return tidy(round(raw) * 10.0**sf / 100 * rating_w / 1000)

    async def _rating_w(self, found: dict[int, FoundModel]) -> float:
        for model_id, point in ((702, "WMaxRtg"), (121, "WMax"), (120, "WRtg")):
            if model_id in found:
                d = _def(model_id)
                value = scaled_value(d, d.points[point], await self.read_model(found[model_id]))
                if value:
                    return value
        raise DeviceWriteFailed("no rating (702 WMaxRtg, 121 WMax, 120 WRtg) for a % limit")

    async def _write(self, model: FoundModel, offset: int, words: list[int]) -> None:
        await self.transport.write_registers(
            model.address + offset, words, self.cfg.unit_id, multiple=self.cfg.write_multiple
        )


def _sf_end(b: Binding) -> int:
    sf = b.definition.points.get(b.point.sf) if b.point.sf else None
    return sf.offset + sf.size if sf is not None else 0


def _def(model_id: int) -> Any:
    d = model_def(model_id)
    assert d is not None, f"pysunspec2 lacks model {model_id}"
    return d


def _encode(raw: float, dtype: str) -> list[int]:
    try:
        return encode(raw, dtype)
    except ValueError as exc:
        raise DeviceWriteFailed(str(exc)) from None
