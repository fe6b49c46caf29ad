"""The REST surface says what it does: 405 with Allow, an OpenAPI document
with the bearer scheme and every status a route answers, security headers,
/docs served from the package, the last admin token kept, and a database
outage answered 503 with one log line.

The app runs in process (httpx ASGI transport) on a real, migrated database,
without Temporal (dispatch routes that pass auth answer 503)."""

from __future__ import annotations

import asyncio
import base64
import hashlib
import re
from collections.abc import AsyncIterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import httpx
import pytest
import pytest_asyncio
from fastapi import FastAPI
from gp_testing import api_app, call
from structlog.testing import capture_logs

from gridpilot.api.auth import RULES
from gridpilot.core.errors import Conflict
from gridpilot.ops.embedded import EmbeddedPostgres
from gridpilot.ops.processes import free_port
from gridpilot.schema import db
from gridpilot.security.audit import Actor, AuditLog
from gridpilot.security.principal import Permission, Role
from gridpilot.security.tokens import TokenStore

pytestmark = pytest.mark.integration
ROLES = [r.value for r in Role]
ERROR_REF = "#/components/schemas/ErrorView"


@dataclass
class Api:
    app: FastAPI
    tokens: TokenStore
    by_role: dict[str, str]

    def client(self, token: str | None = None) -> httpx.AsyncClient:
        headers = {"Authorization": f"Bearer {token}"} if token else {}
        return httpx.AsyncClient(
            transport=httpx.ASGITransport(app=self.app), base_url="http://api", headers=headers
        )


def _app(database_url: str) -> tuple[FastAPI, TokenStore, Any]:
    engine = db.async_engine(database_url)
    audit = AuditLog(engine)
    tokens = TokenStore(engine, audit)
    app = api_app(engine, audit, tokens)
    return app, tokens, engine


@pytest_asyncio.fixture(loop_scope="session")
async def api(database_url: str) -> AsyncIterator[Api]:
    db.upgrade(database_url)
    app, tokens, engine = _app(database_url)
    by_role = {r: (await tokens.create(f"t-{r}", r, Actor("test")))[1] for r in ROLES}
    try:
        yield Api(app, tokens, by_role)
    finally:
        await engine.dispose()


# ------------------------------------------------------------------ 405
async def test_405_names_every_method_of_the_path_in_allow(api: Api) -> None:
    async with api.client(api.by_role["admin"]) as c:
        r = await c.delete("/api/v1/dispatches")
        assert r.status_code == 405
        assert r.headers["allow"] == "GET, POST"
        assert r.json()["code"] == "method_not_allowed"
        r = await c.get("/api/v1/tokens/tok_x/revoke")
        assert (r.status_code, r.headers["allow"]) == (405, "POST")
        r = await c.post("/healthz")
        assert (r.status_code, r.headers["allow"]) == (405, "GET")


# ------------------------------------------------------------------ OpenAPI
async def test_openapi_has_the_bearer_scheme_and_each_operation_says_who_may_call(
    api: Api,
) -> None:
    async with api.client() as c:
        doc = (await c.get("/openapi.json")).json()
    assert doc["components"]["securitySchemes"]["bearer"] == {
        "type": "http",
        "scheme": "bearer",
        "description": doc["components"]["securitySchemes"]["bearer"]["description"],
    }
    seen = 0
    for path, item in doc["paths"].items():
        for method, op in item.items():
            rule = RULES[(method.upper(), path)]
            seen += 1
            if rule is Permission.PUBLIC:
                assert op["security"] == [], (method, path)
                assert "401" not in op["responses"]
                continue
            assert op["security"] == [{"bearer": []}], (method, path)
            for status in ("401", "503"):
                content = op["responses"][status]["content"]["application/json"]
                assert content["schema"] == {"$ref": ERROR_REF}, (method, path, status)
            if rule is not Permission.AUTHENTICATED:
                assert rule.value in op["responses"]["403"]["description"]
    assert seen >= 20
    # FastAPI's own validation model is gone: a 422 is our error model.
    assert "HTTPValidationError" not in doc["components"]["schemas"]
    revoke = doc["paths"]["/api/v1/tokens/{token_id}/revoke"]["post"]["responses"]
    assert {"401", "403", "404", "409", "422", "503"} <= revoke.keys()
    assert "503" in doc["paths"]["/readyz"]["get"]["responses"]


def _call_args(method: str, path: str) -> dict[str, Any]:
    url = path.replace("{", "").replace("}", "")  # /api/v1/assets/asset_id, ...
    args: dict[str, Any] = {"method": method, "url": url}
    if method in ("POST", "PUT"):
        args["json"] = {}
    return args


async def test_every_status_a_route_answers_is_in_its_openapi_responses(api: Api) -> None:
    """Call every operation anonymously and with each role, with empty bodies
    and unknown ids (401, 403, 404, 422, 503 without Temporal): the status
    each call got must be documented for it, with the error model."""
    async with api.client() as c:
        doc = (await c.get("/openapi.json")).json()
    undocumented = []
    for path, item in doc["paths"].items():
        for method, op in item.items():
            for token in [None, *api.by_role.values()]:
                async with api.client(token) as c:
                    r = await call(c, **_call_args(method.upper(), path))
                documented = op["responses"].get(str(r.status_code))
                if documented is None:
                    undocumented.append((method, path, r.status_code, r.text[:80]))
                elif r.status_code >= 400 and path != "/readyz":
                    schema = documented["content"]["application/json"]["schema"]
                    assert schema == {"$ref": ERROR_REF}, (method, path, r.status_code)
                    assert {"code", "message"} <= r.json().keys()
    assert undocumented == [], "\n".join(map(str, undocumented))


# ------------------------------------------------------------------ headers, /docs
def _hash(text: str) -> str:
    return "'sha256-" + base64.b64encode(hashlib.sha256(text.encode()).digest()).decode() + "'"


@pytest.mark.parametrize(
    "path",
    [
        "/",
        "/console/dispatches/dsp-x",
        "/console/agents",
        "/console/sites/site-x",
        "/console/assets/asset-x",
        "/docs",
    ],
)
async def test_pages_send_security_headers_and_allow_only_their_own_inline_code(
    api: Api, path: str
) -> None:
    async with api.client() as c:
        r = await c.get(path)
    assert r.status_code == 200 and r.headers["content-type"].startswith("text/html")
    assert r.headers["x-content-type-options"] == "nosniff"
    assert r.headers["x-frame-options"] == "DENY"
    assert r.headers["referrer-policy"] == "no-referrer"
    csp = dict(
        (d.strip().split(" ", 1) + [""])[:2]
        for d in r.headers["content-security-policy"].split(";")
    )
    assert csp["default-src"] == "'none'"
    assert csp["frame-ancestors"] == "'none'"
    assert "unsafe-inline" not in r.headers["content-security-policy"]
    scripts = re.findall(r"<script>(.*?)</script>", r.text, re.DOTALL)
    assert scripts, "the page has an inline script to allow"
    for body in scripts:
        assert _hash(body) in csp["script-src"].split()


async def test_api_answers_send_security_headers_too(api: Api) -> None:
    async with api.client() as anonymous:
        for r in (await anonymous.get("/api/v1/assets"), await anonymous.get("/openapi.json")):
            assert r.headers["x-content-type-options"] == "nosniff"
            assert r.headers["x-frame-options"] == "DENY"
            assert "frame-ancestors 'none'" in r.headers["content-security-policy"]


async def test_docs_use_only_assets_served_by_the_package(api: Api) -> None:
    async with api.client() as anonymous:
        page = await anonymous.get("/docs")
        refs = re.findall(r"""(?:src|href)=["']([^"']+)["']""", page.text)
        assert len(refs) == 3, refs  # bundle, css, favicon
        for ref in refs:
            assert ref.startswith("/docs/assets/"), ref
            asset = await anonymous.get(ref)
            assert asset.status_code == 200 and len(asset.content) > 1000, ref
            assert asset.headers["x-content-type-options"] == "nosniff"
        assert "https://" not in page.text and "http://" not in page.text
        # Swagger UI would otherwise ask validator.swagger.io about the document.
        assert "validatorUrl" in page.text
        # Only the listed files: no path reaches the filesystem.
        assert (await anonymous.get("/docs/assets/..%2Fcore.py")).status_code in (401, 404)
        assert (await anonymous.get("/docs/assets/core.py")).status_code == 404
        assert (await anonymous.get("/redoc")).status_code == 401  # no such page
        # The console's assets likewise: its script and style, nothing else.
        for name in ("console.js", "chart.js", "console.css", "favicon.svg"):
            assert (await anonymous.get(f"/console/static/{name}")).status_code == 200
        assert (await anonymous.get("/console/static/index.html")).status_code == 404
        assert (await anonymous.get("/console/static/..%2Fpages.py")).status_code in (401, 404)
        # The browser's own favicon request is answered without a token.
        assert (await anonymous.get("/favicon.ico")).status_code == 204


# ------------------------------------------------------------------ last admin
async def test_revoking_the_last_admin_token_is_refused_409(api: Api) -> None:
    admin = api.by_role["admin"]
    async with api.client(admin) as c:
        me = {t["name"]: t["id"] for t in (await c.get("/api/v1/tokens")).json()}
        r = await c.post(f"/api/v1/tokens/{me['t-admin']}/revoke")
        assert r.status_code == 409, r.text
        assert r.json()["code"] == "conflict" and "last live admin" in r.json()["message"]
        assert (await c.get("/api/v1/me")).status_code == 200  # still an admin

        # With a second admin, the first may go; then the second is the last.
        r = await c.post("/api/v1/tokens", json={"name": "second-admin", "role": "admin"})
        second = r.json()
    async with api.client(second["token"]) as c:
        assert (await c.post(f"/api/v1/tokens/{me['t-admin']}/revoke")).status_code == 200
        r = await c.post(f"/api/v1/tokens/{second['id']}/revoke")  # its own, the last
        assert r.status_code == 409
        assert (await c.get("/api/v1/me")).status_code == 200


async def test_two_admins_revoking_each_other_at_once_leave_one(api: Api) -> None:
    others = [(await api.tokens.create(f"adm-{i}", "admin", Actor("test")))[0] for i in range(2)]
    await api.tokens.revoke("t-admin", Actor("test"))
    results = await asyncio.gather(
        api.tokens.revoke(others[0].id, Actor("adm-1")),
        api.tokens.revoke(others[1].id, Actor("adm-0")),
        return_exceptions=True,
    )
    assert sorted(type(r).__name__ for r in results) == ["Conflict", "TokenInfo"]
    assert [t.name for t in await api.tokens.list() if t.role == "admin"] != []


async def test_rotating_the_last_admin_token_replaces_it_in_one_step(api: Api) -> None:
    """What `gridpilot up` does when its token file is stale."""
    old = api.by_role["admin"]
    info, new = await api.tokens.rotate("t-admin", "admin", Actor("up"))
    async with api.client(old) as c:
        assert (await c.get("/api/v1/me")).status_code == 401
    async with api.client(new) as c:
        assert (await c.get("/api/v1/me")).json()["principal"] == "token:t-admin"
    live_admins = [t for t in await api.tokens.list() if t.role == "admin"]
    assert [t.id for t in live_admins] == [info.id]
    with pytest.raises(Conflict):
        await api.tokens.revoke(info.id, Actor("test"))


# ------------------------------------------------------------------ DB outage
async def test_database_outage_is_503_with_one_log_line_per_request(tmp_path: Path) -> None:
    """The token check cannot reach the database: the client gets 503, and the
    request log has one line with status 503 (no 500, no traceback escaping
    the app, which uvicorn would print per request)."""
    pg = EmbeddedPostgres(tmp_path / "pg", free_port(), fast=True)
    pg.start()
    engine = None
    try:
        url = pg.url()
        db.upgrade(url)
        app, tokens, engine = _app(url)
        _, viewer = await tokens.create("viewer", "viewer", Actor("test"))
        client = Api(app, tokens, {}).client(viewer)
        async with client:
            assert (await client.get("/api/v1/assets")).status_code == 200
            pg.stop()
            with capture_logs() as logs:
                r = await client.get("/api/v1/assets")
                ready = await client.get("/readyz")
        assert r.status_code == 503, r.text
        assert r.json()["code"] == "database_unavailable"
        assert r.headers["retry-after"] == "5"
        assert ready.status_code == 503 and ready.json()["not_ready"] == ["database"]
        lines = [e for e in logs if e.get("path") == "/api/v1/assets"]
        assert len(lines) == 1, logs
        assert lines[0]["event"] == "http_request" and lines[0]["status"] == 503
        assert lines[0]["error"].startswith("database_unavailable")
        assert "exc_info" not in lines[0]
        assert 0 <= lines[0]["duration_ms"] < 60_000  # the request's own time, not a clock value
    finally:
        if engine is not None:
            await engine.dispose()
        pg.stop()


async def test_up_replaces_a_stale_admin_token_even_when_it_is_the_last(
    database_url: str,
) -> None:
    """`gridpilot up` with a token file that no longer works (here: the only
    admin token is live but the file lost it): a new token replaces it."""
    from gridpilot.ops.up_security import ADMIN_TOKEN_NAME, _admin_token

    db.upgrade(database_url)
    first = await _admin_token(database_url, None)
    assert await _admin_token(database_url, first) == first  # reused while live
    second = await _admin_token(database_url, "gp_lost")
    assert second != first
    engine = db.async_engine(database_url)
    try:
        tokens = TokenStore(engine, AuditLog(engine))
        assert await tokens.authenticate(first) is None
        assert await tokens.authenticate(second) is not None
        assert [(t.name, t.role) for t in await tokens.list()] == [(ADMIN_TOKEN_NAME, "admin")]
    finally:
        await engine.dispose()
