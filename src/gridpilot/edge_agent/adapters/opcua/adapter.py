"""OPC UA client adapter: subscription (with deadband) or polling, typed
writes, and a supervisor that survives server restarts and silent links.

The supervisor task owns the connection: it opens a new client, resolves
every ``nsu=`` namespace URI to the server's current index (it can change
across a server restart), checks every node exists, subscribes (or not, in
poll mode), then checks the link every ``health_interval_s``. On any loss it
marks every value stale, drops the client and retries with backoff; an error
retrying cannot fix (wrong password, unknown node) stops it and is reported
by every later call.
"""

from __future__ import annotations

import asyncio
import contextlib
import random
import re
from typing import Any

from asyncua import Client, Node, ua

from gridpilot.core.telemetry import Sample
from gridpilot.core.telemetry_fields import Quality

from ...clock import Clock
from ...config import OpcUaDevice, OpcUaPoint
from ..base import DeviceMisconfigured, DeviceReadOnly, DeviceUnavailable, DeviceWriteFailed
from ..common import (
    Backoff,
    LinkLog,
    ValueCache,
    make_sample,
    normalize,
    raw_for,
    start_supervised,
    stop_supervised,
    tidy,
)
from .session import (
    Misconfigured,
    classify,
    close_client,
    new_client,
    open_session,
    status_name,
)

_NSU = re.compile(r"^nsu=([^;]+);(.+)$")

_INT_RANGES = {
    ua.VariantType.SByte: (-(2**7), 2**7 - 1),
    ua.VariantType.Byte: (0, 2**8 - 1),
    ua.VariantType.Int16: (-(2**15), 2**15 - 1),
    ua.VariantType.UInt16: (0, 2**16 - 1),
    ua.VariantType.Int32: (-(2**31), 2**31 - 1),
    ua.VariantType.UInt32: (0, 2**32 - 1),
    ua.VariantType.Int64: (-(2**63), 2**63 - 1),
    ua.VariantType.UInt64: (0, 2**64 - 1),
}


def quality_of(status: ua.StatusCode | None) -> Quality:
    if status is None or status.is_good():
        return Quality.GOOD
    if status.is_uncertain():
        return Quality.STALE
    return Quality.BAD


class OpcUaAdapter:
    def __init__(
        self,
        asset_id: str,
        cfg: OpcUaDevice,
        *,
        clock: Clock,
        rng: random.Random | None = None,
    ) -> None:
        self.asset_id = asset_id
        self.cfg = cfg
        self._clock = clock
        self._rng = rng
        self.link = LinkLog(asset_id, "opcua", cfg.url)
        self.cache = ValueCache()
        self._client: Client | None = None
        self._nodes: dict[str, Node] = {}  # field -> node (this connection)
        self._by_node: dict[Any, OpcUaPoint] = {}  # NodeId -> point
        self._write: tuple[OpcUaPoint, Node, ua.VariantType] | None = None
        self._setpoint = next((p for p in cfg.points if p.writable), None)
        self._task: asyncio.Task[None] | None = None
        self._changed = asyncio.Event()
        self._lost = asyncio.Event()
        self._misconfigured: DeviceMisconfigured | None = None

    # ------------------------------------------------------------ interface

    async def connect(self) -> None:
        await start_supervised(self, f"opcua:{self.asset_id}", self.cfg.timeout_s)
        self._check_up()

    async def read(self) -> Sample:
        self._check_up()
        if self.cfg.mode == "poll":
            await self._poll()
        values, quality = self.cache.snapshot(link_up=self._client is not None)
        return make_sample(self.asset_id, self._clock.now(), values, quality)

    async def write(self, p_kw: float) -> float:
        if self._setpoint is None:
            raise DeviceReadOnly(f"{self.asset_id}: no point with field setpoint_kw and mode w/rw")
        self._check_up()
        assert self._write is not None
        point, node, vtype = self._write
        raw = raw_for(point, p_kw)
        value: Any = raw
        if vtype in _INT_RANGES:
            low, high = _INT_RANGES[vtype]
            value = round(raw)
            if not low <= value <= high:
                raise DeviceWriteFailed(f"{p_kw:g} kW is {value} raw, outside {vtype.name}")
        elif vtype == ua.VariantType.Boolean:
            value = raw != 0
        elif vtype not in (ua.VariantType.Float, ua.VariantType.Double):
            raise DeviceWriteFailed(f"{point.node} is a {vtype.name}, not a number")
        try:
            await node.write_value(ua.DataValue(ua.Variant(value, vtype)))
        except ua.UaStatusCodeError as exc:
            raise DeviceWriteFailed(f"{point.node} refused the write: {status_name(exc)}") from None
        except Exception as exc:
            raise self._unavailable(exc) from None
        return tidy(float(value) * point.scale + point.offset)

    async def close(self) -> None:
        await stop_supervised(self)

    # ----------------------------------------------------------- supervisor

    async def _supervise(self) -> None:
        backoff = Backoff(
            min(0.5, self.cfg.reconnect_backoff_max_s),
            self.cfg.reconnect_backoff_max_s,
            rng=self._rng,
        )
        while True:
            client = new_client(self.cfg)  # never reused after a failure (asyncua #1660)
            had_session = False
            try:
                async with asyncio.timeout(4 * self.cfg.timeout_s):  # a hung connect
                    await open_session(client, self.cfg)
                    had_session = True
                    await self._resolve(client)
                    if self.cfg.mode == "subscribe":
                        await self._subscribe(client)
                self._lost.clear()
                self._set_client(client)
                self.link.connected()
                backoff.reset()
                await self._watch(client)
            except asyncio.CancelledError:
                raise
            except Exception as exc:
                misconfigured, message = classify(exc, self.cfg.url, self.cfg.timeout_s)
                if misconfigured:
                    self._misconfigured = DeviceMisconfigured(message)
                    self.link.misconfigured(message)
                    return
                self.link.lost(message)
            finally:
                self._set_client(None)
                await close_client(client, self.cfg.timeout_s, had_session=had_session)
            await asyncio.sleep(backoff.next_delay())

    def _set_client(self, client: Client | None) -> None:
        self._client = client
        self._changed.set()

    async def _watch(self, client: Client) -> None:
        """Return (by raising) when the link is gone: a failed or unanswered
        health read finds a restart and a silent link alike."""
        while True:
            with contextlib.suppress(TimeoutError):
                async with asyncio.timeout(self.cfg.health_interval_s):
                    await self._lost.wait()
                    raise ConnectionError("the server ended the session")
            async with asyncio.timeout(self.cfg.timeout_s):
                await client.nodes.server_state.read_value()

    async def _resolve(self, client: Client) -> None:
        self._nodes, self._by_node, self._write = {}, {}, None
        indexes: dict[str, int] = {}
        for point in self.cfg.points:
            self._nodes[point.field] = client.get_node(await self._node_id(client, point, indexes))
        fields = list(self._nodes)
        dvs = await client.read_attributes([self._nodes[f] for f in fields])
        for field, dv in zip(fields, dvs, strict=True):
            name = dv.StatusCode.name if dv.StatusCode is not None else ""
            if name in ("BadNodeIdUnknown", "BadNodeIdInvalid"):
                point = next(p for p in self.cfg.points if p.field == field)
                raise Misconfigured(f"node {point.node} ({field}) does not exist on {self.cfg.url}")
        for point in self.cfg.points:
            node = self._nodes[point.field]
            self._by_node[node.nodeid] = point
            if point.writable:
                vtype = await node.read_data_type_as_variant_type()
                self._write = (point, node, vtype)
        for field, dv in zip(fields, dvs, strict=True):
            point = next(p for p in self.cfg.points if p.field == field)
            if point.readable:
                self._store(point, dv)

    async def _node_id(self, client: Client, point: OpcUaPoint, indexes: dict[str, int]) -> Any:
        match = _NSU.match(point.node)
        text = point.node
        if match is not None:
            uri, rest = match.groups()
            if uri not in indexes:
                try:
                    indexes[uri] = await client.get_namespace_index(uri)
                except ValueError:
                    raise Misconfigured(f"namespace {uri!r} is not on {self.cfg.url}") from None
            text = f"ns={indexes[uri]};{rest}"
        try:
            return ua.NodeId.from_string(text)
        except (ValueError, ua.UaError) as exc:
            raise Misconfigured(f"{point.node!r} is not a NodeId: {exc}") from None

    async def _subscribe(self, client: Client) -> None:
        sub = await client.create_subscription(self.cfg.publishing_interval_ms, self)
        plain = [self._nodes[p.field] for p in self.cfg.points if p.readable and p.deadband is None]
        results: list[Any] = []
        if plain:
            results += await sub.subscribe_data_change(plain, queuesize=1)
        for p in self.cfg.points:
            if p.readable and p.deadband is not None:
                results.append(
                    await sub.deadband_monitor(
                        self._nodes[p.field],
                        ua.Double(p.deadband),
                        ua.UInt32(ua.DeadbandType.Absolute),
                        queuesize=1,
                    )
                )
        bad = [r for r in results if isinstance(r, ua.StatusCode) and not r.is_good()]
        if bad:
            raise Misconfigured(f"the server refused monitored items: {bad[0].name}")

    # asyncua subscription handler (sync: each call is its own task, in order)
    def datachange_notification(self, node: Node, val: Any, data: Any) -> None:
        point = self._by_node.get(node.nodeid)
        if point is not None:
            self._store(point, data.monitored_item.Value)

    def status_change_notification(self, status: Any) -> None:
        self._lost.set()

    def _store(self, point: OpcUaPoint, dv: ua.DataValue) -> None:
        q = quality_of(dv.StatusCode)
        raw = dv.Value.Value if dv.Value is not None else None
        value, vq = normalize(point, raw) if raw is not None else (None, Quality.BAD)
        if q == Quality.GOOD:
            q = vq
        self.cache.put(point.field, value, q)

    async def _poll(self) -> None:
        client = self._client
        assert client is not None
        points = [p for p in self.cfg.points if p.readable]
        try:
            dvs = await client.read_attributes([self._nodes[p.field] for p in points])
        except Exception as exc:
            self._lost.set()
            raise self._unavailable(exc) from None
        for p, dv in zip(points, dvs, strict=True):
            self._store(p, dv)

    def _check_up(self) -> None:
        if self._misconfigured is not None:
            raise self._misconfigured
        if self._client is None:
            raise DeviceUnavailable(self.link.last_error or f"connecting to {self.cfg.url}")

    def _unavailable(self, exc: BaseException) -> DeviceUnavailable:
        return DeviceUnavailable(classify(exc, self.cfg.url, self.cfg.timeout_s)[1])
