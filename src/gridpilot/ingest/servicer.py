"""The AgentGateway servicer: one bidirectional stream per edge agent.

It runs the stream (the handshake, Welcome, the outbox to the agent, the
reader of the agent's messages) and ends its session however it ended; each
kind of message goes to its own intake: the Hello to ``handshake``, telemetry
to the ingest queue (``pipeline``), dispatch acks to ``acks``, local dispatch
reports to ``local_dispatches``, heartbeats to ``edge_reports`` and the
session row.
"""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import AsyncIterator
from datetime import UTC, datetime, timedelta

import grpc
import structlog
from google.protobuf.message import DecodeError

from gridpilot.core.quotas import Quotas
from gridpilot.core.sessions import EndReason
from gridpilot.core.usage import UsageMeter
from gridpilot.schema.db import DATABASE_UNAVAILABLE
from gridpilot.store.dispatches import DispatchStore
from gridpilot.wire import session as wire_session
from gridpilot.wire import telemetry as wire_telemetry
from gridpilot.wire.messages import AgentMessage, HeadendMessage, TelemetryBatch
from gridpilot.wire.service import AgentGatewayServicer as AgentGatewayServicerBase
from gridpilot.wire.text import clean_text

from .acks import AckIntake, AckSink
from .copyrows import CopyRows, EncodedBatch, encode_batch
from .edge_reports import EdgeBufferReport, EdgeBufferReports, StreamCounts
from .enrollment import EnrollmentStore
from .guard import GatewayAuthority, refuse_gateway
from .handshake import Handshake
from .local_dispatches import LocalDispatchIntake, LocalSink
from .pipeline import IngestBatch, TelemetryPipeline
from .quotas import admit_telemetry, meter_batch
from .registry import GatewayStore, Touch
from .sessions import AgentSession, SessionClosed, SessionRegistry
from .touches import TouchBatcher

log = structlog.get_logger(__name__)

INTERNAL_MESSAGE = "internal error in the headend (logged there); retry later"
MAX_SAMPLES_PER_BATCH = 5000
# The status a stream ends with, by the reason the headend ended it (the
# others end with OK: superseded, closed, or nobody left to tell).
END_STATUS: dict[EndReason, tuple[grpc.StatusCode, str]] = {
    EndReason.REVOKED: (grpc.StatusCode.UNAUTHENTICATED, "client certificate has been revoked"),
    EndReason.UNENROLLED: (
        grpc.StatusCode.PERMISSION_DENIED,
        "gateway is no longer enrolled for this site; see: gridpilot gateway enroll",
    ),
    EndReason.TENANT_SUSPENDED: (
        grpc.StatusCode.PERMISSION_DENIED,
        "the gateway's tenant is suspended",
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
    EndReason.QUOTA_EXCEEDED: (
        grpc.StatusCode.RESOURCE_EXHAUSTED,
        "quota telemetry_samples_per_s exceeded; the batch was not acked: resend it",
    ),
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
        quotas: Quotas | None = None,
        usage: UsageMeter | None = None,
    ) -> None:
        self._store = store
        self._quotas = quotas
        self._usage = usage
        self._touches = TouchBatcher(store)
        self._silence_s = silence_s  # GRIDPILOT_AGENT_SILENCE_S
        self._sessions = sessions
        self._pipeline = pipeline
        self._handshake = Handshake(
            store, sessions, headend_id, task_queue, authority, enrollment, quotas
        )
        self._acks = AckIntake(dispatches, ack_sink, authority)
        self._local = LocalDispatchIntake(local_sink, authority)
        self._skew = max_future_skew
        self.rejected_samples = 0
        self.edge_reports = EdgeBufferReports()
        self.counts = StreamCounts()
        self._authority = authority
        self.streams_started = 0  # Connect calls that reached the servicer (after TLS)
        self._held: set[asyncio.Task[None]] = set()  # see _hold

    async def Connect(
        self,
        request_iterator: AsyncIterator[AgentMessage],
        context: grpc.aio.ServicerContext,
    ) -> AsyncIterator[HeadendMessage]:
        self.streams_started += 1
        try:
            session = await self._handshake.open(request_iterator, context)
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
        self.counts.connects[session.site_id] += 1
        context.add_done_callback(lambda ctx: self._rpc_done(session, ctx))
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
                code, message = END_STATUS[session.close_reason]
                await context.abort(code, session.end_detail or message)
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
            session.ending = self._hold(asyncio.create_task(self._finish(session)))
        return session.ending

    async def _finish(self, session: AgentSession) -> None:
        if session.reader is not None:
            session.reader.cancel()
            with contextlib.suppress(asyncio.CancelledError, Exception):
                await session.reader
        reason = session.end_reason
        session.close(reason)
        self._sessions.detach(session)
        self.counts.disconnects[session.site_id, reason.value] += 1
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
                    if not await self._on_telemetry(session, msg.telemetry):
                        session.close(EndReason.QUOTA_EXCEEDED)
                        return
                elif kind == "dispatch_ack":
                    await self._acks.take_soon(session, msg.dispatch_ack)
                elif kind == "local_dispatch":
                    if not await self._local.take(session, msg.local_dispatch):
                        session.close(EndReason.LOCAL_DISPATCH_UNRECORDED)
                        return
                elif kind == "heartbeat":
                    report = self.edge_reports.update(session.gateway_id, msg.heartbeat)
                    self._touch_soon(session, report)
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

    async def _on_telemetry(self, session: AgentSession, batch: TelemetryBatch) -> bool:
        """Queue the batch for the writer (which acks it once committed); False:
        over the gateway's quota, refused before it was queued (never acked)."""
        samples, known, seq = batch.samples, session.asset_ids, batch.batch_seq
        if not await admit_telemetry(self._quotas, session, len(samples)):
            return False
        received = datetime.now(UTC)  # the checks below use the time of receipt
        self.counts.batches[session.site_id] += 1
        self.counts.samples[session.site_id] += len(samples)
        # Audited here, once per session and asset, not in the writer: a stream
        # naming foreign assets slows only itself and cannot flood the log.
        foreign = {s.asset_id for s in samples}.difference(known)
        for asset_id in sorted(foreign - session.foreign_audited):
            session.foreign_audited.add(asset_id)
            await refuse_gateway(
                self._authority,
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
            if encoded.rejections:
                self.rejected_samples += len(encoded.rejections)
                self.counts.rejections(session.site_id, encoded.rejections)
                session.rejected_pending += len(encoded.rejections)
                session.last_rejection = encoded.rejections[-1].partition(": ")[2]
            done.append(encoded)
            return encoded.rows

        async def send_ack() -> None:
            encoded = done[0]
            if self._usage is not None and encoded.rows.count:  # committed: metered
                meter_batch(self._usage, session.tenant_id, received, encoded.rows)
            session.send_nowait(
                wire_telemetry.telemetry_ack(seq, encoded.rows.count, encoded.rejections)
            )

        # Waits while the ingest queue is full: the stream stops being read
        # and gRPC flow control pushes back on the agent.
        await self._pipeline.put(
            IngestBatch(session.gateway_id, seq, encode, send_ack, size=batch.ByteSize())
        )
        return True

    def _touch_soon(self, session: AgentSession, report: EdgeBufferReport) -> None:
        """Record the heartbeat in the replica's next batch (ingest.touches),
        without holding up the stream's next message (an ack, say); a session
        ended elsewhere is closed when the batch says so."""

        async def touch() -> None:
            if not await self._touch(session, report):
                session.close(EndReason.SUPERSEDED)

        self._hold(asyncio.create_task(touch()))

    def _hold(self, task: asyncio.Task[None]) -> asyncio.Task[None]:
        """Keep a background task referenced until it is done (the event loop
        holds only weak references to its tasks)."""
        self._held.add(task)
        task.add_done_callback(self._held.discard)
        return task

    async def _touch(self, session: AgentSession, report: EdgeBufferReport) -> bool:
        """False when the session was ended elsewhere. A database outage is not
        a reason to drop a healthy stream: its telemetry waits in the queue."""
        rejected = session.rejected_pending
        try:
            live = await self._touches.touch(
                Touch(session.session_id, report, rejected, session.last_rejection)
            )
            session.rejected_pending -= rejected
            return live
        except DATABASE_UNAVAILABLE:
            log.debug("session_touch_skipped", gateway=session.gateway_id, reason="database")
            return True
