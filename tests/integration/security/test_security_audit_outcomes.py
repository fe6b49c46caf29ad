"""The audit says only what happened: each mutating REST route writes `attempt`
before it acts and `ok`, `refused` or `failed` after; a cancel that Temporal
cannot carry out (503) is `failed`, never `ok`; an asset dispatch's rows name
the asset."""

from __future__ import annotations

from typing import Any

import httpx
import pytest
from fastapi import FastAPI
from gp_testing import RunningHeadend, ScriptedAgent, demo_assets
from temporalio.client import Client

from gridpilot.api.admin import SecurityDeps
from gridpilot.api.app import ApiDeps, create_app
from gridpilot.api.auth import AuthSettings
from gridpilot.api.dispatch_service import DispatchOptions, DispatchService
from gridpilot.ops.embedded import TemporalDevServer
from gridpilot.ops.processes import free_port
from gridpilot.ops.temporal import connect
from gridpilot.security.authn import Authenticator

pytestmark = pytest.mark.integration


async def _temporal_that_went_down() -> Client:
    """A client that was connected to a Temporal server that has since stopped."""
    server = TemporalDevServer(port=free_port(), ui_port=None)
    server.start()
    try:
        return await connect(server.address, "default", wait_s=20)
    finally:
        server.stop()


def _app_on(headend: RunningHeadend, client: Client) -> FastAPI:
    h = headend.headend
    return create_app(
        ApiDeps(
            engine=h.engine,
            dispatches=DispatchService(
                h.engine, client, DispatchOptions(task_queue=headend.settings.task_queue), h.audit
            ),
            security=SecurityDeps(h.audit, h.tokens, h.certs, h.store, h.enrollment),
            auth=AuthSettings(Authenticator(h.tokens), h.audit),
        )
    )


def _api(app: FastAPI, token: str) -> httpx.AsyncClient:
    return httpx.AsyncClient(
        transport=httpx.ASGITransport(app=app),
        base_url="http://api",
        headers={"Authorization": f"Bearer {token}"},
    )


async def _rows(headend: RunningHeadend, **where: Any) -> list[tuple[str, str, str]]:
    rows = await headend.headend.audit.query(**where)
    return [(x["action"], x["target"], x["outcome"]) for x in rows]


async def test_a_cancel_temporal_cannot_carry_out_is_audited_failed_never_ok(
    headend: RunningHeadend, scripted_agent: ScriptedAgent
) -> None:
    await scripted_agent.connect(demo_assets())
    r = await headend.api.post(
        "/api/v1/dispatches", json={"asset_id": "bess-1", "p_kw": 10, "duration_s": 60}
    )
    assert r.status_code == 201, r.text
    dispatch_id = r.json()["id"]
    submitted = await headend.headend.audit.query(action="dispatch.submit", target=dispatch_id)
    assert [x["outcome"] for x in submitted] == ["attempt", "ok"]
    assert all(x["detail"]["asset_id"] == "bess-1" for x in submitted)

    down = _app_on(headend, await _temporal_that_went_down())
    async with _api(down, headend.admin_token) as api:
        c = await api.post(f"/api/v1/dispatches/{dispatch_id}/cancel", json={"detail": "stop"})
        assert c.status_code == 503, c.text
        s = await api.post(
            "/api/v1/dispatches", json={"asset_id": "pv-1", "p_kw": 5, "duration_s": 60}
        )
        assert s.status_code == 503, s.text
    assert await _rows(headend, action="dispatch.cancel") == [
        ("dispatch.cancel", dispatch_id, "attempt"),
        ("dispatch.cancel", dispatch_id, "failed"),
    ]
    failed_submit = [
        x
        for x in await headend.headend.audit.query(action="dispatch.submit")
        if x["target"] != dispatch_id
    ]
    assert [x["outcome"] for x in failed_submit] == ["attempt", "failed"]
    assert failed_submit[0]["detail"]["asset_id"] == "pv-1"
    assert "Temporal" in failed_submit[1]["detail"]["message"]

    # Temporal is back (the headend's own client): the retried cancel is `ok`.
    c = await headend.api.post(f"/api/v1/dispatches/{dispatch_id}/cancel", json={})
    assert c.status_code == 202, c.text
    cancels = await headend.headend.audit.query(action="dispatch.cancel")
    assert [x["outcome"] for x in cancels] == ["attempt", "failed", "attempt", "ok"]
    assert cancels[-1]["detail"]["asset_id"] == "bess-1"
    assert (await headend.headend.audit.verify()).ok


async def test_refused_actions_are_audited_refused(headend: RunningHeadend) -> None:
    api = headend.api
    assert (await api.post("/api/v1/dispatches/dsp-nope/cancel", json={})).status_code == 404
    assert (await api.post("/api/v1/tokens/tok_nope/revoke")).status_code == 404
    r = await api.put("/api/v1/assets/no-such-asset/gateway", json={"gateway_id": "gw-x"})
    assert r.status_code == 404
    created = await api.post("/api/v1/tokens", json={"name": "ops", "role": "operator"})
    assert created.status_code == 201
    token_id = created.json()["id"]
    again = await api.post("/api/v1/tokens", json={"name": "ops", "role": "operator"})
    assert again.status_code == 409
    assert (await api.post(f"/api/v1/tokens/{token_id}/revoke")).status_code == 200
    rows = [
        x
        for x in await _rows(headend)
        if x[0] in {"dispatch.cancel", "token.revoke", "asset.rebind", "token.create"}
        and not (x[0] == "token.create" and x[1].startswith("tok_") and x[1] != token_id)
    ]
    assert rows == [
        ("dispatch.cancel", "dsp-nope", "attempt"),
        ("dispatch.cancel", "dsp-nope", "refused"),
        ("token.revoke", "tok_nope", "attempt"),
        ("token.revoke", "tok_nope", "refused"),
        ("asset.rebind", "no-such-asset", "attempt"),
        ("asset.rebind", "no-such-asset", "refused"),
        ("token.create", "ops", "attempt"),
        ("token.create", token_id, "ok"),
        ("token.create", "ops", "attempt"),
        ("token.create", "ops", "refused"),
        ("token.revoke", token_id, "attempt"),
        ("token.revoke", token_id, "ok"),
    ]
