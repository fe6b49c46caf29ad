"""Client-side helpers for tests of the dispatch workflows."""

from __future__ import annotations

from typing import Any

from temporalio.client import WorkflowFailureError, WorkflowHandle
from temporalio.exceptions import CancelledError

from gridpilot.workflows.constants import QUERY_CURRENT_STATE
from gridpilot.workflows.models import DispatchResult
from gridpilot.workflows.outcome import carried_result


async def dispatch_result(handle: WorkflowHandle[Any, Any]) -> DispatchResult:
    """Wait for a dispatch's workflow and return how it ended, whatever its
    execution status (failed and cancelled executions carry or answer it)."""
    try:
        return DispatchResult.model_validate(await handle.result())
    except WorkflowFailureError as exc:
        carried = carried_result(exc.cause)
        if carried is not None:
            return carried
        if isinstance(exc.cause, CancelledError):
            got = await handle.query(QUERY_CURRENT_STATE)
            return DispatchResult.model_validate(got)
        raise
