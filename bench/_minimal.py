"""The baseline of ``dispatch.py``: the least a Temporal-backed dispatch could
cost, one activity and one signal, run on the same Temporal server with the
same (sandboxed) worker settings as the headend's."""

from __future__ import annotations

from datetime import timedelta

from temporalio import activity, workflow

TASK_QUEUE = "bench-minimal"


@activity.defn
async def touch(dispatch_id: str) -> str:
    return dispatch_id


@workflow.defn
class MinimalWorkflow:
    def __init__(self) -> None:
        self.acked = False

    @workflow.run
    async def run(self, dispatch_id: str) -> str:
        await workflow.execute_activity(
            touch, dispatch_id, start_to_close_timeout=timedelta(seconds=30)
        )
        await workflow.wait_condition(lambda: self.acked)
        return dispatch_id

    @workflow.signal
    def ack(self) -> None:
        self.acked = True
