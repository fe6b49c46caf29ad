"""Temporal client and workers of a headend process."""

from __future__ import annotations

import asyncio
import re
import time
from datetime import timedelta
from pathlib import Path

import structlog
from temporalio.api.workflowservice.v1 import GetSystemInfoRequest
from temporalio.client import Client, Interceptor
from temporalio.contrib.pydantic import pydantic_data_converter
from temporalio.service import TLSConfig
from temporalio.worker import Worker
from temporalio.worker.workflow_sandbox import SandboxedWorkflowRunner, SandboxRestrictions

from gridpilot.activities.delivery import DeliveryActivities
from gridpilot.activities.outcome import request_own_cancel
from gridpilot.activities.records import RecordActivities
from gridpilot.ingest.sessions import SessionRegistry
from gridpilot.store.dispatches import DispatchStore
from gridpilot.workflows.dispatch import DispatchWorkflow
from gridpilot.workflows.site import SiteDispatchWorkflow

from .settings import Settings

log = structlog.get_logger(__name__)

WORKFLOWS = [DispatchWorkflow, SiteDispatchWorkflow]
_TRY_TIMEOUT_S = 5.0
_MAX_DELAY_S = 5.0
_GRACE = timedelta(seconds=5)
PROBE_TIMEOUT = timedelta(seconds=2)


def interceptors(tracing: bool) -> list[Interceptor]:
    """The client's interceptors (its workers inherit them; a Replayer must use
    the same): with tracing, Temporal's OpenTelemetry one, which carries the
    trace from the start and each signal into the workflow and its activities."""
    if not tracing:
        return []
    from temporalio.contrib.opentelemetry import TracingInterceptor

    return [TracingInterceptor()]


def workflow_runner() -> SandboxedWorkflowRunner:
    """The sandbox of the workflows: OpenTelemetry passes through (the tracing
    interceptor's spans live in the worker, not in each run's re-imports)."""
    return SandboxedWorkflowRunner(
        restrictions=SandboxRestrictions.default.with_passthrough_modules("opentelemetry")
    )


def tls_config(
    cert_file: Path | None,
    key_file: Path | None,
    ca_file: Path | None,
    server_name: str | None,
) -> TLSConfig:
    """TLS (and with a certificate, mTLS) to Temporal, e.g. Temporal Cloud;
    an unreadable file is a ValueError naming its setting."""

    def read(path: Path | None, setting: str) -> bytes | None:
        if path is None:
            return None
        try:
            return path.read_bytes()
        except OSError as exc:
            raise ValueError(
                f"GRIDPILOT_TEMPORAL_TLS_{setting}: cannot read {path}: {exc.strerror}"
            ) from None

    return TLSConfig(
        server_root_ca_cert=read(ca_file, "CA_FILE"),
        client_cert=read(cert_file, "CERT_FILE"),
        client_private_key=read(key_file, "KEY_FILE"),
        domain=server_name,
    )


def client_tls(settings: Settings) -> TLSConfig | bool:
    """The headend's TLS to Temporal from its settings (False: plain text)."""
    s = settings
    if not s.temporal_uses_tls:
        return False
    return tls_config(
        s.temporal_tls_cert_file,
        s.temporal_tls_key_file,
        s.temporal_tls_ca_file,
        s.temporal_tls_server_name,
    )


async def connect(
    address: str,
    namespace: str,
    wait_s: float = 30.0,
    *,
    setting: str = "GRIDPILOT_TEMPORAL_ADDRESS",
    tracing: bool = False,
    tls: TLSConfig | bool = False,
) -> Client:
    """Connect, retrying (with backoff, one log line per failed try) while
    Temporal starts; after wait_s a ConnectionError in one line that names the
    setting and what was tried."""
    started = time.monotonic()
    attempt = 0
    while True:
        attempt += 1
        left = wait_s - (time.monotonic() - started)
        try:
            # A black-holed address must not hang one try past the whole wait.
            return await asyncio.wait_for(
                Client.connect(
                    address,
                    namespace=namespace,
                    data_converter=pydantic_data_converter,
                    interceptors=interceptors(tracing),
                    tls=tls,
                ),
                timeout=max(min(_TRY_TIMEOUT_S, left), 1.0),
            )
        except Exception as exc:
            error = "no answer" if isinstance(exc, TimeoutError) else _short(exc)
            left = wait_s - (time.monotonic() - started)
            if left <= 0:
                raise ConnectionError(
                    f"Temporal is not reachable at {setting}={address} (namespace {namespace}"
                    f"{', TLS' if tls else ''}): "
                    f"{error}; tried {attempt} times in {wait_s:g} s"
                ) from None
            delay = min(2.0 ** (attempt - 1), _MAX_DELAY_S, left)
            log.warning(
                "temporal_unreachable",
                setting=setting,
                address=address,
                attempt=attempt,
                error=error,
                retry_in_s=round(delay, 1),
            )
            await asyncio.sleep(delay)


def _short(exc: BaseException) -> str:
    """The gist of a connect error (the SDK's is a nested transport dump)."""
    text = str(exc)
    found = re.findall(r'message: "([^"]+)"', text)
    if found:
        return found[-1]
    line = text.splitlines()[0] if text else type(exc).__name__
    return line if len(line) <= 160 else line[:157] + "..."


async def probe(client: Client, within: timedelta = PROBE_TIMEOUT) -> str:
    """``"ok"`` when the Temporal frontend answers a cheap call within
    ``within``, else why not (for /readyz). A connected client says nothing
    about now: its channel outlives the server, and calls wait for it."""
    try:
        await asyncio.wait_for(
            client.workflow_service.get_system_info(
                GetSystemInfoRequest(), retry=False, timeout=within
            ),
            within.total_seconds() + 0.5,
        )
    except TimeoutError:
        return f"unreachable: no answer in {within.total_seconds():g} s"
    except Exception as exc:
        return f"unreachable: {type(exc).__name__}: {getattr(exc, 'message', '') or exc}"
    return "ok"


def dispatch_worker(client: Client, task_queue: str, store: DispatchStore) -> Worker:
    """Workflows and database activities, on the shared task queue."""
    records = RecordActivities(store)
    return Worker(
        client,
        task_queue=task_queue,
        workflows=WORKFLOWS,
        workflow_runner=workflow_runner(),
        activities=[
            records.record_dispatch,
            records.record_submission,
            records.record_transition,
            records.record_transitions,
            records.record_allocation,
            records.record_late_ack,
            records.resolve_route,
            records.load_split_inputs,
            records.claim_asset,
            request_own_cancel,
        ],
        graceful_shutdown_timeout=_GRACE,
    )


def delivery_worker(
    client: Client, task_queue: str, sessions: SessionRegistry, store: DispatchStore
) -> Worker:
    """Delivery activities, on this replica's own task queue."""
    delivery = DeliveryActivities(sessions, store)
    return Worker(
        client,
        task_queue=task_queue,
        activities=[
            delivery.deliver_setpoint,
            delivery.deliver_setpoint_sent,
            delivery.deliver_release,
        ],
        graceful_shutdown_timeout=_GRACE,
    )
