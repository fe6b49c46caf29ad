"""REST auth: 401 without a valid credential, 403 without the role, a role matrix over
every route (a route without a rule fails here), tokens stored hashed and never logged.

The app runs in process (httpx ASGI transport) on a real, migrated database; it
needs no Temporal, so dispatch routes that pass auth answer 422/404/503."""

from __future__ import annotations

from collections.abc import AsyncIterator
from dataclasses import dataclass
from typing import Any

import httpx
import psycopg
import pytest
import pytest_asyncio
from fastapi import FastAPI
from gp_testing import api_app, call
from structlog.testing import capture_logs

from gridpilot.api.auth import RULES
from gridpilot.schema import db
from gridpilot.security.audit import Actor, AuditLog
from gridpilot.security.principal import GRANTS, Permission, Role
from gridpilot.security.tokens import TokenStore

pytestmark = pytest.mark.integration
ROLES = [r.value for r in Role]


@dataclass
class Api:
    app: FastAPI
    tokens: TokenStore
    audit: AuditLog
    database_url: str
    by_role: dict[str, str]

    def client(self, token: str | None = None) -> httpx.AsyncClient:
        headers = {"Authorization": f"Bearer {token}"} if token else {}
        return httpx.AsyncClient(
            transport=httpx.ASGITransport(app=self.app), base_url="http://api", headers=headers
        )


@pytest_asyncio.fixture(loop_scope="session")
async def api(database_url: str) -> AsyncIterator[Api]:
    db.upgrade(database_url)
    engine = db.async_engine(database_url)
    audit = AuditLog(engine)
    tokens = TokenStore(engine, audit)
    app = api_app(engine, audit, tokens)
    by_role = {r: (await tokens.create(f"t-{r}", r, Actor("test")))[1] for r in ROLES}
    try:
        yield Api(app, tokens, audit, database_url, by_role)
    finally:
        await engine.dispose()


def app_routes(app: FastAPI) -> set[tuple[str, str]]:
    """Every (method, path) the app serves: the OpenAPI paths plus routes kept out of it."""
    found = {
        (method.upper(), path) for path, ops in app.openapi()["paths"].items() for method in ops
    }
    for route in app.routes:
        for method in getattr(route, "methods", None) or ():
            if method != "HEAD":
                found.add((method, str(getattr(route, "path", ""))))
    return found


async def test_every_route_has_an_access_rule(api: Api) -> None:
    routes = app_routes(api.app)
    assert routes - set(RULES) == set(), "add these routes to gridpilot.api.auth.RULES"
    assert set(RULES) - routes == set(), "RULES names routes that do not exist"


async def test_a_route_without_a_rule_is_refused_even_for_admin(api: Api) -> None:
    @api.app.get("/api/v1/forgotten")
    async def forgotten() -> dict[str, str]:
        return {"secret": "data"}

    try:
        async with api.client(api.by_role["admin"]) as c:
            r = await c.get("/api/v1/forgotten")
        assert r.status_code == 403 and r.json()["code"] == "forbidden"
        async with api.client() as c:
            assert (await c.get("/api/v1/forgotten")).status_code == 401
    finally:
        api.app.router.routes.pop()


def _call_args(method: str, path: str) -> dict[str, Any]:
    url = path.replace("{", "").replace("}", "")  # /api/v1/assets/asset_id, ...
    args: dict[str, Any] = {"method": method, "url": url}
    if method in ("POST", "PUT"):
        args["json"] = {}
    return args


@pytest.mark.parametrize(("method", "path"), sorted(RULES))
async def test_role_matrix(api: Api, method: str, path: str) -> None:
    rule = RULES[(method, path)]
    async with api.client() as anonymous:
        r = await call(anonymous, **_call_args(method, path))
    if rule is Permission.PUBLIC:
        assert r.status_code not in (401, 403), r.text
    else:
        assert r.status_code == 401, r.text
        assert r.json()["code"] == "unauthenticated"
        assert r.headers["www-authenticate"].startswith("Bearer")
    for role in ROLES:
        async with api.client(api.by_role[role]) as c:
            r = await call(c, **_call_args(method, path))
        allowed = (
            rule in (Permission.PUBLIC, Permission.AUTHENTICATED) or rule in GRANTS[Role(role)]
        )
        if allowed:
            assert r.status_code not in (401, 403), f"{role}: {r.status_code} {r.text}"
        else:
            assert r.status_code == 403, f"{role}: {r.status_code} {r.text}"
            assert r.json()["code"] == "forbidden"


async def test_bad_credentials_are_401(api: Api) -> None:
    async with api.client() as c:
        for header in (
            "Bearer gp_not-a-real-token",
            "Basic YWxpY2U6c2VjcmV0",
            "Bearer ",
            f"Token {api.by_role['admin']}",
            "Bearer eyJhbGciOiJub25lIn0.eyJzdWIiOiJ4In0.",  # a JWT while OIDC is off
        ):
            r = await c.get("/api/v1/assets", headers={"Authorization": header})
            assert r.status_code == 401, header
    async with api.client() as c:
        assert (await c.get("/api/v1/nothing-here")).status_code == 401
    async with api.client(api.by_role["viewer"]) as c:
        assert (await c.get("/api/v1/nothing-here")).status_code == 404


async def test_token_lifecycle_hashed_at_rest_revoked_is_401_and_never_logged(api: Api) -> None:
    with capture_logs() as logs:
        async with api.client(api.by_role["admin"]) as admin:
            r = await admin.post("/api/v1/tokens", json={"name": "alice", "role": "operator"})
            assert r.status_code == 201, r.text
            created = r.json()
            secret = created["token"]
            assert secret.startswith("gp_") and created["role"] == "operator"
            listed = (await admin.get("/api/v1/tokens")).json()
            assert "token" not in listed[0] and secret not in str(listed)
            again = await admin.post("/api/v1/tokens", json={"name": "alice", "role": "viewer"})
            assert again.status_code == 409
        async with api.client(secret) as alice:
            me = (await alice.get("/api/v1/me")).json()
            assert me == {
                "principal": "token:alice",
                "roles": ["operator"],
                "auth": "token",
                "permissions": ["read", "dispatch"],
                "tenant_id": "default",
            }
            assert (await alice.get("/api/v1/tokens")).status_code == 403
        async with api.client(api.by_role["admin"]) as admin:
            r = await admin.post(f"/api/v1/tokens/{created['id']}/revoke")
            assert r.status_code == 200 and r.json()["revoked_at"]
        async with api.client(secret) as alice:
            r = await alice.get("/api/v1/assets")
            assert r.status_code == 401
            assert secret not in r.text
    with psycopg.connect(api.database_url) as conn:
        rows = conn.execute("SELECT token_hash, prefix FROM api_tokens WHERE name = 'alice'")
        token_hash, prefix = rows.fetchone()  # type: ignore[misc]
    assert secret not in token_hash and len(token_hash) == 64 and secret.startswith(prefix)
    text = repr(logs)
    assert secret not in text
    for other in api.by_role.values():
        assert other not in text
    requests = [e for e in logs if e["event"] == "http_request"]
    assert requests and all(
        {"principal", "role", "method", "path", "status", "duration_ms"} <= e.keys()
        for e in requests
    )
    assert any(e["principal"] == "token:alice" and e["status"] == 403 for e in requests)


async def test_expired_token_is_401(api: Api) -> None:
    from datetime import UTC, datetime, timedelta

    _, secret = await api.tokens.create(
        "short-lived", "viewer", Actor("test"), datetime.now(UTC) + timedelta(seconds=1)
    )
    with psycopg.connect(api.database_url, autocommit=True) as conn:
        conn.execute(
            "UPDATE api_tokens SET expires_at = now() - interval '1 s' WHERE name = 'short-lived'"
        )
    async with api.client(secret) as c:
        assert (await c.get("/api/v1/assets")).status_code == 401


async def test_forbidden_attempts_to_act_are_audited(api: Api) -> None:
    async with api.client(api.by_role["viewer"]) as viewer:
        r = await viewer.post(
            "/api/v1/dispatches", json={"asset_id": "a", "p_kw": 1, "duration_s": 10}
        )
        assert r.status_code == 403
    rows = await api.audit.query(action="http.forbidden")
    assert [(x["actor"], x["target"], x["outcome"]) for x in rows] == [
        ("token:t-viewer", "POST /api/v1/dispatches", "refused")
    ]


async def test_health_is_open_and_metrics_need_a_token(api: Api) -> None:
    async with api.client() as c:
        assert (await c.get("/healthz")).status_code == 200
        assert (await c.get("/readyz")).status_code in (200, 503)
        assert (await c.get("/metrics")).status_code == 401
        page = await c.get("/")
        assert page.status_code == 200 and "sessionStorage" in page.text
