"""The outbound gRPC link to the headend: one bidi stream, kept up forever.

Each attempt opens a fresh channel (so gRPC's own reconnect backoff never
stacks on ours), sends Hello, waits for Welcome, then runs one reader and one
writer until the stream ends; then it backs off (full jitter, 0.5 s doubling
to 30 s) and tries again, at the next of the configured headend addresses
(a replica that died is not dialled again first; one address: always that).
It logs transitions only: up, lost, recovered.
gRPC and transport errors are mapped to a one-line reason here, nowhere else.
"""

from __future__ import annotations

import asyncio
import contextlib
import random
import time
from collections.abc import Awaitable, Callable
from datetime import datetime
from typing import Any, Protocol

import grpc
import structlog

from gridpilot.wire.messages import AgentMessage, HeadendMessage, Welcome
from gridpilot.wire.service import AgentGatewayStub

from ..clock import Clock
from ..config import HeadendConfig

log = structlog.get_logger(__name__)

# Keepalive that survives NAT/firewall idle timeouts (often 60-350 s): ping
# every 30 s even without calls or data, give up on a dead peer after 10 s.
# The headend must allow it (grpc.http2.min_ping_interval_without_data_ms
# <= 30000 and grpc.keepalive_permit_without_calls = 1) or it answers with
# GOAWAY "too_many_pings".
KEEPALIVE_OPTIONS: list[tuple[str, int]] = [
    ("grpc.keepalive_time_ms", 30_000),
    ("grpc.keepalive_timeout_ms", 10_000),
    ("grpc.keepalive_permit_without_calls", 1),
    ("grpc.http2.max_pings_without_data", 0),
]


class LinkClosed(Exception):
    """The headend ended the stream or broke the protocol."""


_LINK_ERRORS = (grpc.RpcError, asyncio.InvalidStateError, LinkClosed, TimeoutError, OSError)

Commit = Callable[[], None]


class Outbound(Protocol):
    """What the writer sends, in priority order, and how it learns there is more."""

    wakeup: asyncio.Event

    def start_session(self) -> None:
        """A new stream: everything unacked is due again."""
        ...

    def next(self) -> tuple[AgentMessage, Commit] | None:
        """The next message and a callback to run once it is written."""
        ...

    def heartbeat(self, now: datetime) -> AgentMessage:
        """A Heartbeat (with whatever the agent reports in it)."""
        ...


def backoff_delay(
    attempt: int, rng: random.Random, base_s: float = 0.5, cap_s: float = 30.0
) -> float:
    """Full jitter: uniform between 0 and min(cap, base * 2**(attempt-1))."""
    return rng.uniform(0.0, min(cap_s, base_s * 2 ** min(max(attempt - 1, 0), 16)))


def describe(exc: BaseException) -> str:
    if isinstance(exc, grpc.aio.AioRpcError):
        return f"{exc.code().name}: {exc.details()}"
    if isinstance(exc, TimeoutError):
        return "timed out waiting for the headend"
    return str(exc) or type(exc).__name__


class HeadendLink:
    def __init__(
        self,
        config: HeadendConfig,
        *,
        hello: Callable[[], AgentMessage],
        outbound: Outbound,
        on_up: Callable[[Welcome], Awaitable[None]],
        on_message: Callable[[HeadendMessage], Awaitable[None]],
        on_down: Callable[[], None],
        clock: Clock,
        heartbeat_interval_s: float,
        welcome_timeout_s: float = 10.0,
        rng: random.Random | None = None,
    ) -> None:
        self._cfg = config
        self._hello = hello
        self._outbound = outbound
        self._on_up = on_up
        self._on_message = on_message
        self._on_down = on_down
        self._clock = clock
        self._heartbeat_s = heartbeat_interval_s
        self._welcome_timeout_s = welcome_timeout_s
        self._rng = rng or random.Random()
        self.up = False
        self.session_id: str | None = None
        self.sessions = 0  # established sessions since start
        self._down_since = time.monotonic()
        self._addresses = config.addresses
        self._turn = 0  # index of the address the next attempt dials
        self.address = self._addresses[0]  # the one dialled last (the live one while up)
        self._log = log
        self._closing = asyncio.Event()

    def close(self) -> None:
        """End the stream cleanly, then let ``run()`` return: the agent
        half-closes and the headend ends the stream, recording the session
        ``closed`` (a cancelled call looks to it like a cut connection)."""
        self._closing.set()
        self._outbound.wakeup.set()

    async def run(self) -> None:
        """Connect, stream, reconnect; returns by cancellation or after close()."""
        attempt = 0
        warned = False
        while not self._closing.is_set():
            established_before = self.sessions
            self.address = self._addresses[self._turn % len(self._addresses)]
            self._turn += 1
            self._log = log.bind(headend=self.address)
            try:
                await self._session()
                reason = "headend closed the stream"
            except _LINK_ERRORS as exc:
                reason = describe(exc)
            except Exception as exc:  # a bug, not a network problem: show it, keep going
                reason = describe(exc)
                self._log.exception("headend link error")
            if self._closing.is_set():
                self._log.info("headend link closed", reason=reason)
                return
            if self.sessions > established_before:
                attempt, warned = 0, False
                self._went_down(reason)
            elif not warned:
                warned = True
                what = "headend unreachable" if self.sessions == 0 else "headend still unreachable"
                self._log.warning(what + "; retrying with backoff", error=reason)
            else:
                self._log.debug("connect attempt failed", error=reason, attempt=attempt)
            attempt += 1
            with contextlib.suppress(TimeoutError):  # close() ends the wait
                await asyncio.wait_for(self._closing.wait(), backoff_delay(attempt, self._rng))

    # ------------------------------------------------------------ session

    async def _session(self) -> None:
        channel = self._channel()
        call: Any = None
        try:
            call = AgentGatewayStub(channel).Connect()
            await call.write(self._hello())
            first = await asyncio.wait_for(call.read(), self._welcome_timeout_s)
            if first is grpc.aio.EOF:
                raise LinkClosed("the headend closed the stream before Welcome")
            if first.WhichOneof("body") != "welcome":
                raise LinkClosed(f"expected Welcome, got {first.WhichOneof('body')}")
            self._went_up(first.welcome)
            await self._on_up(first.welcome)
            await _first_to_end(self._read(call), self._write(call))
        except asyncio.InvalidStateError:  # wrote to a finished call: report its status
            if call is not None and call.done():
                raise LinkClosed(f"{(await call.code()).name}: {await call.details()}") from None
            raise
        finally:
            self.up = False  # the session is over, whichever way it ended
            if call is not None:
                call.cancel()
            await channel.close(grace=None)

    def _channel(self) -> grpc.aio.Channel:
        cfg = self._cfg
        if cfg.insecure:
            return grpc.aio.insecure_channel(self.address, options=KEEPALIVE_OPTIONS)
        assert cfg.ca_file and cfg.cert_file and cfg.key_file  # enforced by the config
        credentials = grpc.ssl_channel_credentials(
            root_certificates=cfg.ca_file.read_bytes(),
            private_key=cfg.key_file.read_bytes(),
            certificate_chain=cfg.cert_file.read_bytes(),
        )
        return grpc.aio.secure_channel(self.address, credentials, options=KEEPALIVE_OPTIONS)

    async def _read(self, call: Any) -> None:
        while True:
            message = await call.read()
            if message is grpc.aio.EOF:
                raise LinkClosed("the headend closed the stream")
            await self._on_message(message)

    async def _write(self, call: Any) -> None:
        out = self._outbound
        out.start_session()
        next_heartbeat = time.monotonic() + self._heartbeat_s
        while True:
            out.wakeup.clear()
            if self._closing.is_set():
                await call.done_writing()
                await asyncio.Future()  # the reader ends when the headend ends the stream
            now = time.monotonic()
            if now >= next_heartbeat:
                await call.write(out.heartbeat(self._clock.now()))
                next_heartbeat = now + self._heartbeat_s
                continue
            item = out.next()
            if item is not None:
                message, commit = item
                await call.write(message)
                commit()
                continue
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(out.wakeup.wait(), next_heartbeat - now)

    # -------------------------------------------------------- transitions

    def _went_up(self, welcome: Welcome) -> None:
        down_for = time.monotonic() - self._down_since
        self.up, self.session_id = True, welcome.session_id
        self.sessions += 1
        if self.sessions == 1:
            self._log.info("headend link up", session_id=welcome.session_id)
        else:
            self._log.info(
                "headend link recovered",
                session_id=welcome.session_id,
                down_for_s=round(down_for, 1),
            )

    def _went_down(self, reason: str) -> None:
        self.session_id = None
        self._down_since = time.monotonic()
        self._log.warning("headend link lost", error=reason)
        self._on_down()


async def _first_to_end(*coros: Awaitable[None]) -> None:
    """Run until the first one ends; cancel the rest; re-raise its error."""
    tasks = [asyncio.ensure_future(c) for c in coros]
    try:
        done, _ = await asyncio.wait(tasks, return_when=asyncio.FIRST_COMPLETED)
    finally:
        for task in tasks:
            task.cancel()
        await asyncio.gather(*tasks, return_exceptions=True)
    for task in done:
        if task.exception() is not None:
            raise task.exception()  # type: ignore[misc]
