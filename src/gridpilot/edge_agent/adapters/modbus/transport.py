"""One Modbus TCP connection, supervised, with pymodbus errors mapped to ours
in this one place.

pymodbus retries a *lost* connection in the background only when asked to
and never retries a first connect that failed, and a silent device leaves the
socket open forever (protocols.md §2.4). So its own reconnect is off and this
class owns the connection: a connect is attempted at most once per backoff
delay, a lost connection is dropped, and after ``recycle_after_timeouts``
timeouts in a row the client is recreated (a new TCP connection).
"""

from __future__ import annotations

import random
import time
from collections.abc import Awaitable
from typing import Any

from pymodbus.client import AsyncModbusTcpClient
from pymodbus.constants import ExcCodes
from pymodbus.exceptions import ConnectionException, ModbusException, ModbusIOException

from ..base import DeviceError, DeviceUnavailable
from ..common import Backoff, LinkLog


class ModbusRefused(DeviceError):
    """The device answered with a Modbus exception (the link is fine)."""

    def __init__(self, what: str, code: int) -> None:
        self.code = code
        try:
            name = ExcCodes(code).name
        except ValueError:
            name = f"exception code {code}"
        super().__init__(f"{what}: device answered {name}")


class ModbusNoAnswer(DeviceUnavailable):
    """A request timed out while the connection still stands (a gateway whose
    sub-device is silent, a slow block): the caller decides whether the whole
    device is unavailable or only this request's points are."""


class ModbusTransport:
    def __init__(
        self,
        asset_id: str,
        host: str,
        port: int,
        *,
        timeout_s: float,
        recycle_after_timeouts: int = 3,
        backoff_max_s: float = 30.0,
        rng: random.Random | None = None,
    ) -> None:
        self.endpoint = f"{host}:{port}"
        self._asset_id = asset_id
        self._host, self._port = host, port
        self._timeout_s = timeout_s
        self._recycle_after = recycle_after_timeouts
        self._client: AsyncModbusTcpClient | None = None
        self._timeouts = 0
        self._backoff = Backoff(min(0.5, backoff_max_s), backoff_max_s, rng=rng)
        self._retry_at = 0.0
        self.link = LinkLog(asset_id, "modbus", self.endpoint)
        self.generation = 0  # counts successful connects (a new connection: rediscover)

    @property
    def connected(self) -> bool:
        return self._client is not None and self._client.connected

    async def connect(self) -> bool:
        """Ensure a connection; True when this call made a new one. Raises
        DeviceUnavailable (also, without I/O, while backing off)."""
        if self.connected:
            return False
        self.drop()
        wait = self._retry_at - time.monotonic()
        if wait > 0:
            raise DeviceUnavailable(f"{self.link.last_error}; next attempt in {wait:.1f} s")
        client = AsyncModbusTcpClient(
            self._host,
            port=self._port,
            timeout=self._timeout_s,
            retries=0,
            reconnect_delay=0,  # no background reconnect: this class supervises
            name=self._asset_id,
        )
        try:
            ok = await client.connect()
        except (OSError, ModbusException) as exc:
            ok, error = False, str(exc)
        else:
            error = f"cannot connect to {self.endpoint}"
        if not ok:
            client.close()
            self._retry_at = time.monotonic() + self._backoff.next_delay()
            self.link.lost(error)
            raise DeviceUnavailable(error)
        self._client = client
        self._timeouts = 0
        self._backoff.reset()
        self.generation += 1
        return True

    def drop(self) -> None:
        if self._client is not None:
            self._client.close()
            self._client = None

    async def close(self) -> None:
        self.drop()

    # ------------------------------------------------------------ requests

    async def read(self, table: str, address: int, count: int, unit: int) -> list[Any]:
        c = self._require()
        call = {
            "holding": c.read_holding_registers,
            "input": c.read_input_registers,
            "coil": c.read_coils,
            "discrete_input": c.read_discrete_inputs,
        }[table]
        what = f"read {table} {address}+{count} (unit {unit})"
        rsp = await self._request(what, call(address, count=count, device_id=unit))
        if table in ("coil", "discrete_input"):
            return list(rsp.bits[:count])
        return list(rsp.registers)

    async def write_registers(
        self, address: int, registers: list[int], unit: int, *, multiple: bool
    ) -> None:
        c = self._require()
        what = f"write holding {address} (unit {unit})"
        if len(registers) == 1 and not multiple:
            await self._request(what, c.write_register(address, registers[0], device_id=unit))
        else:
            await self._request(what, c.write_registers(address, registers, device_id=unit))

    async def write_coil(self, address: int, value: bool, unit: int) -> None:
        c = self._require()
        what = f"write coil {address} (unit {unit})"
        await self._request(what, c.write_coil(address, value, device_id=unit))

    def _require(self) -> AsyncModbusTcpClient:
        if self._client is None or not self._client.connected:
            raise DeviceUnavailable(self.link.last_error or f"not connected to {self.endpoint}")
        return self._client

    async def _request(self, what: str, call: Awaitable[Any]) -> Any:
        """The one place pymodbus errors become ours."""
        try:
            rsp = await call
        except ModbusIOException:
            self._timeouts += 1
            error = f"no answer from {self.endpoint} within {self._timeout_s:g} s ({what})"
            if self._timeouts < self._recycle_after:
                # Not logged as a lost link here: the device may still answer its
                # other blocks (the adapter marks only this one bad), and logging
                # lost/recovered on every poll would hide a real outage.
                self.link.last_error = error
                raise ModbusNoAnswer(error) from None
            self.link.info("recreating the connection", timeouts=self._timeouts)
            self.drop()
            self.link.lost(error)
            raise DeviceUnavailable(error) from None
        except (ConnectionException, OSError) as exc:
            self.drop()
            error = f"connection to {self.endpoint} lost ({what}): {exc}"
            self.link.lost(error)
            raise DeviceUnavailable(error) from None
        except ModbusException as exc:
            raise DeviceUnavailable(f"{what}: {exc}") from None
        self._timeouts = 0
        self.link.connected()  # the device answers (a TCP connect alone proves little)
        if rsp.isError():
            raise ModbusRefused(what, int(getattr(rsp, "exception_code", 0)))
        return rsp
