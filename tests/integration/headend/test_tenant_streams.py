"""The gRPC side of the bleed matrix, on a whole headend running as the app
role (row-level security applies) over mTLS: a gateway of tenant acme cannot
register for bolt's site, claim bolt's assets, publish telemetry for them or
ack bolt's dispatches; a suspended tenant's gateway is refused at its Hello;
bolt's principals see bolt's site, and the dispatch workflow carries its tenant."""

from __future__ import annotations

from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import grpc
import pytest
import pytest_asyncio
from gp_testing import (
    RunningHeadend,
    ScriptedAgent,
    TestPki,
    agent_ack,
    now_pb,
    running_headend,
    wait_for,
)
from temporalio.testing import WorkflowEnvironment

from gridpilot.ops.up_security import ensure_app_login
from gridpilot.schema import db, tenancy
from gridpilot.schema.pb import agent_pb2 as pb
from gridpilot.schema.roles import APP_ROLE
from gridpilot.security.audit import Actor
from gridpilot.workflows.constants import SA_TENANT_ID

pytestmark = pytest.mark.integration
A, B = "acme", "bolt"


def battery(asset_id: str) -> Any:
    return pb.AssetInfo(
        asset_id=asset_id, name=asset_id, asset_type=pb.ASSET_TYPE_BESS, p_min_kw=-50, p_max_kw=50
    )


@pytest_asyncio.fixture(loop_scope="session")
async def two_tenants(
    database_url: str,
    tmp_path: Path,
    temporal_env: WorkflowEnvironment,
    task_queue: str,
    test_pki: TestPki,
) -> AsyncIterator[tuple[RunningHeadend, dict[str, str]]]:
    """A headend as the app role; tenants acme and bolt, each with an admin
    token and a gateway enrolled (by its admin) for its site."""
    db.upgrade(database_url)
    app_url = ensure_app_login(database_url, APP_ROLE, tmp_path / "app-password")
    address = temporal_env.client.service_client.config.target_host
    async with running_headend(app_url, address, task_queue, test_pki) as headend:
        h, who, tokens = headend.headend, Actor("test"), {}
        with tenancy.scope(tenancy.SYSTEM):
            for tenant in (A, B):
                await h.tenants.create(tenant, tenant.title(), who)
                _, tokens[tenant] = await h.tokens.create(
                    f"{tenant}-admin", "admin", who, tenant_id=tenant
                )
        for tenant in (A, B):
            with tenancy.scope(tenant):  # as its admin enrolls it
                await h.enrollment.enroll(f"site-{tenant}", f"gw-{tenant}", 100.0, who)
        yield headend, tokens


def _agent(headend: RunningHeadend, tenant: str, site: str | None = None) -> ScriptedAgent:
    return headend.agent(enroll=False, gateway_id=f"gw-{tenant}", site_id=site or f"site-{tenant}")


async def _refusal(agent: ScriptedAgent, assets: list[Any]) -> grpc.RpcError | None:
    try:
        await agent.connect(assets)
        return agent.error
    finally:
        await agent.close()


async def test_a_gateway_cannot_register_publish_or_ack_for_another_tenant(
    two_tenants: tuple[RunningHeadend, dict[str, str]],
) -> None:
    headend, tokens = two_tenants
    bolt = _agent(headend, B)
    await bolt.connect([battery("bess-bolt")])
    assert bolt.error is None
    try:
        # Register for bolt's site: not enrolled for it ...
        error = await _refusal(_agent(headend, A, "site-bolt"), [battery("bess-x")])
        assert error is not None and error.code() == grpc.StatusCode.PERMISSION_DENIED
        # ... and an acme enrollment of bolt's site (a forgotten check) does not help.
        with tenancy.scope(A):
            await headend.headend.enrollment.enroll("site-bolt", "gw-acme", 100.0, Actor("t"))
        error = await _refusal(_agent(headend, A, "site-bolt"), [battery("bess-x")])
        assert error is not None and error.code() == grpc.StatusCode.PERMISSION_DENIED
        assert "another tenant" in (error.details() or "")
        # Claim bolt's asset in its own site's Hello.
        error = await _refusal(_agent(headend, A), [battery("bess-bolt")])
        assert error is not None and error.code() == grpc.StatusCode.PERMISSION_DENIED

        acme = _agent(headend, A)
        await acme.connect([battery("bess-acme")])
        assert acme.error is None
        try:
            # Publish telemetry for bolt's asset: rejected, never stored.
            sample = pb.TelemetrySample(asset_id="bess-bolt", ts=now_pb(), p_kw=9.0)
            await acme.send(
                pb.AgentMessage(telemetry=pb.TelemetryBatch(batch_seq=1, samples=[sample]))
            )
            ack = await wait_for(lambda: acme.first("telemetry_ack"))
            assert ack.batch_seq == 1 and ack.rejected == 1

            # Ack bolt's dispatch: refused, back to the sender; the dispatch moves
            # only on bolt's gateway's word.
            async with headend.client(tokens[B]) as bolt_api:
                r = await bolt_api.post(
                    "/api/v1/dispatches",
                    json={"asset_id": "bess-bolt", "p_kw": 5, "duration_s": 60},
                )
                assert r.status_code == 201, r.text
                dispatch_id = r.json()["id"]
                sp = await wait_for(lambda: bolt.first("setpoint"))
                await acme.send(agent_ack(sp, pb.ACK_STATE_APPLIED, applied_p_kw=5.0))
                got = await wait_for(lambda: acme.first("dispatch_ack_received"))
                assert got.dispatch_id == dispatch_id and "not this gateway's" in got.refused
                await bolt.send(agent_ack(sp, pb.ACK_STATE_ACCEPTED))

                async def acked() -> bool:
                    d = (await bolt_api.get(f"/api/v1/dispatches/{dispatch_id}")).json()
                    return bool(d["state"] == "acked")

                await wait_for(acked)
                # bolt's telemetry of its asset holds none of acme's sample
                latest = await bolt_api.get("/api/v1/assets/bess-bolt/telemetry/latest")
                assert latest.status_code == 404
            async with headend.client(tokens[A]) as acme_api:
                seen = await acme_api.get(f"/api/v1/dispatches/{dispatch_id}")
                assert seen.status_code == 404
                agents = (await acme_api.get("/api/v1/agents")).json()
                assert [a["gateway_id"] for a in agents] == ["gw-acme"]
            # The workflow carries its tenant: memo and search attribute.
            assert headend.headend.client is not None
            handle = headend.headend.client.get_workflow_handle(dispatch_id)
            described = await handle.describe()
            assert (await described.memo_value("tenant_id")) == B
            assert described.typed_search_attributes.get(SA_TENANT_ID) == B
        finally:
            await acme.close()
    finally:
        await bolt.close()


async def test_a_suspended_tenants_gateway_is_refused_at_its_hello(
    two_tenants: tuple[RunningHeadend, dict[str, str]],
) -> None:
    headend, _ = two_tenants
    with tenancy.scope(tenancy.SYSTEM):
        await headend.headend.tenants.set_suspended(B, True, Actor("test"))
    error = await _refusal(_agent(headend, B), [battery("bess-bolt")])
    assert error is not None and error.code() == grpc.StatusCode.PERMISSION_DENIED
    assert error.details() == f"tenant {B} is suspended"
    acme = _agent(headend, A)  # the other tenant is not touched
    try:
        await acme.connect([battery("bess-acme")])
        assert acme.error is None and acme.first("welcome") is not None
    finally:
        await acme.close()


async def test_suspending_a_tenant_ends_its_gateways_live_streams(
    two_tenants: tuple[RunningHeadend, dict[str, str]],
) -> None:
    headend, _ = two_tenants
    bolt, acme = _agent(headend, B), _agent(headend, A)
    try:
        await bolt.connect([battery("bess-bolt")])
        await acme.connect([battery("bess-acme")])
        assert bolt.error is None and acme.error is None
        with tenancy.scope(tenancy.SYSTEM):
            await headend.headend.tenants.set_suspended(B, True, Actor("test"))
        error = await wait_for(lambda: bolt.error, what="bolt's stream ended")
        assert error.code() == grpc.StatusCode.PERMISSION_DENIED
        assert error.details() == "the gateway's tenant is suspended"
        # acme's stream is untouched: it still gets its telemetry acked
        sample = pb.TelemetrySample(asset_id="bess-acme", ts=now_pb(), p_kw=1.0)
        await acme.send(pb.AgentMessage(telemetry=pb.TelemetryBatch(batch_seq=1, samples=[sample])))
        ack = await wait_for(lambda: acme.first("telemetry_ack"))
        assert ack.rejected == 0 and acme.error is None
    finally:
        await bolt.close()
        await acme.close()
