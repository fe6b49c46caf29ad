"""The headend's composition root: every part of the process is wired here."""

from __future__ import annotations

import asyncio
import contextlib
import signal
from collections.abc import Awaitable
from datetime import timedelta
from typing import Any

import grpc
import structlog
import uvicorn
from sqlalchemy.ext.asyncio import AsyncEngine
from temporalio.client import Client

from gridpilot.api.admin import SecurityDeps
from gridpilot.api.app import ApiDeps, create_app
from gridpilot.api.auth import AuthSettings
from gridpilot.api.dispatch_service import DispatchOptions, DispatchService
from gridpilot.api.pages import workflow_url
from gridpilot.api.retention import RetentionDefaults
from gridpilot.core.quotas import Quotas
from gridpilot.core.sessions import EndReason
from gridpilot.core.usage import UsageMeter
from gridpilot.ingest.acks import TemporalAckSink, late_ack_recorder
from gridpilot.ingest.enrollment import EnrollmentStore
from gridpilot.ingest.guard import GatewayAuthority, SessionGuard
from gridpilot.ingest.metrics import IngestCollector, metrics_registry
from gridpilot.ingest.onboarding import GatewayOnboarding
from gridpilot.ingest.pipeline import IngestBatch, TelemetryPipeline
from gridpilot.ingest.queue import MemoryTelemetryQueue
from gridpilot.ingest.quotas import QuotaCollector
from gridpilot.ingest.registry import GatewayStore
from gridpilot.ingest.servicer import AgentGatewayServicer
from gridpilot.ingest.sessions import SessionRegistry
from gridpilot.schema import db, tenancy
from gridpilot.security.audit import AuditLog
from gridpilot.security.authn import Authenticator
from gridpilot.security.certs import CertificateRegistry
from gridpilot.security.enroll_tokens import EnrollmentTokens
from gridpilot.security.tenants import TenantStore
from gridpilot.security.tokens import TokenStore
from gridpilot.store.dispatches import DispatchStore
from gridpilot.wire.service import add_AgentGatewayServicer_to_server

from . import temporal
from .credentials import (
    HeadendError,
    enrollment_ca,
    evidence_signer,
    grpc_credentials,
    jwt_verifier,
)
from .database_prep import prepare_database
from .fleet_metrics import FleetCollector
from .housekeeping import audit_head_log, chores, flush_usage
from .settings import Settings

log = structlog.get_logger(__name__)

# Keepalive that tolerates agents behind NATs pinging every 30 s.
GRPC_SERVER_OPTIONS = [
    ("grpc.keepalive_time_ms", 60_000),
    ("grpc.keepalive_timeout_ms", 20_000),
    ("grpc.keepalive_permit_without_calls", 1),
    ("grpc.http2.min_recv_ping_interval_without_data_ms", 20_000),
    ("grpc.http2.max_ping_strikes", 0),
    ("grpc.max_receive_message_length", 8 * 1024 * 1024),
]


# Probes and scrapes: a span each would drown the dispatches' traces.
UNTRACED_URLS = "healthz,readyz,metrics,console/assets"


class Headend:
    def __init__(self, settings: Settings, *, tracing: bool = False) -> None:
        self.settings = settings
        self.tracing = tracing  # an SDK tracer provider is installed (ops.tracing)
        self.engine: AsyncEngine = db.async_engine(settings.database_url)
        self.sessions = SessionRegistry()
        self.store = GatewayStore(self.engine)
        self.dispatches = DispatchStore(self.engine)
        self.pipeline = TelemetryPipeline(
            settings.database_url,
            MemoryTelemetryQueue[IngestBatch](settings.telemetry_queue_bytes),
            trace_ratio=settings.trace_telemetry_ratio,
        )
        self.servicer: AgentGatewayServicer | None = None
        self.guard: SessionGuard | None = None
        self.audit = AuditLog(self.engine)
        self.certs = CertificateRegistry(self.engine, self.audit)
        self.tokens = TokenStore(self.engine, self.audit)
        self.tenants = TenantStore(self.engine, self.audit)
        self.enrollment = EnrollmentStore(self.engine, self.audit)
        self.onboarding = GatewayOnboarding(
            self.audit,
            EnrollmentTokens(self.engine, self.audit),
            self.enrollment,
            self.certs,
            enrollment_ca(settings),
            settings.gateway_cert_days,
            settings.enroll_token_ttl_s,
        )
        self.quotas = Quotas(*settings.quota_limits)
        self.usage = UsageMeter()  # what this process counts, flushed by chores()
        self.client: Client | None = None
        self.acks: TemporalAckSink | None = None
        self._stop = asyncio.Event()

    def stop(self) -> None:
        self._stop.set()

    async def _readiness(self) -> dict[str, Any]:
        acks = self.acks
        temporal_state = "not connected"
        if self.client is not None:
            # Asked on every /readyz: submits and cancels need Temporal now.
            temporal_state = await temporal.probe(self.client)
        if acks is not None and not acks.temporal_available:
            waiting = f"{acks.waiting} agent acks waiting"
            temporal_state = (
                f"unreachable: {waiting}"
                if temporal_state == "ok"
                else f"{temporal_state}; {waiting}"
            )
        return {
            "temporal": temporal_state,
            "telemetry_writer": "ok" if self.pipeline.stats.db_available else "retrying",
        }

    async def run(self) -> None:
        # Every task this spawns (gRPC, ingest, the worker, the API server)
        # works for all tenants unless it says otherwise: the auth middleware
        # narrows each request to its principal's tenant (schema/tenancy.py).
        tenancy.enter_scope(tenancy.SYSTEM)
        s = self.settings
        credentials = grpc_credentials(s) if s.has_role("grpc") else None
        await asyncio.to_thread(prepare_database, s)
        await self.store.close_headend_sessions(s.headend_id, EndReason.HEADEND_RESTARTED)
        try:
            tls = temporal.client_tls(s)
        except ValueError as bad:
            raise HeadendError(str(bad)) from None
        self.client = client = await temporal.connect(
            s.temporal_address,
            s.temporal_namespace,
            s.temporal_connect_timeout_s,
            tracing=self.tracing,
            tls=tls,
        )
        # Agents' dispatch acks → workflows; they wait (in order) while Temporal is down.
        self.acks = acks = TemporalAckSink(self.client, late_ack_recorder(self.dispatches))
        tasks: list[asyncio.Task[Any]] = []

        def spawn(coro: Awaitable[Any], name: str) -> None:
            tasks.append(asyncio.create_task(coro, name=name))  # type: ignore[arg-type]

        # The API's dispatches, and the local ones agents report over gRPC.
        service = DispatchService(
            self.engine,
            self.client,
            DispatchOptions(
                task_queue=s.task_queue,
                delivery_timeout=timedelta(seconds=s.delivery_timeout_s),
                ack_timeout_s=s.ack_timeout_s,
            ),
            audit=self.audit,
        )
        grpc_server: grpc.aio.Server | None = None
        workers = []
        if s.has_role("worker"):
            workers.append(temporal.dispatch_worker(self.client, s.task_queue, self.dispatches))
        if s.has_role("grpc"):
            workers.append(
                temporal.delivery_worker(
                    self.client, s.headend_task_queue, self.sessions, self.dispatches
                )
            )
            spawn(self.pipeline.run(), "telemetry-writer")
            spawn(acks.run(), "dispatch-acks")
            grpc_server = grpc.aio.server(options=GRPC_SERVER_OPTIONS)
            self.servicer = AgentGatewayServicer(
                self.store,
                self.dispatches,
                self.sessions,
                self.pipeline,
                acks,
                s.headend_id,
                s.headend_task_queue,
                timedelta(seconds=s.max_future_skew_s),
                silence_s=s.agent_silence_s,
                authority=GatewayAuthority(
                    self.certs, self.audit, None if credentials is None else s.trust_domain
                ),
                local_sink=service.record_local,
                enrollment=self.enrollment,
                quotas=self.quotas,
                usage=self.usage,
            )
            add_AgentGatewayServicer_to_server(self.servicer, grpc_server)
            if credentials is None:
                grpc_server.add_insecure_port(s.grpc_listen)
                log.warning(
                    "GRPC_INSECURE_PLAINTEXT",
                    listen=s.grpc_listen,
                    note="GRIDPILOT_GRPC_INSECURE=true: no TLS and no client certificates; any "
                    "peer can claim any gateway id. For local development only.",
                )
            else:
                grpc_server.add_secure_port(s.grpc_listen, credentials)
            self.guard = guard = SessionGuard(
                self.engine, self.sessions, self.certs, s.revocation_check_s
            )
            spawn(guard.listen(s.database_url), "session-guard-listen")
            spawn(guard.run(), "session-guard")
            await grpc_server.start()
            log.info("grpc_listening", listen=s.grpc_listen)
        for w in workers:
            spawn(w.run(), f"worker-{w.task_queue}")
        api_server: uvicorn.Server | None = None
        api_task: asyncio.Task[Any] | None = None
        if s.has_role("api"):
            fleet = FleetCollector(
                self.engine,
                lambda: temporal.probe(client),
                {"grpc_server": s.grpc_tls_cert_file, "grpc_client_ca": s.grpc_client_ca_file},
            )
            app = create_app(
                ApiDeps(
                    engine=self.engine,
                    dispatches=service,
                    security=SecurityDeps(
                        self.audit,
                        self.tokens,
                        self.certs,
                        self.store,
                        self.enrollment,
                        self.onboarding,
                        self.tenants,
                        evidence_signer(s),
                    ),
                    auth=AuthSettings(
                        Authenticator(self.tokens, jwt_verifier(s), self.tenants),
                        self.audit,
                        s.metrics_public,
                    ),
                    readiness=self._readiness,
                    metrics=metrics_registry(
                        self.sessions,
                        self.pipeline,
                        IngestCollector(self.pipeline, lambda: self.servicer),
                        acks,
                        fleet,
                        QuotaCollector(self.quotas),
                    ),
                    metrics_refresh=fleet.refresh,
                    max_body_bytes=s.api_max_body_bytes,
                    trace_ui_url=s.trace_ui_url,
                    workflow_url=workflow_url(s.temporal_ui_url, s.temporal_namespace),
                    quotas=self.quotas,
                    usage=self.usage,
                    retention=RetentionDefaults(
                        s.telemetry_retention_days, s.audit_retention_min_days
                    ),
                )
            )
            if self.tracing:
                from opentelemetry.instrumentation.fastapi import FastAPIInstrumentor

                FastAPIInstrumentor.instrument_app(app, excluded_urls=UNTRACED_URLS)
            api_server = uvicorn.Server(
                uvicorn.Config(
                    app, host=s.api_host, port=s.api_port, log_level="warning", lifespan="off"
                )
            )
            # The headend owns SIGINT/SIGTERM (a clean, ordered shutdown).
            api_server.capture_signals = contextlib.nullcontext  # type: ignore[method-assign,assignment]
            spawn(api_server.serve(), "api")
            api_task = tasks[-1]
            log.info("api_listening", url=f"http://{s.api_host}:{s.api_port}")
        spawn(self._partition_maintenance(), "partitions")
        if s.audit_head_log_s > 0:
            spawn(audit_head_log(self.audit, s.audit_head_log_s), "audit-head")
        spawn(chores(s, self.engine, self.usage), "housekeeping")  # usage, retention
        log.info("headend_ready", headend_id=s.headend_id, roles=s.roles)
        stopper = asyncio.create_task(self._stop.wait())
        done, _ = await asyncio.wait([stopper, *tasks], return_when=asyncio.FIRST_COMPLETED)
        for task in done:
            if task is not stopper:
                exc = task.exception()
                error = "exited" if exc is None else f"{type(exc).__name__}: {exc}"
                log.error("headend_task_failed", task=task.get_name(), error=error)
        await self._shutdown(grpc_server, api_server, api_task, workers, tasks)

    async def _shutdown(
        self,
        grpc_server: grpc.aio.Server | None,
        api_server: uvicorn.Server | None,
        api_task: asyncio.Task[Any] | None,
        workers: list[Any],
        tasks: list[asyncio.Task[Any]],
    ) -> None:
        log.info("headend_stopping")
        if api_server is not None and api_task is not None:
            # Let uvicorn close its socket, so a restart can bind the port again.
            api_server.should_exit = True
            await asyncio.wait([api_task], timeout=5)
        self.sessions.close_all(EndReason.HEADEND_STOPPING)
        if grpc_server is not None:
            await grpc_server.stop(grace=2)
        for w in workers:
            with contextlib.suppress(Exception):
                await w.shutdown()
        for task in tasks:
            task.cancel()
        await asyncio.gather(*tasks, return_exceptions=True)
        with contextlib.suppress(Exception):
            await flush_usage(self.engine, self.usage)  # what this replica counted last
        with contextlib.suppress(Exception):
            await self.store.close_headend_sessions(
                self.settings.headend_id, EndReason.HEADEND_STOPPING
            )
        await self.engine.dispose()
        log.info("headend_stopped")

    async def _partition_maintenance(self) -> None:
        while True:
            await asyncio.sleep(3600)
            try:
                created = await asyncio.to_thread(
                    db.maintain_partitions,
                    self.settings.database_url,
                    self.settings.telemetry_policy,
                )
                if created:
                    log.info("telemetry_partitions_created", names=created)
            except Exception as exc:
                log.warning("telemetry_partitions_failed", error=str(exc))


async def serve(settings: Settings, *, tracing: bool = False) -> None:
    """Run a headend until SIGINT/SIGTERM (``tracing``: ops.tracing installed an SDK)."""
    headend = Headend(settings, tracing=tracing)
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGINT, signal.SIGTERM):
        with contextlib.suppress(NotImplementedError):
            loop.add_signal_handler(sig, headend.stop)
    await headend.run()
