"""Fixtures that run GridPilot's own parts: an in-process headend and a
scripted agent speaking the real gRPC contract."""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import AsyncIterator
from typing import TYPE_CHECKING
from uuid import uuid4

import httpx
import pytest_asyncio
from gp_testing import RunningHeadend, ScriptedAgent, wait_for

if TYPE_CHECKING:
    from temporalio.testing import WorkflowEnvironment


@pytest_asyncio.fixture(loop_scope="session")
async def headend(
    database_url: str, temporal_env: WorkflowEnvironment, task_queue: str
) -> AsyncIterator[RunningHeadend]:
    """A whole headend (gRPC + API + worker) on free ports, its own database and queues."""
    from gridpilot.ops.embedded import free_port
    from gridpilot.ops.headend import Headend
    from gridpilot.ops.settings import Settings

    settings = Settings(
        _env_file=None,  # type: ignore[call-arg]
        database_url=database_url,
        temporal_address=temporal_env.client.service_client.config.target_host,
        task_queue=task_queue,
        headend_id=f"test-{uuid4().hex[:8]}",
        api_port=free_port(),
        grpc_listen=f"127.0.0.1:{free_port()}",
        ack_timeout_s=5,
        delivery_timeout_s=10,
    )
    h = Headend(settings)
    task = asyncio.create_task(h.run())
    base = f"http://127.0.0.1:{settings.api_port}"
    async with httpx.AsyncClient(base_url=base, timeout=10) as api:

        async def ready() -> bool:
            if task.done():
                task.result()  # surfaces the start-up error
            with contextlib.suppress(httpx.HTTPError):
                return (await api.get("/readyz")).status_code == 200
            return False

        await wait_for(ready, timeout=60)
        try:
            yield RunningHeadend(h, settings, api, settings.grpc_listen)
        finally:
            h.stop()
            await asyncio.wait_for(task, 30)


@pytest_asyncio.fixture(loop_scope="session")
async def scripted_agent(headend: RunningHeadend) -> AsyncIterator[ScriptedAgent]:
    agent = ScriptedAgent(headend.grpc_address)
    try:
        yield agent
    finally:
        await agent.close()
