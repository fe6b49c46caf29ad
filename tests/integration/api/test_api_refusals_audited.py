"""Refused REST attempts that matter are audited with their route: a 403, and
a 401 for a token-shaped credential; each distinct cause once per window, so a
flood cannot fill the audit table."""

from __future__ import annotations

from collections.abc import AsyncIterator
from dataclasses import dataclass

import httpx
import pytest
import pytest_asyncio
from fastapi import FastAPI
from gp_testing import api_app

from gridpilot.schema import db
from gridpilot.security.audit import Actor, AuditLog
from gridpilot.security.refusals import RefusalLimiter
from gridpilot.security.tokens import TokenStore

pytestmark = pytest.mark.integration
MAX_CAUSES = 5


@dataclass
class Api:
    app: FastAPI
    audit: AuditLog
    viewer: str

    def client(self, authorization: str | None) -> httpx.AsyncClient:
        headers = {"Authorization": authorization} if authorization else {}
        return httpx.AsyncClient(
            transport=httpx.ASGITransport(app=self.app), base_url="http://api", headers=headers
        )

    async def refusals(self) -> list[tuple[str, str, str, int]]:
        rows = [
            r
            for r in await self.audit.query()
            if r["action"] in ("http.unauthenticated", "http.forbidden")
        ]
        return [(r["actor"], r["target"], r["outcome"], r["detail"]["status"]) for r in rows]


@pytest_asyncio.fixture(loop_scope="session")
async def api(database_url: str) -> AsyncIterator[Api]:
    db.upgrade(database_url)
    engine = db.async_engine(database_url)
    audit = AuditLog(engine)
    tokens = TokenStore(engine, audit)
    limiter = RefusalLimiter(window_s=3600, max_causes=MAX_CAUSES)
    app = api_app(engine, audit, tokens, refusals=limiter)
    viewer = (await tokens.create("eve", "viewer", Actor("test")))[1]
    try:
        yield Api(app, audit, viewer)
    finally:
        await engine.dispose()


def _fake_token(i: int) -> str:
    return f"gp_{i:06d}" + "x" * 37


async def test_a_token_shaped_401_is_audited_with_its_route_once(api: Api) -> None:
    body = {"asset_id": "a", "p_kw": 1, "duration_s": 10}
    async with api.client(f"Bearer {_fake_token(1)}") as c:
        for _ in range(20):
            assert (await c.post("/api/v1/dispatches", json=body)).status_code == 401
        assert (await c.get("/api/v1/audit")).status_code == 401
    for header in (None, "Bearer not-a-token", "Basic dXNlcjpwYXNz"):
        async with api.client(header) as c:
            assert (await c.post("/api/v1/dispatches", json=body)).status_code == 401
    assert await api.refusals() == [
        ("credential:gp_000001", "POST /api/v1/dispatches", "refused", 401),
        ("credential:gp_000001", "GET /api/v1/audit", "refused", 401),
    ]
    rows = await api.audit.query(action="http.unauthenticated")
    assert rows[1]["detail"]["unrecorded_before"] == 19
    assert _fake_token(1) not in str(rows)


async def test_a_403_is_audited_with_its_route_for_reads_and_writes(api: Api) -> None:
    async with api.client(f"Bearer {api.viewer}") as c:
        assert (await c.get("/api/v1/tokens")).status_code == 403
        assert (await c.get("/api/v1/tokens")).status_code == 403
        r = await c.post("/api/v1/dispatches/dsp-1/cancel", json={})
        assert r.status_code == 403
    assert await api.refusals() == [
        ("token:eve", "GET /api/v1/tokens", "refused", 403),
        ("token:eve", "POST /api/v1/dispatches/{dispatch_id}/cancel", "refused", 403),
    ]


async def test_a_flood_of_distinct_bad_tokens_writes_a_bounded_number_of_rows(api: Api) -> None:
    for i in range(40):
        async with api.client(f"Bearer {_fake_token(i)}") as c:
            assert (await c.get("/api/v1/assets")).status_code == 401
    assert len(await api.refusals()) == MAX_CAUSES
