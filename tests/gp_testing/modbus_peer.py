"""A pymodbus TCP server on 127.0.0.1 for adapter tests: separate coil,
discrete input, holding and input tables per unit id, restartable on the
same port, with helpers to set and read registers."""

from __future__ import annotations

import asyncio
import logging
from typing import Any

from pymodbus.server import ModbusTcpServer
from pymodbus.simulator import DataType, SimData, SimDevice

FC = {"coil": 1, "discrete_input": 2, "holding": 3, "input": 4}


class ModbusPeer:
    def __init__(
        self,
        port: int,
        *,
        unit_ids: tuple[int, ...] = (1,),
        registers: int = 2000,
        holding: dict[int, list[int]] | None = None,
        holding_start: int = 0,
        silent_units: tuple[int, ...] = (),
    ) -> None:
        self.port = port
        self.unit_ids = unit_ids
        self.registers = registers
        self.holding_start = holding_start
        # Unit ids never answered, as a Modbus gateway whose sub-device is off (a timeout).
        self.silent_units = silent_units
        self._initial = holding or {}
        self.server: ModbusTcpServer | None = None
        self._state: dict[tuple[int, int], dict[int, Any]] = {}  # kept across restarts

    def _device(self, unit: int) -> SimDevice:
        n = self.registers
        return SimDevice(
            id=unit,
            simdata=(
                [SimData(address=0, count=n, values=False, datatype=DataType.BITS)],
                [SimData(address=0, count=n, values=False, datatype=DataType.BITS)],
                [
                    SimData(
                        address=self.holding_start, count=n, values=0, datatype=DataType.REGISTERS
                    )
                ],
                [SimData(address=0, count=n, values=0, datatype=DataType.REGISTERS)],
            ),
        )

    async def start(self) -> None:
        logging.getLogger("pymodbus").setLevel(logging.CRITICAL)
        server = ModbusTcpServer(
            [self._device(u) for u in self.unit_ids],
            address=("127.0.0.1", self.port),
            trace_packet=self._drop_silent_answers,
        )
        await server.serve_forever(background=True)
        self.server = server
        for address, words in self._initial.items():
            await self.set("holding", address, words)
        for (unit, fc), values in self._state.items():  # what was written before a restart
            for address, value in values.items():
                await server.async_setValues(unit, fc, address, [value])

    def _drop_silent_answers(self, sending: bool, packet: bytes) -> bytes:
        # MBAP header: transaction (2), protocol (2), length (2), unit id (1).
        if sending and len(packet) > 6 and packet[6] in self.silent_units:
            return b""
        return packet

    async def stop(self) -> None:
        if self.server is not None:
            server, self.server = self.server, None
            for unit in self.unit_ids:  # remember the tables a restart must keep
                for fc in (1, 3, 4):
                    start = self.holding_start if fc == 3 else 0
                    values = await server.async_getValues(unit, fc, start, self.registers)
                    self._state[(unit, fc)] = {start + i: v for i, v in enumerate(values) if v}
            await server.shutdown()
            await asyncio.sleep(0.05)

    async def restart(self, pause_s: float = 0.3) -> None:
        await self.stop()
        await asyncio.sleep(pause_s)
        await self.start()

    async def set(self, table: str, address: int, values: list[Any], unit: int = 1) -> None:
        assert self.server is not None
        await self.server.async_setValues(unit, FC[table], address, values)

    async def get(self, table: str, address: int, count: int = 1, unit: int = 1) -> list[Any]:
        assert self.server is not None
        return list(await self.server.async_getValues(unit, FC[table], address, count))
