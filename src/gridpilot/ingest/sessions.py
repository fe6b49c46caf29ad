"""Live agent sessions held by this headend process.

One session per gateway: attaching a new one closes the older (superseded).
Outbound messages go through a bounded outbox that the stream writer drains.
"""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import AsyncIterator
from dataclasses import dataclass, field

from gridpilot.core.sessions import EndReason
from gridpilot.wire.messages import HeadendMessage

OUTBOX_LIMIT = 1024


class SessionClosed(Exception):
    """The agent's stream is gone; the message was not written."""


@dataclass(eq=False)
class AgentSession:
    session_id: str
    gateway_id: str
    site_id: str
    peer: str
    # The assets this session may speak for: those of its Hello still bound to
    # its gateway in the database (re-checked by ingest.guard).
    asset_ids: frozenset[str]
    outbox: asyncio.Queue[HeadendMessage | None] = field(default_factory=asyncio.Queue)
    close_reason: EndReason | None = None
    # The RPC was cancelled under the handler (peer gone, connection cut).
    cut: bool = False
    fingerprint: str | None = None  # the client certificate's (None: plain-text dev mode)
    tenant_id: str = "default"  # its enrollment's (Admission.tenant_id): quotas and usage
    # Its site rests on an admin's enrollment alone (not on its certificate):
    # withdrawing the enrollment ends the session (ingest.guard).
    enrolled_only: bool = False
    hello_asset_ids: frozenset[str] = frozenset()
    # Samples refused since the last heartbeat's write to the gateway row, and why the last was.
    rejected_pending: int = 0
    last_rejection: str | None = None
    foreign_audited: set[str] = field(default_factory=set)
    # Why the headend ended the stream, when it says more than END_STATUS (a quota).
    end_detail: str | None = None
    reader: asyncio.Task[None] | None = field(default=None, repr=False)  # reads the agent
    ending: asyncio.Task[None] | None = field(default=None, repr=False)  # closes the session once

    def __post_init__(self) -> None:
        if not self.hello_asset_ids:
            self.hello_asset_ids = self.asset_ids

    @property
    def closed(self) -> bool:
        return self.close_reason is not None

    @property
    def end_reason(self) -> EndReason:
        """The reason to record: the first one decided, except that an end of
        stream followed by the call being cut was the network, not the agent."""
        if self.close_reason in (None, EndReason.CLOSED) and self.cut:
            return EndReason.NETWORK
        return self.close_reason or EndReason.NETWORK

    def send_nowait(self, msg: HeadendMessage) -> None:
        if self.closed:
            raise SessionClosed(f"session {self.session_id} is closed ({self.close_reason})")
        if self.outbox.qsize() >= OUTBOX_LIMIT:
            # A stuck stream must not grow memory: drop the session, the
            # agent reconnects and everything unacked is re-sent.
            self.close(EndReason.OUTBOX_FULL)
            raise SessionClosed(f"session {self.session_id} outbox is full")
        self.outbox.put_nowait(msg)

    def close(self, reason: EndReason) -> None:
        if self.close_reason is None:
            self.close_reason = reason
            self.outbox.put_nowait(None)  # wakes the writer; it ends the stream


class SessionRegistry:
    def __init__(self) -> None:
        self._by_gateway: dict[str, AgentSession] = {}
        self._opening: dict[str, tuple[asyncio.Lock, int]] = {}

    @contextlib.asynccontextmanager
    async def opening(self, gateway_id: str) -> AsyncIterator[None]:
        """Held while one Hello of this gateway records its session and
        attaches it: concurrent Hellos of one gateway then end each other in
        the same order in the database and here (the newest wins), never with
        the older one live in one place and the newer in the other."""
        lock, users = self._opening.get(gateway_id, (asyncio.Lock(), 0))
        self._opening[gateway_id] = (lock, users + 1)
        try:
            async with lock:
                yield
        finally:
            lock, users = self._opening[gateway_id]
            if users == 1:
                del self._opening[gateway_id]
            else:
                self._opening[gateway_id] = (lock, users - 1)

    def attach(self, session: AgentSession) -> AgentSession | None:
        old = self._by_gateway.get(session.gateway_id)
        self._by_gateway[session.gateway_id] = session
        if old is not None and old is not session:
            old.close(EndReason.SUPERSEDED)
            return old
        return None

    def detach(self, session: AgentSession) -> None:
        if self._by_gateway.get(session.gateway_id) is session:
            del self._by_gateway[session.gateway_id]

    def get(self, gateway_id: str) -> AgentSession | None:
        return self._by_gateway.get(gateway_id)

    def all(self) -> list[AgentSession]:
        return list(self._by_gateway.values())

    def close_all(self, reason: EndReason) -> None:
        for session in list(self._by_gateway.values()):
            session.close(reason)
        self._by_gateway.clear()
