"""The activity behind the ``outcome-status`` patch: a dispatch that ended
cancelled asks Temporal to cancel its own execution, so the execution status
says cancelled (a workflow cannot end itself cancelled otherwise)."""

from __future__ import annotations

from temporalio import activity
from temporalio.service import RPCError

from gridpilot.workflows.models import OwnCancel


@activity.defn(name="request_own_cancel")
async def request_own_cancel(req: OwnCancel) -> None:
    handle = activity.client().get_workflow_handle(req.workflow_id, run_id=req.run_id)
    try:
        await handle.cancel()
    except RPCError as exc:
        if "completed" in exc.message or "not found" in exc.message:
            return  # it ended meanwhile: nothing to cancel
        raise
