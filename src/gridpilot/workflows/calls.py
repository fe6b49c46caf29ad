"""How the dispatch workflows call their activities: each kind of call with
its timeouts and retries, once, and the Release that follows a dispatch's
end. Workflow code (``workflow.*`` calls) that holds no workflow state.
Callers name the activity by method reference
(``on_database(RecordActivities.claim_asset, req)``): the activity classes
are imported for their names and signatures only, never run in workflow code.
"""

from __future__ import annotations

from datetime import timedelta
from typing import Any, TypeVar

from temporalio import workflow
from temporalio.common import RetryPolicy
from temporalio.exceptions import ActivityError
from temporalio.types import MethodAsyncSingleParam

with workflow.unsafe.imports_passed_through():
    from gridpilot.activities.delivery import DeliveryActivities
    from gridpilot.activities.records import RecordActivities
    from gridpilot.core.lifecycle import ReasonCode

    from .dispatch_rules import release_command
    from .models import DispatchInput

P = TypeVar("P")
R = TypeVar("R")

# The database activities: quick, retried until the database answers.
DB_TIMEOUT = timedelta(seconds=10)
DB_RETRY = RetryPolicy(maximum_interval=timedelta(seconds=10))
# How long a per-replica delivery may wait for its headend to pick it up: a
# dead replica is noticed quickly and the route is resolved again.
DELIVERY_PICKUP = timedelta(seconds=5)
DELIVERY_TIMEOUT = timedelta(seconds=10)
# One attempt: a failed delivery resolves the route again (the agent may have
# moved to another replica) instead of retrying on the same queue.
DELIVERY_RETRY = RetryPolicy(maximum_attempts=1)


# Patch: the database activities run as local activities. They are short and
# run on the worker that holds the workflow (which registers RecordActivities
# on its own queue), so each one saves the server two round trips (schedule,
# then a new workflow task for the result) and its result is a marker in the
# history.
PATCH_DB_LOCAL_ACTIVITIES = "db-local-activities"
# Patch: only the calls whose effect does not depend on the path the workflow
# takes stay local (the dispatch row, written first; the route and the split
# inputs, read only). A local activity runs before its workflow task is
# committed: when that task fails (a worker too slow for the task timeout,
# or a crash) and signals that came meanwhile make the retried task take
# another path, a transition written by a local activity was never the
# workflow's (seen under load: "expired" recorded, then the dispatch went on
# to "active"). Transitions, claims, allocations and late acks are scheduled
# activities again: they run only for a committed decision.
PATCH_DB_WRITES_SCHEDULED = "db-writes-scheduled"
_PATH_FREE = (
    RecordActivities.record_dispatch,
    RecordActivities.record_submission,  # the first call of a run (patch "lean-records")
    RecordActivities.resolve_route,
    RecordActivities.load_split_inputs,
)
# Patch (see recording.py): the claim is local too. It comes right after the
# submission, before any wait, so a retried task reaches it the same way; and
# it is idempotent: run again, it finds the same live dispatches (those it
# superseded stay live until they end) and answers the same. A cancel that
# came meanwhile is looked at after it, as it would be after a scheduled claim.
PATCH_LEAN_RECORDS = "lean-records"


async def on_database(activity: MethodAsyncSingleParam[Any, P, R], arg: P) -> R:
    """A database activity (``RecordActivities``): local on the workflow's
    worker where its effect does not depend on the workflow's path, else
    scheduled on the workflow's own queue (see the patches above; histories
    from before them replay as they ran)."""
    if workflow.patched(PATCH_DB_WRITES_SCHEDULED):
        local = activity in _PATH_FREE or (
            activity == RecordActivities.claim_asset and workflow.patched(PATCH_LEAN_RECORDS)
        )
    else:
        local = workflow.patched(PATCH_DB_LOCAL_ACTIVITIES)
    if local:
        return await workflow.execute_local_activity_method(
            activity, arg, start_to_close_timeout=DB_TIMEOUT, retry_policy=DB_RETRY
        )
    return await workflow.execute_activity_method(
        activity, arg, start_to_close_timeout=DB_TIMEOUT, retry_policy=DB_RETRY
    )


async def on_replica(activity: MethodAsyncSingleParam[Any, P, R], arg: P, task_queue: str) -> R:
    """A delivery activity (``DeliveryActivities``), on the queue of the headend
    replica that holds the agent's session."""
    return await workflow.execute_activity_method(
        activity,
        arg,
        task_queue=task_queue,
        schedule_to_start_timeout=DELIVERY_PICKUP,
        start_to_close_timeout=DELIVERY_TIMEOUT,
        retry_policy=DELIVERY_RETRY,
    )


async def release(inp: DispatchInput, reason: ReasonCode) -> None:
    """Tell the agent to release the asset, on its replica of the moment. Best
    effort: a lost Release is covered by the agent's own lease end."""
    if inp.asset_id is None:
        return
    route = await on_database(RecordActivities.resolve_route, inp.asset_id)
    if route.task_queue is None or route.gateway_id is None:
        return
    try:
        await on_replica(
            DeliveryActivities.deliver_release,
            release_command(inp, route.gateway_id, reason),
            route.task_queue,
        )
    except ActivityError:
        pass
