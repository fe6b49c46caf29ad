"""The dispatch service's Temporal edge: start a dispatch's workflow (typed,
its id the dispatch id) and signal a cancel. Temporal's errors become ours
(``Unavailable``: 503) here and nowhere else."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

from temporalio.client import Client
from temporalio.common import (
    SearchAttributePair,
    TypedSearchAttributes,
    WorkflowIDConflictPolicy,
    WorkflowIDReusePolicy,
)
from temporalio.exceptions import WorkflowAlreadyStartedError
from temporalio.service import RPCError

from gridpilot.core.dispatch import DispatchKind
from gridpilot.schema.tables import DEFAULT_TENANT
from gridpilot.workflows.constants import (
    SA_ASSET_ID,
    SA_DISPATCH_KIND,
    SA_DISPATCH_STATE,
    SA_SITE_ID,
    SA_TENANT_ID,
)
from gridpilot.workflows.dispatch import DispatchWorkflow
from gridpilot.workflows.models import CancelRequest, DispatchInput
from gridpilot.workflows.site import SiteDispatchWorkflow

from .errors import Unavailable


async def start_dispatch(
    client: Client, task_queue: str, inp: DispatchInput, tenant_id: str = DEFAULT_TENANT
) -> None:
    """Start the dispatch's workflow; a workflow already started with its id
    (a retried submit, a re-sent local report) stands. The tenant goes in the
    memo and the ``TenantId`` search attribute (set here, not by the
    workflow, so no workflow code or history changes)."""
    execution_timeout = (
        (inp.end_at - inp.start_at)
        + timedelta(hours=1)
        + max(inp.start_at - datetime.now(UTC), timedelta(0))
    )
    workflow = SiteDispatchWorkflow.run if inp.kind == DispatchKind.SITE else DispatchWorkflow.run
    try:
        await client.start_workflow(
            workflow,
            inp,
            id=inp.dispatch_id,
            task_queue=task_queue,
            id_conflict_policy=WorkflowIDConflictPolicy.USE_EXISTING,
            id_reuse_policy=WorkflowIDReusePolicy.REJECT_DUPLICATE,
            search_attributes=TypedSearchAttributes(search_attributes(inp, tenant_id)),
            memo={"submitted_by": inp.submitted_by, "source": inp.source, "tenant_id": tenant_id},
            execution_timeout=execution_timeout,
            static_summary=summary(inp),
        )
    except WorkflowAlreadyStartedError:
        return  # same id (idempotency key) already ran: that dispatch stands
    except RPCError as exc:
        raise Unavailable("temporal", f"Temporal is not reachable: {exc.message}") from exc


async def signal_cancel(client: Client, dispatch_id: str, request: CancelRequest) -> None:
    """Ask the dispatch's workflow to cancel; one that already ended (or never
    ran) has nothing left to cancel."""
    handle = client.get_workflow_handle_for(DispatchWorkflow.run, dispatch_id)
    try:
        await handle.signal(DispatchWorkflow.cancel, request)
    except RPCError as exc:
        if "completed" in exc.message or "not found" in exc.message:
            return
        raise Unavailable("temporal", f"Temporal is not reachable: {exc.message}") from exc


def search_attributes(
    inp: DispatchInput, tenant_id: str = DEFAULT_TENANT
) -> list[SearchAttributePair[str]]:
    pairs = [
        SearchAttributePair(SA_DISPATCH_STATE, "submitted"),
        SearchAttributePair(SA_DISPATCH_KIND, inp.kind),
        SearchAttributePair(SA_TENANT_ID, tenant_id),
    ]
    if inp.asset_id:
        pairs.append(SearchAttributePair(SA_ASSET_ID, inp.asset_id))
    if inp.site_id:
        pairs.append(SearchAttributePair(SA_SITE_ID, inp.site_id))
    return pairs


def summary(inp: DispatchInput) -> str:
    """The workflow's static summary in the Temporal UI."""
    target = inp.asset_id or inp.site_id
    where = "written on site " if inp.source == "local" else ""
    return f"{inp.p_kw:g} kW for {inp.duration_s} s on {target} ({where}by {inp.submitted_by})"
