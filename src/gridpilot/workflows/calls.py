"""The activities as the dispatch workflows call them, each with its timeouts
and retries, typed by method reference. Workflow code only (``workflow.*``
calls): the activity classes are imported for their names and signatures,
never run here.
"""

from __future__ import annotations

from datetime import timedelta

from temporalio import workflow
from temporalio.common import RetryPolicy

with workflow.unsafe.imports_passed_through():
    from gridpilot.activities.delivery import DeliveryActivities
    from gridpilot.activities.records import RecordActivities

    from .models import (
        AllocationRecord,
        ClaimRequest,
        ClaimResult,
        DispatchInput,
        ReleaseCommand,
        Route,
        SetpointCommand,
        SplitInputs,
        TransitionRecord,
    )

# The database activities: quick, retried until the database answers.
DB_TIMEOUT = timedelta(seconds=10)
DB_RETRY = RetryPolicy(maximum_interval=timedelta(seconds=10))
# How long a per-replica delivery may wait for its headend to pick it up: a
# dead replica is noticed quickly and the route is resolved again.
DELIVERY_PICKUP = timedelta(seconds=5)
DELIVERY_TIMEOUT = timedelta(seconds=10)
# One attempt: a failed delivery resolves the route again (the agent may have
# moved to another replica) rather than retrying on the same queue.
DELIVERY_RETRY = RetryPolicy(maximum_attempts=1)


async def record_dispatch(inp: DispatchInput) -> None:
    await workflow.execute_activity_method(
        RecordActivities.record_dispatch,
        inp,
        start_to_close_timeout=DB_TIMEOUT,
        retry_policy=DB_RETRY,
    )


async def record_transition(record: TransitionRecord) -> None:
    await workflow.execute_activity_method(
        RecordActivities.record_transition,
        record,
        start_to_close_timeout=DB_TIMEOUT,
        retry_policy=DB_RETRY,
    )


async def record_allocation(allocation: AllocationRecord) -> None:
    await workflow.execute_activity_method(
        RecordActivities.record_allocation,
        allocation,
        start_to_close_timeout=DB_TIMEOUT,
        retry_policy=DB_RETRY,
    )


async def load_split_inputs(site_id: str) -> SplitInputs:
    return await workflow.execute_activity_method(
        RecordActivities.load_split_inputs,
        site_id,
        start_to_close_timeout=DB_TIMEOUT,
        retry_policy=DB_RETRY,
    )


async def claim_asset(req: ClaimRequest) -> ClaimResult:
    return await workflow.execute_activity_method(
        RecordActivities.claim_asset,
        req,
        start_to_close_timeout=DB_TIMEOUT,
        retry_policy=DB_RETRY,
    )


async def resolve_route(asset_id: str) -> Route:
    return await workflow.execute_activity_method(
        RecordActivities.resolve_route,
        asset_id,
        start_to_close_timeout=DB_TIMEOUT,
        retry_policy=DB_RETRY,
    )


async def deliver_setpoint(cmd: SetpointCommand, task_queue: str) -> None:
    """On the replica that holds the agent's session (``task_queue``)."""
    await workflow.execute_activity_method(
        DeliveryActivities.deliver_setpoint,
        cmd,
        task_queue=task_queue,
        schedule_to_start_timeout=DELIVERY_PICKUP,
        start_to_close_timeout=DELIVERY_TIMEOUT,
        retry_policy=DELIVERY_RETRY,
    )


async def deliver_release(cmd: ReleaseCommand, task_queue: str) -> None:
    """On the replica that holds the agent's session (``task_queue``)."""
    await workflow.execute_activity_method(
        DeliveryActivities.deliver_release,
        cmd,
        task_queue=task_queue,
        schedule_to_start_timeout=DELIVERY_PICKUP,
        start_to_close_timeout=DELIVERY_TIMEOUT,
        retry_policy=DELIVERY_RETRY,
    )
