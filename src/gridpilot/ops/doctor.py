"""``gridpilot doctor``: is the deployment healthy, and why is a site, an asset
or a dispatch not doing what it should (``ops.diagnose``).

Each check is one finding: ``ok``, ``warn`` or ``fail``, what was seen, and
the next thing to do. It reads the database and Temporal directly (the same
store queries as the API and /metrics), so it works while the API is down.
"""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Callable
from dataclasses import asdict, dataclass, field
from datetime import UTC, datetime, timedelta
from enum import StrEnum
from typing import Any

from sqlalchemy.ext.asyncio import AsyncEngine
from temporalio.api.enums.v1 import TaskQueueType
from temporalio.api.operatorservice.v1 import ListSearchAttributesRequest
from temporalio.api.taskqueue.v1 import TaskQueue
from temporalio.api.workflowservice.v1 import DescribeTaskQueueRequest
from temporalio.client import Client

from gridpilot.schema import db
from gridpilot.security.tls import certificate_expiry
from gridpilot.store import fleet
from gridpilot.workflows.constants import SEARCH_ATTRIBUTES

from . import temporal
from .settings import Settings

CALL_TIMEOUT = timedelta(seconds=5)
MAX_CLOCK_SKEW_S = 2.0
CERT_WARN = timedelta(days=14)


class Status(StrEnum):
    OK = "ok"
    WARN = "warn"
    FAIL = "fail"


@dataclass
class Finding:
    check: str
    status: Status
    detail: str
    next_step: str = ""


@dataclass
class Report:
    subject: str  # "deployment", "site S", "asset A", "dispatch D"
    findings: list[Finding] = field(default_factory=list)
    timeline: str = ""  # a dispatch's, as `gridpilot dispatch show` prints it

    def add(self, check: str, status: Status, detail: str, next_step: str = "") -> Finding:
        finding = Finding(check, status, detail, next_step)
        self.findings.append(finding)
        return finding

    @property
    def ok(self) -> bool:
        return all(f.status is not Status.FAIL for f in self.findings)

    @property
    def next_step(self) -> str:
        for status in (Status.FAIL, Status.WARN):
            for f in self.findings:
                if f.status is status and f.next_step:
                    return f.next_step
        return "nothing: every check passed"

    def as_json(self) -> dict[str, Any]:
        return {
            "subject": self.subject,
            "ok": self.ok,
            "findings": [asdict(f) for f in self.findings],
            "next_step": self.next_step,
            "timeline": self.timeline or None,
        }


def ago(at: datetime | None, now: datetime) -> str:
    if at is None:
        return "never"
    s = max((now - at).total_seconds(), 0.0)
    span = f"{s:.0f} s" if s < 120 else f"{s / 60:.0f} min" if s < 7200 else f"{s / 3600:.1f} h"
    return f"{at.isoformat(timespec='seconds')} ({span} ago)"


@dataclass
class Deployment:
    """What the checks reach: the database, Temporal (None: unreachable)."""

    settings: Settings
    engine: AsyncEngine
    client: Client | None = None
    db_ok: bool = False

    async def pollers(self, task_queue: str, kind: TaskQueueType.ValueType) -> int | None:
        """Workers polling ``task_queue`` (None: Temporal did not answer)."""
        if self.client is None:
            return None
        try:
            res = await self.client.workflow_service.describe_task_queue(
                DescribeTaskQueueRequest(
                    namespace=self.settings.temporal_namespace,
                    task_queue=TaskQueue(name=task_queue),
                    task_queue_type=kind,
                ),
                retry=False,
                timeout=CALL_TIMEOUT,
            )
        except Exception:
            return None
        return len(res.pollers)


async def _check(report: Report, name: str, run: Callable[[], Awaitable[None]]) -> None:
    try:
        await run()
    except Exception as exc:
        report.add(name, Status.FAIL, f"check failed: {type(exc).__name__}: {exc}")


async def check_deployment(dep: Deployment, report: Report) -> None:
    s = dep.settings

    async def database() -> None:
        try:
            async with asyncio.timeout(CALL_TIMEOUT.total_seconds()):
                async with dep.engine.connect() as conn:
                    db_now = await fleet.database_now(conn)
        except Exception as exc:
            report.add(
                "database",
                Status.FAIL,
                f"unreachable at GRIDPILOT_DATABASE_URL: {type(exc).__name__}",
                "docs/runbooks/database-outage.md",
            )
            return
        dep.db_ok = True
        skew = (datetime.now(UTC) - db_now).total_seconds()
        status = Status.OK if abs(skew) <= MAX_CLOCK_SKEW_S else Status.WARN
        report.add(
            "database",
            status,
            f"reachable; this host's clock is {skew:+.1f} s from the database's",
            "" if status is Status.OK else "sync this host's clock (chrony/NTP)",
        )
        current = await asyncio.to_thread(db.current_revision, s.database_url)
        head = db.head_revision()
        if current == head:
            report.add("migrations", Status.OK, f"at head ({head})")
        else:
            report.add(
                "migrations",
                Status.FAIL,
                f"database at {current}, this release needs {head}",
                "gridpilot db upgrade (as the owner; docs/runbooks/upgrade.md)",
            )

    async def temporal_server() -> None:
        try:
            client = await temporal.connect(
                s.temporal_address, s.temporal_namespace, CALL_TIMEOUT.total_seconds()
            )
            state = await temporal.probe(client)
        except ConnectionError as exc:
            state = str(exc)
        if state != "ok":
            report.add("temporal", Status.FAIL, state, "docs/runbooks/temporal-outage.md")
            return
        dep.client = client
        report.add("temporal", Status.OK, f"{s.temporal_address} answers ({s.temporal_namespace})")
        listed = await client.operator_service.list_search_attributes(
            ListSearchAttributesRequest(namespace=s.temporal_namespace),
            retry=False,
            timeout=CALL_TIMEOUT,
        )
        missing = sorted({k.name for k in SEARCH_ATTRIBUTES} - set(listed.custom_attributes))
        report.add(
            "search attributes",
            Status.FAIL if missing else Status.OK,
            f"missing: {', '.join(missing)}" if missing else "registered",
            "temporal operator search-attribute create --name NAME --type Keyword "
            "(docs/deployment.md)"
            if missing
            else "",
        )
        found = {
            kind: await dep.pollers(s.task_queue, kind)
            for kind in (
                TaskQueueType.TASK_QUEUE_TYPE_WORKFLOW,
                TaskQueueType.TASK_QUEUE_TYPE_ACTIVITY,
            )
        }
        idle = [
            TaskQueueType.Name(k).removeprefix("TASK_QUEUE_TYPE_").lower()
            for k, n in found.items()
            if not n
        ]
        report.add(
            "workers",
            Status.FAIL if idle else Status.OK,
            f"no {' or '.join(idle)} worker polls task queue {s.task_queue}"
            if idle
            else f"polling task queue {s.task_queue}",
            "start a headend with the worker role (GRIDPILOT_TASK_QUEUE must match)"
            if idle
            else "",
        )

    async def certificates() -> None:
        now = datetime.now(UTC)
        configured = {
            "grpc server certificate": s.grpc_tls_cert_file,
            "grpc client CA": s.grpc_client_ca_file,
        }
        for name, path in configured.items():
            if path is None:
                continue
            try:
                expires = certificate_expiry(path)
            except (OSError, ValueError) as exc:
                report.add(name, Status.FAIL, f"cannot read {path}: {exc}")
                continue
            left = expires - now
            status = (
                Status.FAIL
                if left <= timedelta(0)
                else Status.WARN
                if left < CERT_WARN
                else Status.OK
            )
            report.add(
                name,
                status,
                f"{path} expires {expires.isoformat(timespec='seconds')} ({left.days} days)",
                "" if status is Status.OK else "docs/runbooks/certificate-expiry.md",
            )

    await _check(report, "database", database)
    await _check(report, "temporal", temporal_server)
    await _check(report, "certificates", certificates)
