"""Fixtures that run GridPilot's own parts: an in-process headend and a
scripted agent speaking the real gRPC contract."""

from __future__ import annotations

from collections.abc import AsyncIterator
from typing import TYPE_CHECKING

import pytest_asyncio
from gp_testing import RunningHeadend, ScriptedAgent, TestPki, running_headend

if TYPE_CHECKING:
    from temporalio.testing import WorkflowEnvironment


@pytest_asyncio.fixture(loop_scope="session")
async def headend(
    database_url: str, temporal_env: WorkflowEnvironment, task_queue: str, test_pki: TestPki
) -> AsyncIterator[RunningHeadend]:
    """A whole headend on its own database and queues (gp_testing.running_headend)."""
    address = temporal_env.client.service_client.config.target_host
    async with running_headend(database_url, address, task_queue, test_pki) as running:
        yield running


@pytest_asyncio.fixture(loop_scope="session")
async def scripted_agent(headend: RunningHeadend) -> AsyncIterator[ScriptedAgent]:
    agent = headend.agent()
    try:
        yield agent
    finally:
        await agent.close()
