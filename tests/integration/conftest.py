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
from gp_testing import RunningHeadend, ScriptedAgent, TestPki, wait_for

if TYPE_CHECKING:
    from temporalio.testing import WorkflowEnvironment


@pytest_asyncio.fixture(loop_scope="session")
async def headend(
    database_url: str, temporal_env: WorkflowEnvironment, task_queue: str, test_pki: TestPki
) -> AsyncIterator[RunningHeadend]:
    """A whole headend (gRPC + API + worker) on free ports, its own database and queues,
    secure as in production: mTLS on gRPC (``headend.agent()`` has a certificate) and
    bearer tokens on REST (``headend.api`` sends an admin token; ``headend.token(role)``)."""
    from gridpilot.ops.embedded import free_port
    from gridpilot.ops.headend import Headend
    from gridpilot.ops.settings import Settings
    from gridpilot.security.audit import Actor

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
        grpc_tls_cert_file=test_pki.headend.cert_file,
        grpc_tls_key_file=test_pki.headend.key_file,
        grpc_client_ca_file=test_pki.pki.ca_file,
        revocation_check_s=0.5,
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
        admin_token = (await h.tokens.create("test-admin", "admin", Actor("test")))[1]
        api.headers["Authorization"] = f"Bearer {admin_token}"
        try:
            yield RunningHeadend(
                h, settings, api, settings.grpc_listen, pki=test_pki, admin_token=admin_token
            )
        finally:
            h.stop()
            await asyncio.wait_for(task, 30)


@pytest_asyncio.fixture(loop_scope="session")
async def scripted_agent(headend: RunningHeadend) -> AsyncIterator[ScriptedAgent]:
    agent = headend.agent()
    try:
        yield agent
    finally:
        await agent.close()
