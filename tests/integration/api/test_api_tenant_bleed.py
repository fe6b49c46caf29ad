"""The REST bleed matrix: for every route, a caller of tenant acme gets 404
(never 403: no existence leak) for tenant bolt's objects, and no answer of
any route carries bolt's ids. Every route needs a tenant rule here (a new
route without one fails), as every route needs an access rule in
``gridpilot.api.auth.RULES``.

Twice: as the owner (a superuser: row-level security does not apply, so this
tests the application's filters alone) and as the app role (both walls)."""

from __future__ import annotations

import json
from collections.abc import AsyncIterator
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import httpx
import psycopg
import pytest
import pytest_asyncio
from fastapi import FastAPI
from gp_testing import api_app, call
from starlette.types import ASGIApp, Receive, Scope, Send

from gridpilot.api.auth import RULES
from gridpilot.core.assets import Asset, AssetType, PowerLimits
from gridpilot.core.lifecycle import DispatchState
from gridpilot.ingest.enrollment import Admission, EnrollmentStore
from gridpilot.ingest.onboarding import GatewayOnboarding
from gridpilot.ingest.registry import GatewayStore
from gridpilot.ops.up_security import ensure_app_login
from gridpilot.schema import db, tenancy
from gridpilot.schema.roles import APP_ROLE
from gridpilot.security.audit import Actor, AuditLog
from gridpilot.security.enroll_tokens import EnrollmentTokens
from gridpilot.security.tenants import TenantStore
from gridpilot.security.tokens import TokenStore
from gridpilot.store.dispatches import DispatchStore
from gridpilot.workflows.models import DispatchInput, TransitionRecord

pytestmark = pytest.mark.integration
A, B = "acme", "bolt"

# What a route may answer a tenant admin of acme: OBJECT routes name one of
# bolt's objects in their path and must answer 404; every answer, of every
# route, must not carry bolt's ids.
NO_DATA = "no tenant data"  # health, static pages, public onboarding by secret
LIST = "lists the caller's objects"
OBJECT = "names an object in its path: 404 for another tenant's"
PLATFORM = "the platform admin's: 403 for a tenant's principal"
OWN = "the caller's own tenant"
TENANT_RULES: dict[tuple[str, str], str] = {
    ("GET", "/healthz"): NO_DATA,
    ("GET", "/readyz"): NO_DATA,
    ("GET", "/metrics"): OWN,  # the default tenant's (the operator's); others: 404
    ("GET", "/"): NO_DATA,
    ("GET", "/console/dispatches"): NO_DATA,
    ("GET", "/console/dispatches/{dispatch_id}"): NO_DATA,
    ("GET", "/console/agents"): NO_DATA,
    ("GET", "/console/sites/{site_id}"): NO_DATA,
    ("GET", "/console/assets/{asset_id}"): NO_DATA,
    ("GET", "/console/audit"): NO_DATA,
    ("GET", "/console/static/{name}"): NO_DATA,
    ("GET", "/favicon.ico"): NO_DATA,
    ("GET", "/openapi.json"): NO_DATA,
    ("GET", "/docs"): NO_DATA,
    ("GET", "/docs/assets/{name}"): NO_DATA,
    ("POST", "/api/v1/enroll/describe"): NO_DATA,  # the enrollment token is the credential
    ("POST", "/api/v1/enroll"): NO_DATA,
    ("POST", "/api/v1/enroll/renew"): NO_DATA,
    ("GET", "/api/v1/events"): NO_DATA,  # says only "dispatches changed" (docs/security.md)
    ("GET", "/api/v1/me"): OWN,
    ("GET", "/api/v1/agents"): LIST,
    ("GET", "/api/v1/agents/sessions"): LIST,
    ("GET", "/api/v1/agents/{gateway_id}/sessions"): OBJECT,
    ("GET", "/api/v1/sites"): LIST,
    ("GET", "/api/v1/assets"): LIST,
    ("GET", "/api/v1/assets/{asset_id}"): OBJECT,
    ("GET", "/api/v1/assets/{asset_id}/telemetry/latest"): OBJECT,
    ("GET", "/api/v1/telemetry"): LIST,
    ("GET", "/api/v1/telemetry/latest"): LIST,
    ("GET", "/api/v1/dispatches"): LIST,
    ("GET", "/api/v1/dispatches/{dispatch_id}"): OBJECT,
    ("POST", "/api/v1/dispatches"): LIST,  # names bolt's asset: as an unknown one (422)
    ("POST", "/api/v1/dispatches/preview"): LIST,
    ("POST", "/api/v1/dispatches/{dispatch_id}/cancel"): OBJECT,
    ("GET", "/api/v1/audit"): LIST,
    ("GET", "/api/v1/tokens"): LIST,
    ("POST", "/api/v1/tokens"): LIST,  # names bolt as its tenant: 404
    ("POST", "/api/v1/tokens/{token_id}/revoke"): OBJECT,
    ("GET", "/api/v1/gateways/{gateway_id}/certificates"): OBJECT,
    ("POST", "/api/v1/gateways/{gateway_id}/revoke"): OBJECT,
    ("PUT", "/api/v1/assets/{asset_id}/gateway"): OBJECT,
    ("GET", "/api/v1/gateways"): LIST,
    ("GET", "/api/v1/sites/{site_id}/gateways"): LIST,  # as for an unknown site: none
    ("POST", "/api/v1/sites/{site_id}/gateways"): OBJECT,
    ("DELETE", "/api/v1/sites/{site_id}/gateways/{gateway_id}"): OBJECT,
    ("GET", "/api/v1/sites/{site_id}/held-assets"): LIST,  # as for an unknown site: none
    ("POST", "/api/v1/assets/{asset_id}/approve"): OBJECT,
    ("GET", "/api/v1/enrollment-tokens"): LIST,
    ("POST", "/api/v1/enrollment-tokens"): OBJECT,  # for bolt's site: 404
    ("GET", "/api/v1/tenants"): PLATFORM,
    ("POST", "/api/v1/tenants"): PLATFORM,
    ("POST", "/api/v1/tenants/{tenant_id}/suspend"): PLATFORM,
    ("POST", "/api/v1/tenants/{tenant_id}/resume"): PLATFORM,
    ("GET", "/api/v1/audit/export"): OBJECT,  # ?dispatch_id= bolt's dispatch: 404
    ("GET", "/api/v1/audit/export/key"): NO_DATA,  # the deployment's public key
    ("GET", "/api/v1/usage"): OWN,
    ("GET", "/api/v1/retention"): OWN,
    ("PUT", "/api/v1/retention"): OWN,
}


@dataclass
class World:
    app: FastAPI
    tokens: dict[str, str]  # "acme-admin", "bolt-viewer", "platform", ...
    ids: dict[str, dict[str, str]] = field(default_factory=dict)  # tenant -> param -> id

    def client(self, who: str) -> httpx.AsyncClient:
        return httpx.AsyncClient(
            transport=httpx.ASGITransport(app=self.app),
            base_url="http://api",
            headers={"Authorization": f"Bearer {self.tokens[who]}"},
        )

    def leaks(self, body: str, asked: str = "") -> list[str]:
        """Bolt's ids found in an answer of acme's (but those the request
        itself named: "asset bess-bolt does not exist" tells nothing)."""
        return [v for v in self.ids[B].values() if v in body and v not in asked]


def _system(app: ASGIApp) -> ASGIApp:
    """The app as a headend serves it: in the system scope until the auth
    middleware narrows a request to its principal's tenant (Headend.run)."""

    async def scoped(scope: Scope, receive: Receive, send: Send) -> None:
        with tenancy.scope(tenancy.SYSTEM):
            await app(scope, receive, send)

    return scoped


async def _seed(engine: Any, audit: AuditLog, tenant: str, tokens: TokenStore) -> dict[str, Any]:
    """A tenant's site, gateway, two assets (one held), session, dispatch,
    enrollment token, telemetry, tokens, all written by the product's code."""
    who = Actor("test")
    site, gw = f"site-{tenant}", f"gw-{tenant}"
    await TenantStore(engine, audit).create(tenant, tenant.title(), who)
    with tenancy.scope(tenant):  # as the tenant's admin would
        await EnrollmentStore(engine, audit).enroll(site, gw, 100.0, who)
        enr, _ = await EnrollmentTokens(engine, audit).create(f"gw2-{tenant}", site, who, 600)
    assets = [
        Asset(f"bess-{tenant}", site, AssetType.BESS, PowerLimits(-50, 50)),
        Asset(f"big-{tenant}", site, AssetType.PV, PowerLimits(0, 500)),  # held: > 100 kW
    ]
    store = GatewayStore(engine)
    await store.register(gw, site, "Site", "1.0", assets, Admission(True, 100.0, tenant_id=tenant))
    await store.open_session(f"ses-{tenant}", gw, site, "h1", "q", "peer", "1.0")
    now = datetime.now(UTC)
    dispatch = f"dsp-{tenant}"
    dispatches = DispatchStore(engine)
    await dispatches.insert(
        DispatchInput(
            dispatch_id=dispatch,
            kind="asset",
            asset_id=f"bess-{tenant}",
            site_id=site,
            p_kw=5,
            duration_s=600,
            start_at=now,
            end_at=now + timedelta(minutes=10),
            deliver_by=now + timedelta(minutes=1),
            submitted_by="token:admin",
        )
    )
    await dispatches.record_transitions(
        TransitionRecord(
            dispatch_id=dispatch, seq=1, from_state=None, to_state=DispatchState.SUBMITTED, at=now
        )
    )
    async with engine.begin() as conn:
        for table in ("telemetry", "telemetry_latest"):
            await conn.exec_driver_sql(
                f"INSERT INTO {table} (asset_id, ts, tenant_id, p_kw) VALUES (%s, now(), %s, 1)",
                (f"bess-{tenant}", tenant),
            )
    admin, secret = await tokens.create(f"{tenant}-admin", "admin", who, tenant_id=tenant)
    viewer, view_secret = await tokens.create(f"{tenant}-viewer", "viewer", who, tenant_id=tenant)
    return {
        "ids": {
            "site_id": site,
            "gateway_id": gw,
            "asset_id": f"bess-{tenant}",
            "held_asset": f"big-{tenant}",
            "dispatch_id": dispatch,
            "token_id": admin.id,
            "session": f"ses-{tenant}",
            "enrollment_token": enr["id"],
            "gateway2": f"gw2-{tenant}",
        },
        "tokens": {f"{tenant}-admin": secret, f"{tenant}-viewer": view_secret},
    }


@pytest.fixture(params=["application", "both walls"])
def engine_url(request: pytest.FixtureRequest, database_url: str, tmp_path: Path) -> str:
    db.upgrade(database_url)
    if request.param == "application":
        return database_url  # a superuser: row-level security does not apply
    return ensure_app_login(database_url, APP_ROLE, tmp_path / "app-password")


@pytest_asyncio.fixture(loop_scope="session")
async def world(engine_url: str, database_url: str) -> AsyncIterator[World]:
    owner = db.async_engine(database_url)
    engine = db.async_engine(engine_url)
    try:
        audit = AuditLog(owner)
        tokens = TokenStore(owner, audit)
        found: dict[str, Any] = {"tokens": {}, "ids": {}}
        with tenancy.scope(tenancy.SYSTEM):
            for tenant in (A, B):
                seeded = await _seed(owner, audit, tenant, tokens)
                found["tokens"].update(seeded["tokens"])
                found["ids"][tenant] = seeded["ids"]
            _, found["tokens"]["platform"] = await tokens.create(
                "operator", "platform-admin", Actor("test")
            )
        app_audit = AuditLog(engine)
        app = api_app(engine, app_audit, TokenStore(engine, app_audit))
        deps = app.state.security  # enrollment tokens on (no CA: none is signed here)
        deps.onboarding = GatewayOnboarding(
            app_audit, EnrollmentTokens(engine, app_audit), deps.enrollment, deps.certs, None
        )
        world = World(app, found["tokens"], found["ids"])
        world.app = _system(app)  # type: ignore[assignment]
        yield world
    finally:
        await engine.dispose()
        await owner.dispose()


def _request(method: str, path: str, ids: dict[str, str], mine: dict[str, str]) -> dict[str, Any]:
    url = path
    for param in ("gateway_id", "asset_id", "dispatch_id", "site_id", "token_id", "tenant_id"):
        url = url.replace("{" + param + "}", ids.get(param, B))
    url = url.replace("{name}", "x")
    args: dict[str, Any] = {"method": method, "url": url}
    bodies: dict[str, dict[str, Any]] = {
        "/api/v1/dispatches": {"asset_id": ids["asset_id"], "p_kw": 1, "duration_s": 60},
        "/api/v1/dispatches/preview": {"asset_id": ids["asset_id"], "p_kw": 1, "duration_s": 60},
        "/api/v1/tokens": {"name": "sneaky", "role": "viewer", "tenant_id": B},
        "/api/v1/enrollment-tokens": {"gateway_id": "gw-x", "site_id": ids["site_id"]},
    }
    if method in ("POST", "PUT"):
        args["json"] = bodies.get(path, {})
    if path == "/api/v1/assets/{asset_id}/gateway":
        args["json"] = {"gateway_id": mine["gateway_id"]}
    if path == "/api/v1/sites/{site_id}/gateways" and method == "POST":
        args["json"] = {"gateway_id": "gw-new"}
    if path == "/api/v1/telemetry":
        args["url"] += f"?site_id={ids['site_id']}"
    if path == "/api/v1/audit/export":
        args["url"] += f"?dispatch_id={ids['dispatch_id']}"
    return args


def test_every_route_has_a_tenant_rule() -> None:
    assert set(RULES) - set(TENANT_RULES) == set(), "add a tenant rule for these routes"
    assert set(TENANT_RULES) - set(RULES) == set(), "TENANT_RULES names routes that do not exist"


async def test_bleed_matrix(world: World) -> None:
    """Every route, as acme's admin and viewer, aimed at bolt's objects (one
    test over every route: the world takes seconds to seed)."""
    theirs, mine = world.ids[B], world.ids[A]
    wrong: list[str] = []
    asked = ""  # what acme named so far: its own audit rows may say it back
    for method, path in sorted(TENANT_RULES):
        rule = TENANT_RULES[(method, path)]
        for who in ("acme-admin", "acme-viewer"):
            request = _request(method, path, theirs, mine)
            asked += json.dumps(request)
            async with world.client(who) as c:
                r = await call(c, **request)
            said = f"{method} {path} as {who}: {r.status_code} {r.text[:200]}"
            if r.status_code >= 500 or world.leaks(r.text, asked):
                wrong.append(said)
            # an OBJECT route: 404, or 403 where the role may not use the route at all
            elif rule == OBJECT and r.status_code not in (403, 404):
                wrong.append(said)
            elif rule == OBJECT and r.status_code == 403 and who == "acme-admin":
                wrong.append(said)
            elif rule == PLATFORM and r.status_code != 403:
                wrong.append(said)
    assert wrong == []


async def test_lists_show_the_callers_objects_and_none_of_the_others(world: World) -> None:
    mine = world.ids[A]
    async with world.client("acme-admin") as c:
        for url, expect in (
            ("/api/v1/sites", mine["site_id"]),
            ("/api/v1/assets", mine["asset_id"]),
            ("/api/v1/agents", mine["gateway_id"]),
            ("/api/v1/agents/sessions", mine["session"]),
            ("/api/v1/dispatches", mine["dispatch_id"]),
            ("/api/v1/telemetry/latest", mine["asset_id"]),
            (f"/api/v1/telemetry?site_id={mine['site_id']}", mine["asset_id"]),
            ("/api/v1/gateways", mine["gateway_id"]),
            (f"/api/v1/sites/{mine['site_id']}/held-assets", mine["held_asset"]),
            ("/api/v1/enrollment-tokens", mine["enrollment_token"]),
            ("/api/v1/tokens", mine["token_id"]),
            ("/api/v1/audit", mine["gateway_id"]),
            (f"/api/v1/dispatches/{mine['dispatch_id']}", "submitted"),
        ):
            r = await c.get(url)
            assert r.status_code == 200, (url, r.text)
            assert expect in r.text and world.leaks(r.text) == [], (url, r.text[:300])


async def test_a_platform_admin_sees_every_tenant_and_manages_tenants(world: World) -> None:
    async with world.client("platform") as c:
        listed = {s["id"] for s in (await c.get("/api/v1/sites")).json()}
        assert {world.ids[A]["site_id"], world.ids[B]["site_id"]} <= listed
        tenants = {t["id"] for t in (await c.get("/api/v1/tenants")).json()}
        assert {"default", A, B} <= tenants
        me = (await c.get("/api/v1/me")).json()
        assert "tenants" in me["permissions"] and "dispatch" not in me["permissions"]


async def test_a_suspended_tenants_principals_are_refused_until_resumed(world: World) -> None:
    async with world.client("platform") as platform:
        r = await platform.post(f"/api/v1/tenants/{B}/suspend")
        assert r.status_code == 200 and r.json()["suspended_at"], r.text
        try:
            async with world.client("bolt-admin") as bolt:
                refused = await bolt.get("/api/v1/assets")
                assert refused.status_code == 401
                assert refused.json()["message"] == f"tenant {B} is suspended"
            async with world.client("acme-admin") as acme:  # the others are not touched
                assert (await acme.get("/api/v1/assets")).status_code == 200
        finally:
            r = await platform.post(f"/api/v1/tenants/{B}/resume")
            assert r.status_code == 200 and r.json()["suspended_at"] is None
        async with world.client("bolt-admin") as bolt:
            assert (await bolt.get("/api/v1/assets")).status_code == 200
        audit = (await platform.get("/api/v1/audit", params={"target": B})).json()
        assert [(a["action"], a["outcome"]) for a in audit][-4:] == [
            ("tenant.suspend", "attempt"),
            ("tenant.suspend", "ok"),
            ("tenant.resume", "attempt"),
            ("tenant.resume", "ok"),
        ]


async def test_tenant_input_errors_name_the_field(world: World) -> None:
    async with world.client("platform") as c:
        bad = await c.post("/api/v1/tenants", json={"id": "Not An Id", "name": "x"})
        assert bad.status_code == 422 and "id" in bad.text
        dup = await c.post("/api/v1/tenants", json={"id": A, "name": "again"})
        assert dup.status_code == 409 and dup.json()["field"] == "id"
        unknown = await c.post("/api/v1/tenants/nope/suspend")
        assert unknown.status_code == 404 and unknown.json()["field"] == "tenant_id"
        no_tenant = await c.post(
            "/api/v1/tokens", json={"name": "x1", "role": "viewer", "tenant_id": "nope"}
        )
        assert no_tenant.status_code == 422 and no_tenant.json()["field"] == "tenant_id"
        made = await c.post(
            "/api/v1/tokens", json={"name": "cadmin", "role": "admin", "tenant_id": A}
        )
        assert made.status_code == 201 and made.json()["tenant_id"] == A
    async with world.client("acme-admin") as c:
        escalate = await c.post("/api/v1/tokens", json={"name": "root", "role": "platform-admin"})
        assert escalate.status_code == 403, escalate.text


def test_the_app_role_is_not_a_superuser(engine_url: str, database_url: str) -> None:
    """The 'both walls' run is as the app role, to which row security applies."""
    with psycopg.connect(engine_url) as conn:
        user, superuser = conn.execute(
            "SELECT current_user, rolsuper FROM pg_roles WHERE rolname = current_user"
        ).fetchone() or ("", True)
    assert (user == APP_ROLE and not superuser) or engine_url == database_url
