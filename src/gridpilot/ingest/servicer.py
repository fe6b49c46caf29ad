"""The AgentGateway servicer: one bidirectional stream per edge agent."""

from __future__ import annotations

import asyncio
import contextlib
import uuid
from collections.abc import AsyncIterator, Awaitable, Callable
from datetime import UTC, datetime, timedelta

import grpc
import structlog

from gridpilot.core.errors import Conflict, ValidationFailed
from gridpilot.core.telemetry import sample_problem
from gridpilot.schema.pb import agent_pb2 as pb
from gridpilot.schema.pb import agent_pb2_grpc as pb_grpc
from gridpilot.workflows.models import AgentAck

from .convert import ACK_STATE_FROM_PB, asset_from_pb, reason_from_pb, sample_from_pb, ts_to_pb
from .pipeline import IngestBatch, TelemetryPipeline
from .registry import GatewayStore
from .sessions import AgentSession, SessionClosed, SessionRegistry

log = structlog.get_logger(__name__)

HELLO_TIMEOUT_S = 10.0
MAX_SAMPLES_PER_BATCH = 5000
AckSink = Callable[[AgentAck], Awaitable[None]]


class AgentGatewayServicer(pb_grpc.AgentGatewayServicer):
    def __init__(
        self,
        store: GatewayStore,
        sessions: SessionRegistry,
        pipeline: TelemetryPipeline,
        ack_sink: AckSink,
        headend_id: str,
        task_queue: str,
        max_future_skew: timedelta = timedelta(minutes=5),
    ) -> None:
        self._store = store
        self._sessions = sessions
        self._pipeline = pipeline
        self._ack_sink = ack_sink
        self._headend_id = headend_id
        self._task_queue = task_queue
        self._skew = max_future_skew
        self.rejected_samples = 0

    async def Connect(
        self,
        request_iterator: AsyncIterator[pb.AgentMessage],
        context: grpc.aio.ServicerContext,
    ) -> AsyncIterator[pb.HeadendMessage]:
        session = await self._handshake(request_iterator, context)
        yield pb.HeadendMessage(
            welcome=pb.Welcome(
                session_id=session.session_id,
                server_time=ts_to_pb(datetime.now(UTC)),
                last_acked_batch_seq=await self._store.last_batch_seq(session.gateway_id),
            )
        )
        reader = asyncio.create_task(self._read(request_iterator, session))
        try:
            while True:
                msg = await session.outbox.get()
                if msg is None:
                    break
                yield msg
        finally:
            reader.cancel()
            with contextlib.suppress(asyncio.CancelledError, Exception):
                await reader
            session.close(session.close_reason or "stream_ended")
            self._sessions.detach(session)
            with contextlib.suppress(Exception):
                await self._store.close_session(session.session_id, session.close_reason or "")
            log.info(
                "agent_disconnected",
                gateway=session.gateway_id,
                session=session.session_id,
                reason=session.close_reason,
            )

    async def _handshake(
        self,
        request_iterator: AsyncIterator[pb.AgentMessage],
        context: grpc.aio.ServicerContext,
    ) -> AgentSession:
        try:
            first = await asyncio.wait_for(anext(request_iterator), HELLO_TIMEOUT_S)
        except (TimeoutError, StopAsyncIteration):
            await context.abort(grpc.StatusCode.INVALID_ARGUMENT, "hello: expected Hello first")
            raise AssertionError("unreachable") from None
        if first.WhichOneof("body") != "hello":
            await context.abort(grpc.StatusCode.INVALID_ARGUMENT, "hello: expected Hello first")
        hello = first.hello
        for name in ("gateway_id", "site_id"):
            if not getattr(hello, name):
                await context.abort(grpc.StatusCode.INVALID_ARGUMENT, f"hello.{name} is empty")
        try:
            assets = [asset_from_pb(a, hello.site_id, i) for i, a in enumerate(hello.assets)]
            ids = [a.asset_id for a in assets]
            if len(set(ids)) != len(ids):
                raise ValidationFailed("hello.assets has duplicate asset_id values")
            await self._store.register(
                hello.gateway_id,
                hello.site_id,
                hello.site_name or hello.site_id,
                hello.agent_version,
                assets,
            )
        except ValidationFailed as exc:
            await context.abort(grpc.StatusCode.INVALID_ARGUMENT, exc.message)
        except Conflict as exc:
            log.warning("agent_claim_refused", gateway=hello.gateway_id, error=exc.message)
            await context.abort(grpc.StatusCode.PERMISSION_DENIED, exc.message)
        session = AgentSession(
            session_id=str(uuid.uuid4()),
            gateway_id=hello.gateway_id,
            site_id=hello.site_id,
            peer=context.peer() or "",
            asset_ids=frozenset(a.asset_id for a in assets),
        )
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

    async def _read(
        self, request_iterator: AsyncIterator[pb.AgentMessage], session: AgentSession
    ) -> None:
        try:
            async for msg in request_iterator:
                kind = msg.WhichOneof("body")
                if kind == "telemetry":
                    await self._on_telemetry(session, msg.telemetry)
                elif kind == "dispatch_ack":
                    await self._on_ack(session, msg.dispatch_ack)
                elif kind == "heartbeat":
                    if not await self._store.touch(session.session_id):
                        session.close("superseded")
                        return
        except SessionClosed:
            pass
        except Exception as exc:
            log.warning("agent_stream_error", gateway=session.gateway_id, error=str(exc))
        finally:
            session.close(session.close_reason or "agent_closed")

    async def _on_telemetry(self, session: AgentSession, batch: pb.TelemetryBatch) -> None:
        now = datetime.now(UTC)
        accepted, rejections = [], []
        for i, raw in enumerate(batch.samples[:MAX_SAMPLES_PER_BATCH]):
            if raw.asset_id not in session.asset_ids:
                rejections.append(f"{i}: asset {raw.asset_id!r} is not one of this gateway's")
                continue
            sample = sample_from_pb(raw)
            problem = sample_problem(sample, now, self._skew)
            if problem is not None:
                rejections.append(f"{i}: {problem}")
                continue
            accepted.append(sample)
        for i in range(MAX_SAMPLES_PER_BATCH, len(batch.samples)):
            rejections.append(f"{i}: over {MAX_SAMPLES_PER_BATCH} samples in one batch")
        self.rejected_samples += len(rejections)
        ack = pb.HeadendMessage(
            telemetry_ack=pb.TelemetryAck(
                batch_seq=batch.batch_seq,
                accepted=len(accepted),
                rejected=len(rejections),
                rejections=rejections[:100],
            )
        )

        async def send_ack() -> None:
            session.send_nowait(ack)

        # Waits while the ingest queue is full: the stream stops being read
        # and gRPC flow control pushes back on the agent.
        await self._pipeline.put(
            IngestBatch(session.gateway_id, batch.batch_seq, accepted, send_ack)
        )

    async def _on_ack(self, session: AgentSession, raw: pb.DispatchAck) -> None:
        if raw.asset_id and raw.asset_id not in session.asset_ids:
            log.warning(
                "foreign_ack_refused", gateway=session.gateway_id, dispatch_id=raw.dispatch_id
            )
            return
        state = ACK_STATE_FROM_PB.get(raw.state)
        if state is None or not raw.dispatch_id:
            log.warning("bad_ack_ignored", gateway=session.gateway_id, ack=str(raw))
            return
        ack = AgentAck(
            dispatch_id=raw.dispatch_id,
            state=state,
            at=datetime.fromtimestamp(raw.time.seconds + raw.time.nanos / 1e9, tz=UTC)
            if raw.HasField("time")
            else datetime.now(UTC),
            reason=reason_from_pb(raw.reason),
            detail=raw.detail,
            asset_id=raw.asset_id,
            applied_p_kw=raw.applied_p_kw if raw.HasField("applied_p_kw") else None,
            gateway_id=session.gateway_id,
        )
        await self._ack_sink(ack)
