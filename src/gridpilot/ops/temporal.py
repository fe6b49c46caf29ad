"""Temporal client and workers of a headend process."""

from __future__ import annotations

import asyncio
import time
from datetime import timedelta

from sqlalchemy.ext.asyncio import AsyncEngine
from temporalio.client import Client
from temporalio.contrib.pydantic import pydantic_data_converter
from temporalio.worker import Worker

from gridpilot.activities.delivery import DeliveryActivities
from gridpilot.activities.outcome import request_own_cancel
from gridpilot.activities.records import RecordActivities
from gridpilot.ingest.sessions import SessionRegistry
from gridpilot.workflows.dispatch import DispatchWorkflow
from gridpilot.workflows.site import SiteDispatchWorkflow

WORKFLOWS = [DispatchWorkflow, SiteDispatchWorkflow]
_GRACE = timedelta(seconds=5)


async def connect(address: str, namespace: str, wait_s: float = 60.0) -> Client:
    """Connect, retrying while Temporal starts; raises ConnectionError after wait_s."""
    deadline = time.monotonic() + wait_s
    while True:
        try:
            return await Client.connect(
                address, namespace=namespace, data_converter=pydantic_data_converter
            )
        except Exception as exc:
            if time.monotonic() > deadline:
                raise ConnectionError(f"Temporal at {address} is not reachable: {exc}") from exc
            await asyncio.sleep(1.0)


def dispatch_worker(client: Client, task_queue: str, engine: AsyncEngine) -> Worker:
    """Workflows and database activities, on the shared task queue."""
    records = RecordActivities(engine)
    return Worker(
        client,
        task_queue=task_queue,
        workflows=WORKFLOWS,
        activities=[
            records.record_dispatch,
            records.record_transition,
            records.record_allocation,
            records.resolve_route,
            records.load_split_inputs,
            records.claim_asset,
            request_own_cancel,
        ],
        graceful_shutdown_timeout=_GRACE,
    )


def delivery_worker(client: Client, task_queue: str, sessions: SessionRegistry) -> Worker:
    """Delivery activities, on this replica's own task queue."""
    delivery = DeliveryActivities(sessions)
    return Worker(
        client,
        task_queue=task_queue,
        activities=[delivery.deliver_setpoint, delivery.deliver_release],
        graceful_shutdown_timeout=_GRACE,
    )
