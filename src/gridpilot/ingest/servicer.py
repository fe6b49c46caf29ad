"""The AgentGateway servicer: one bidirectional stream per edge agent."""

from __future__ import annotations

import asyncio
import contextlib
import uuid
from collections.abc import AsyncIterator, Awaitable, Callable
from datetime import UTC, datetime, timedelta

import grpc
import structlog
from google.protobuf.message import DecodeError

from gridpilot.core.errors import Conflict, ValidationFailed
from gridpilot.core.sessions import EndReason
from gridpilot.schema.db import DATABASE_UNAVAILABLE
from gridpilot.security.audit import Actor
from gridpilot.security.identity import ID_PATTERN, GatewayIdentity
from gridpilot.store.dispatches import DispatchStore
from gridpilot.wire import dispatch as wire_dispatch
from gridpilot.wire import session as wire_session
from gridpilot.wire import telemetry as wire_telemetry
from gridpilot.wire.messages import (
    AgentMessage,
    DispatchAck,
    HeadendMessage,
    Hello,
    LocalDispatch,
    TelemetryBatch,
)
from gridpilot.wire.service import AgentGatewayServicer as AgentGatewayServicerBase
from gridpilot.wire.text import clean_text
from gridpilot.workflows.models import AgentAck, DispatchInput

from .copyrows import CopyRows, EncodedBatch, encode_batch
from .edge_reports import EdgeBufferReports
from .enrollment import OPEN, Admission, EnrollmentStore
from .guard import GatewayAuthority, Refusal, gateway_actor
from .local_dispatches import LocalDispatchRefused, local_dispatch_input
from .pipeline import IngestBatch, TelemetryPipeline
from .registry import GatewayStore
from .sessions import AgentSession, SessionClosed, SessionRegistry

log = structlog.get_logger(__name__)

HELLO_TIMEOUT_S = 10.0
INTERNAL_MESSAGE = "internal error in the headend (logged there); retry later"
MAX_SAMPLES_PER_BATCH = 5000
# Signals an ack to its dispatch workflow, then calls back (acks.TemporalAckSink).
AckSink = Callable[[AgentAck, Callable[[], None]], Awaitable[None]]
# Records a local dispatch (row + workflow); raises when the DB or Temporal is down.
LocalSink = Callable[[DispatchInput, Actor], Awaitable[None]]
# The status a stream ends with, by the reason the headend ended it (the
# others end with OK: superseded, closed, or nobody left to tell).
END_STATUS: dict[EndReason, tuple[grpc.StatusCode, str]] = {
    EndReason.REVOKED: (grpc.StatusCode.UNAUTHENTICATED, "client certificate has been revoked"),
    EndReason.UNENROLLED: (
        grpc.StatusCode.PERMISSION_DENIED,
        "gateway is no longer enrolled for this site; see: gridpilot gateway enroll",
    ),
    EndReason.INVALID_MESSAGE: (
        grpc.StatusCode.INVALID_ARGUMENT,
        "message: not a valid gridpilot.v1.AgentMessage (undecodable protobuf)",
    ),
    EndReason.UNRESPONSIVE: (
        grpc.StatusCode.UNAVAILABLE,
        "no message (heartbeat, telemetry or ack) from the agent in time; reconnect",
    ),
    EndReason.HEADEND_ERROR: (grpc.StatusCode.INTERNAL, INTERNAL_MESSAGE),
}


class AgentGatewayServicer(AgentGatewayServicerBase):
    def __init__(
        self,
        store: GatewayStore,
        dispatches: DispatchStore,
        sessions: SessionRegistry,
        pipeline: TelemetryPipeline,
        ack_sink: AckSink,
        headend_id: str,
        task_queue: str,
        max_future_skew: timedelta = timedelta(minutes=5),
        authority: GatewayAuthority | None = None,
        local_sink: LocalSink | None = None,
        enrollment: EnrollmentStore | None = None,
        silence_s: float = 25.0,
    ) -> None:
        self._store = store
        self._dispatches = dispatches
        self._enrollment = enrollment
        self._silence_s = silence_s  # GRIDPILOT_AGENT_SILENCE_S
        self._local_sink = local_sink
        self._sessions = sessions
        self._pipeline = pipeline
        self._ack_sink = ack_sink
        self._late = late_ack_recorder(dispatches)
        self._headend_id = headend_id
        self._task_queue = task_queue
        self._skew = max_future_skew
        self.rejected_samples = 0
        self.edge_reports = EdgeBufferReports()
        self._authority = authority
        self.streams_started = 0  # Connect calls that reached the servicer (after TLS)
        self._ending: set[asyncio.Task[None]] = set()

    async def Connect(
        self,
        request_iterator: AsyncIterator[AgentMessage],
        context: grpc.aio.ServicerContext,
    ) -> AsyncIterator[HeadendMessage]:
        self.streams_started += 1
        try:
            session = await self._handshake(request_iterator, context)
        except grpc.aio.AbortError:
            raise
        except DATABASE_UNAVAILABLE:
            # The agent keeps buffering and retries with backoff.
            await context.abort(grpc.StatusCode.UNAVAILABLE, "headend database unavailable")
            raise AssertionError("unreachable") from None
        except Exception:
            # Never an exception's text (SQL, paths) to the client: the log has it.
            log.exception("agent_handshake_failed", peer=context.peer())
            await context.abort(grpc.StatusCode.INTERNAL, INTERNAL_MESSAGE)
            raise AssertionError("unreachable") from None
        try:
            last_seq = 0
            with contextlib.suppress(*DATABASE_UNAVAILABLE):  # informational only
                last_seq = await self._store.last_batch_seq(session.gateway_id)
            yield wire_session.welcome(session.session_id, datetime.now(UTC), last_seq)
            session.reader = asyncio.create_task(self._read(request_iterator, session))
            while True:
                msg = await session.outbox.get()
                if msg is None:
                    break
                yield msg
            if session.close_reason in END_STATUS:
                await context.abort(*END_STATUS[session.close_reason])
        except asyncio.CancelledError:
            session.cut = True  # grpc cancels the handler when the call is cut
            raise
        except grpc.aio.AbortError:
            raise
        except Exception:
            log.exception("agent_stream_failed", gateway=session.gateway_id)
            session.close(EndReason.HEADEND_ERROR)
            await context.abort(grpc.StatusCode.INTERNAL, INTERNAL_MESSAGE)
        finally:
            # Shielded: a cancel (the agent's channel closing) must not stop
            # the session being closed in the database half-way.
            await asyncio.shield(self._end(session))

    def _end(self, session: AgentSession) -> asyncio.Task[None]:
        """Ends the session, once, however the stream ended.

        Called from the handler's finally and from the RPC's done callback: when
        grpc cancels the handler while it is suspended at a `yield`, the
        generator's finally only runs whenever it is garbage collected, and the
        agent would show as connected until then.
        """
        if session.ending is None:
            session.ending = asyncio.create_task(self._finish(session))
            self._ending.add(session.ending)  # held until done (the loop keeps weak refs)
            session.ending.add_done_callback(self._ending.discard)
        return session.ending

    async def _finish(self, session: AgentSession) -> None:
        if session.reader is not None:
            session.reader.cancel()
            with contextlib.suppress(asyncio.CancelledError, Exception):
                await session.reader
        reason = session.end_reason
        session.close(reason)
        self._sessions.detach(session)
        with contextlib.suppress(Exception):
            await self._store.close_session(session.session_id, reason)
        log.info(
            "agent_disconnected",
            gateway=session.gateway_id,
            session=session.session_id,
            reason=reason.value,
        )

    def _rpc_done(self, session: AgentSession, context: grpc.aio.ServicerContext) -> None:
        if not context.done():  # ended without a status sent: the call was cut
            session.cut = True
        self._end(session)

    async def _handshake(
        self,
        request_iterator: AsyncIterator[AgentMessage],
        context: grpc.aio.ServicerContext,
    ) -> AgentSession:
        ident = await self._identify(context)
        try:
            first = await asyncio.wait_for(anext(request_iterator), HELLO_TIMEOUT_S)
        except (TimeoutError, StopAsyncIteration):
            await context.abort(grpc.StatusCode.INVALID_ARGUMENT, "hello: expected Hello first")
            raise AssertionError("unreachable") from None
        except DecodeError:
            await context.abort(
                grpc.StatusCode.INVALID_ARGUMENT,
                "hello: the first message is not a valid gridpilot.v1.AgentMessage",
            )
            raise AssertionError("unreachable") from None
        if first.WhichOneof("body") != "hello":
            await context.abort(grpc.StatusCode.INVALID_ARGUMENT, "hello: expected Hello first")
        hello = first.hello
        for name in ("gateway_id", "site_id"):
            if not getattr(hello, name):
                await context.abort(grpc.StatusCode.INVALID_ARGUMENT, f"hello.{name} is empty")
        try:
            # NUL or overlong: a clean refusal, not a database error
            wire_session.check_hello_text(hello)
        except ValidationFailed as exc:
            await context.abort(grpc.StatusCode.INVALID_ARGUMENT, exc.message)
        if ident is not None and hello.gateway_id != ident.gateway_id:
            # Identity comes from the certificate only; a Hello naming another
            # gateway is an impersonation attempt.
            message = (
                f"hello.gateway_id {hello.gateway_id!r} is not this certificate's gateway "
                f"{ident.gateway_id!r}"
            )
            await self._refuse(
                ident.gateway_id,
                "gateway.id_mismatch",
                hello.gateway_id,
                message,
                ident.fingerprint,
            )
            await context.abort(grpc.StatusCode.PERMISSION_DENIED, message)
        admission = await self._admit(ident, hello, context)
        try:
            assets = [
                wire_session.asset_from_pb(a, hello.site_id, i) for i, a in enumerate(hello.assets)
            ]
            ids = [a.asset_id for a in assets]
            if len(set(ids)) != len(ids):
                raise ValidationFailed("hello.assets has duplicate asset_id values")
            held = await self._store.register(
                hello.gateway_id,
                hello.site_id,
                hello.site_name or hello.site_id,
                hello.agent_version,
                assets,
                admission,
            )
        except ValidationFailed as exc:
            await context.abort(grpc.StatusCode.INVALID_ARGUMENT, exc.message)
        except Conflict as exc:
            await self._refuse(
                hello.gateway_id,
                "gateway.asset_claim_refused",
                ",".join(a.asset_id for a in hello.assets),
                exc.message,
            )
            await context.abort(grpc.StatusCode.PERMISSION_DENIED, exc.message)
        if held:
            await self._refuse(
                hello.gateway_id,
                "asset.held",
                ",".join(held),
                "held for an admin's approval (POST /api/v1/assets/{id}/approve): "
                "beyond the gateway's max_asset_kw for this site, or none is set",
            )
        session = AgentSession(
            session_id=str(uuid.uuid4()),
            gateway_id=hello.gateway_id,
            site_id=hello.site_id,
            peer=context.peer() or "",
            asset_ids=frozenset(a.asset_id for a in assets),
            fingerprint=ident.fingerprint if ident is not None else None,
            enrolled_only=admission.by_admin_only,
        )
        async with self._sessions.opening(session.gateway_id):
            ended = await self._store.open_session(
                session.session_id,
                session.gateway_id,
                session.site_id,
                self._headend_id,
                self._task_queue,
                session.peer,
                hello.agent_version,
            )
            self._sessions.attach(session)
        context.add_done_callback(lambda ctx: self._rpc_done(session, ctx))
        log.info(
            "agent_connected",
            gateway=session.gateway_id,
            site=session.site_id,
            session=session.session_id,
            peer=session.peer,
            assets=len(assets),
            superseded=ended,
        )
        return session

    async def _admit(
        self, ident: GatewayIdentity | None, hello: Hello, context: grpc.aio.ServicerContext
    ) -> Admission:
        """A site belongs to the gateways enrolled for it or whose certificate
        names it; a Hello for any other site is refused (and audited). In
        plain-text dev mode there is no certificate and no check."""
        if ident is None or self._enrollment is None:
            return OPEN
        if not ID_PATTERN.match(hello.site_id):
            # Enrollments only ever name such ids; this also keeps the
            # refusal's audit row small.
            await context.abort(
                grpc.StatusCode.INVALID_ARGUMENT,
                "hello.site_id is not a site id (1-64 letters, digits, '.', '_' or '-')",
            )
        admission = await self._enrollment.admission(hello.gateway_id, hello.site_id, ident.site_id)
        if not admission.enrolled:
            message = f"gateway {hello.gateway_id!r} is not enrolled for site {hello.site_id!r}"
            if ident.site_id is not None:
                message += f" (its certificate names site {ident.site_id!r})"
            else:
                message += (
                    f"; an admin enrolls it: gridpilot gateway enroll {hello.gateway_id} "
                    f"--site {hello.site_id}"
                )
            await self._refuse(hello.gateway_id, "gateway.site_refused", hello.site_id, message)
            await context.abort(grpc.StatusCode.PERMISSION_DENIED, message)
        return admission

    async def _identify(self, context: grpc.aio.ServicerContext) -> GatewayIdentity | None:
        """The gateway named by the client certificate (None in plain-text dev mode)."""
        if self._authority is None:
            return None
        found = await self._authority.identify(context.auth_context(), context.peer() or "")
        if isinstance(found, Refusal):
            await context.abort(found.code, found.message)
            raise AssertionError("unreachable")
        return found

    async def _refuse(
        self, gateway_id: str, action: str, target: str, reason: str, fingerprint: str = ""
    ) -> None:
        if self._authority is not None:
            await self._authority.refuse(
                gateway_actor(gateway_id), action, target, reason, fingerprint
            )
        else:
            log.warning(action, gateway=gateway_id, target=target, reason=reason)

    async def _read(
        self, request_iterator: AsyncIterator[AgentMessage], session: AgentSession
    ) -> None:
        messages = aiter(request_iterator)
        try:
            while True:
                try:
                    # Only the wait for the agent counts as its silence, not
                    # the time its messages wait for the ingest queue.
                    async with asyncio.timeout(self._silence_s):
                        msg = await anext(messages)
                except StopAsyncIteration:
                    session.close(EndReason.CLOSED)
                    return
                except TimeoutError:
                    log.warning(
                        "agent_unresponsive",
                        gateway=session.gateway_id,
                        session=session.session_id,
                        silent_s=self._silence_s,
                    )
                    session.close(EndReason.UNRESPONSIVE)
                    return
                kind = msg.WhichOneof("body")
                if kind == "telemetry":
                    await self._on_telemetry(session, msg.telemetry)
                elif kind == "dispatch_ack":
                    await self._on_ack(session, msg.dispatch_ack)
                elif kind == "local_dispatch":
                    if not await self._on_local_dispatch(session, msg.local_dispatch):
                        session.close(EndReason.LOCAL_DISPATCH_UNRECORDED)
                        return
                elif kind == "heartbeat":
                    self.edge_reports.update(session.gateway_id, msg.heartbeat)
                    if not await self._touch(session):
                        session.close(EndReason.SUPERSEDED)
                        return
        except SessionClosed:
            pass
        except DecodeError:
            log.warning("agent_message_invalid", gateway=session.gateway_id)
            session.close(EndReason.INVALID_MESSAGE)
        except Exception:
            log.exception("agent_stream_error", gateway=session.gateway_id)
            session.close(EndReason.HEADEND_ERROR)
        finally:
            session.close(session.close_reason or EndReason.CLOSED)

    async def _on_telemetry(self, session: AgentSession, batch: TelemetryBatch) -> None:
        received = datetime.now(UTC)  # the checks below use the time of receipt
        samples, known, seq = batch.samples, session.asset_ids, batch.batch_seq
        # Audited here, once per session and asset, not in the writer: a stream
        # naming foreign assets slows only itself and cannot flood the log.
        foreign = {s.asset_id for s in samples}.difference(known)
        for asset_id in sorted(foreign - session.foreign_audited):
            session.foreign_audited.add(asset_id)
            await self._refuse(
                session.gateway_id,
                "telemetry.foreign_asset_refused",
                clean_text(asset_id, 200),  # the audit row must be storable
                f"telemetry for asset {asset_id!r}, which is not bound to this gateway",
            )
        done: list[EncodedBatch] = []

        def encode() -> CopyRows:
            # Every check of the batch (unknown asset, future ts, NaN/inf, NUL...)
            # and the COPY rows in one pass (copyrows.py, the hot path). Called
            # by the writer, once, while its COPY is open.
            over = len(samples) > MAX_SAMPLES_PER_BATCH
            encoded = encode_batch(
                samples[:MAX_SAMPLES_PER_BATCH] if over else samples,
                known,
                received,
                received,
                self._skew,
            )
            for i in range(MAX_SAMPLES_PER_BATCH, len(samples)):
                encoded.rejections.append(f"{i}: over {MAX_SAMPLES_PER_BATCH} samples in one batch")
            self.rejected_samples += len(encoded.rejections)
            done.append(encoded)
            return encoded.rows

        async def send_ack() -> None:
            encoded = done[0]
            session.send_nowait(
                wire_telemetry.telemetry_ack(seq, encoded.rows.count, encoded.rejections)
            )

        # Waits while the ingest queue is full: the stream stops being read
        # and gRPC flow control pushes back on the agent.
        await self._pipeline.put(
            IngestBatch(session.gateway_id, seq, encode, send_ack, size=batch.ByteSize())
        )

    async def _on_local_dispatch(self, session: AgentSession, raw: LocalDispatch) -> bool:
        """Record a dispatch made on site, then confirm it to the agent. False
        when it could not be recorded now (database or Temporal down): the
        stream is then ended before the acks behind it, and the agent sends
        the report again on its next session."""
        try:
            inp = local_dispatch_input(raw, session.gateway_id, session.site_id, session.asset_ids)
        except LocalDispatchRefused as exc:
            target = clean_text(raw.dispatch_id, 200)  # the audit row must be storable
            await self._refuse(session.gateway_id, "dispatch.local_refused", target, exc.message)
            _confirm(session, raw.dispatch_id, refused=exc.message)
            return True
        if self._local_sink is None:
            log.warning("local_dispatch_not_recorded", gateway=session.gateway_id)
            return True
        try:
            await self._local_sink(inp, gateway_actor(session.gateway_id))
        except Exception as exc:
            log.warning(
                "local_dispatch_unrecorded",
                gateway=session.gateway_id,
                dispatch_id=inp.dispatch_id,
                error=str(exc),
            )
            return False
        log.info(
            "local_dispatch_recorded",
            gateway=session.gateway_id,
            dispatch_id=inp.dispatch_id,
            asset_id=inp.asset_id,
            p_kw=inp.p_kw,
            by=inp.submitted_by,
        )
        _confirm(session, inp.dispatch_id)
        return True

    async def _touch(self, session: AgentSession) -> bool:
        """False when the session was ended elsewhere. A database outage is not
        a reason to drop a healthy stream: its telemetry waits in the queue."""
        try:
            return await self._store.touch(session.session_id)
        except DATABASE_UNAVAILABLE:
            log.debug("session_touch_skipped", gateway=session.gateway_id, reason="database")
            return True

    async def _on_ack(self, session: AgentSession, raw: DispatchAck) -> None:
        """Take the agent's ack: signal it to its workflow (or keep it as a late
        ack), then confirm it (DispatchAckReceived), so the agent stops
        re-sending it. With the database down the stream ends unconfirmed."""
        problem = wire_dispatch.ack_problem(raw)
        if problem is not None:  # refused, or it is re-sent forever
            log.warning("bad_ack_ignored", gateway=session.gateway_id, problem=problem)
            _received(session, raw, refused=problem)
            return
        # The dispatch's asset (from the database, not the message) must be
        # one this gateway speaks for; otherwise nothing reaches the workflow.
        try:
            target = (
                await self._dispatches.dispatch_target(raw.dispatch_id) if raw.dispatch_id else None
            )
        except DATABASE_UNAVAILABLE:
            # Not taken, not confirmed: end the stream, so the agent writes it
            # again on its next session (once the database answers again).
            log.warning("ack_not_taken", gateway=session.gateway_id, reason="database unavailable")
            session.close(EndReason.DATABASE_UNAVAILABLE)
            raise SessionClosed("database unavailable") from None
        owner = target.asset_id if target is not None else None
        if owner not in session.asset_ids or (raw.asset_id and raw.asset_id != owner):
            why = (
                f"ack for dispatch {raw.dispatch_id!r} (asset {owner or raw.asset_id!r}), "
                "which is not this gateway's"
            )
            _received(session, raw, refused=why)
            if f"ack:{raw.dispatch_id}" in session.foreign_audited:
                return
            session.foreign_audited.add(f"ack:{raw.dispatch_id}")
            await self._refuse(
                session.gateway_id, "dispatch_ack.foreign_refused", raw.dispatch_id, why
            )
            return
        ack = wire_dispatch.agent_ack(raw, session.gateway_id, datetime.now(UTC))
        if ack is None:
            log.warning("bad_ack_ignored", gateway=session.gateway_id, ack=str(raw))
            _received(session, raw, refused="dispatch_ack.state is not a known state")
            return
        assert target is not None  # an unknown dispatch has no owner: refused above
        if target.state.terminal:
            await self._late(ack)
            _received(session, raw)
        else:  # confirmed once Temporal has it (it may wait for Temporal)
            await self._ack_sink(ack, lambda: _received(session, raw))


def _received(session: AgentSession, raw: DispatchAck, refused: str = "") -> None:
    """Tell the agent this ack was taken (or refused): it stops re-sending it.
    A closed session is no matter: the agent re-sends it on its next one."""
    with contextlib.suppress(SessionClosed):
        session.send_nowait(wire_dispatch.ack_received(raw, refused))


def late_ack_recorder(store: DispatchStore) -> Callable[[AgentAck], Awaitable[None]]:
    """Keeps an ack that came after its dispatch ended: it changes nothing, but
    belongs in the record (lost, and logged, only while the database is down)."""

    async def record(ack: AgentAck) -> None:
        log.info(
            "late_dispatch_ack",
            dispatch_id=ack.dispatch_id,
            state=ack.state,
            reason=ack.reason,
            gateway=ack.gateway_id,
        )
        try:
            await store.record_late_ack(ack)
        except DATABASE_UNAVAILABLE:
            log.warning("late_dispatch_ack_not_kept", dispatch_id=ack.dispatch_id)

    return record


def _confirm(session: AgentSession, dispatch_id: str, refused: str = "") -> None:
    """Tell the agent to stop re-sending this local dispatch report."""
    session.send_nowait(wire_dispatch.local_dispatch_recorded(dispatch_id, refused))
