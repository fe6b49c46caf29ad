"""Every bad input is a 4xx naming the field, never a 500 or SQL text: NUL
characters, ids past int64, instants Python or PostgreSQL cannot hold, numbers
where a date-time belongs, unknown enum values, absurd floats, huge bodies.

The app runs in process (httpx ASGI transport) on a real, migrated database
with an admin token; it needs no Temporal: every refusal here comes before it."""

from __future__ import annotations

import json
import re
from collections.abc import AsyncIterator
from datetime import UTC, datetime, timedelta
from typing import Any

import httpx
import pytest
import pytest_asyncio
from fastapi import FastAPI
from gp_testing import api_app

from gridpilot.api.inputs import DEFAULT_MAX_BODY_BYTES, RequestBody
from gridpilot.schema import db
from gridpilot.security.audit import Actor, AuditLog
from gridpilot.security.tokens import TokenStore

pytestmark = pytest.mark.integration
DISPATCH = {"asset_id": "bess-1", "p_kw": 5, "duration_s": 10}


@pytest_asyncio.fixture(loop_scope="session")
async def app(database_url: str) -> AsyncIterator[tuple[FastAPI, str]]:
    db.upgrade(database_url)
    engine = db.async_engine(database_url)
    audit = AuditLog(engine)
    tokens = TokenStore(engine, audit)
    fastapi_app = api_app(engine, audit, tokens)
    _, admin = await tokens.create("input-admin", "admin", Actor("test"))
    _, platform = await tokens.create("input-platform", "platform-admin", Actor("test"))
    fastapi_app.state.platform_token = platform  # for the tenant routes (the operator's)
    try:
        yield fastapi_app, admin
    finally:
        await engine.dispose()


@pytest_asyncio.fixture(loop_scope="session")
async def api(app: tuple[FastAPI, str]) -> AsyncIterator[httpx.AsyncClient]:
    fastapi_app, token = app

    async def as_platform_for_tenants(request: httpx.Request) -> None:
        if request.url.path.startswith("/api/v1/tenants"):
            request.headers["Authorization"] = f"Bearer {fastapi_app.state.platform_token}"

    async with httpx.AsyncClient(
        transport=httpx.ASGITransport(app=fastapi_app),
        base_url="http://api",
        headers={"Authorization": f"Bearer {token}"},
        event_hooks={"request": [as_platform_for_tenants]},
    ) as client:
        yield client


def _refused(r: httpx.Response, field: str, status: int = 422) -> None:
    assert r.status_code == status, r.text
    body = r.json()
    assert body["field"] == field, body
    assert body["code"] == "validation_failed"
    assert "SELECT" not in r.text and "DataError" not in r.text


def _operations(fastapi_app: FastAPI) -> list[tuple[str, str, dict[str, Any]]]:
    return [
        (method.upper(), path, op)
        for path, ops in fastapi_app.openapi()["paths"].items()
        for method, op in ops.items()
    ]


# --- NUL characters: PostgreSQL text cannot hold them (was 500 DataError) -------------


async def test_nul_in_any_path_parameter_is_a_422_naming_it(
    app: tuple[FastAPI, str], api: httpx.AsyncClient
) -> None:
    tried = []
    for method, path, _ in _operations(app[0]):
        names = re.findall(r"{(\w+)}", path)
        if not names:
            continue
        url = path
        for name in names:
            url = url.replace(f"{{{name}}}", "x%00y")
        body = {"gateway_id": "gw-1"} if method == "PUT" else None
        r = await api.request(method, url, json=body)
        _refused(r, names[0])
        tried.append((method, path))
    assert len(tried) >= 8, tried


async def test_nul_in_any_query_parameter_is_a_422_naming_it(
    app: tuple[FastAPI, str], api: httpx.AsyncClient
) -> None:
    tried = []
    for method, path, op in _operations(app[0]):
        if "{" in path:
            continue
        for param in op.get("parameters", []):
            if param["in"] != "query":
                continue
            r = await api.request(method, f"{path}?{param['name']}=x%00y")
            _refused(r, param["name"])
            tried.append((path, param["name"]))
    assert len(tried) >= 10, tried
    # An unknown parameter's name is checked too.
    _refused(await api.get("/api/v1/assets?x%00=1"), "x\x00")


@pytest.mark.parametrize(
    ("method", "path", "body", "field"),
    [
        ("POST", "/api/v1/dispatches", {**DISPATCH, "asset_id": "a\x00"}, "asset_id"),
        ("POST", "/api/v1/dispatches/d-1/cancel", {"detail": "a\x00b"}, "detail"),
        ("POST", "/api/v1/gateways/gw-1/revoke", {"reason": "a\x00b"}, "reason"),
        ("PUT", "/api/v1/assets/a-1/gateway", {"gateway_id": "gw", "reason": "\x00"}, "reason"),
        ("POST", "/api/v1/dispatches/d-1/cancel", {"detail": "\ud800"}, "detail"),
    ],
)
async def test_nul_or_a_lone_surrogate_in_a_body_field_is_a_422_naming_it(
    api: httpx.AsyncClient, method: str, path: str, body: dict[str, Any], field: str
) -> None:
    raw = json.dumps(body).encode()  # \u0000 and \ud800 escapes, as any client may send
    r = await api.request(method, path, content=raw, headers={"Content-Type": "application/json"})
    _refused(r, field)


def test_every_request_body_is_a_request_body(app: tuple[FastAPI, str]) -> None:
    """New routes get the NUL/unknown-field check only through the base class."""
    for route in app[0].routes:
        field = getattr(route, "body_field", None)
        if field is None:
            continue
        annotation = field.field_info.annotation
        models = [a for a in getattr(annotation, "__args__", (annotation,)) if a is not type(None)]
        for model in models:
            assert issubclass(model, RequestBody), (getattr(route, "path", ""), model)


# --- numbers --------------------------------------------------------------------------


async def test_after_id_beyond_int64_is_a_422(api: httpx.AsyncClient) -> None:
    _refused(await api.get(f"/api/v1/audit?after_id={2**63}"), "after_id")
    assert (await api.get(f"/api/v1/audit?after_id={2**63 - 1}")).status_code == 200


@pytest.mark.parametrize("field", ["q_kvar", "ramp_kw_per_s", "p_kw"])
async def test_absurd_power_values_are_a_422(api: httpx.AsyncClient, field: str) -> None:
    _refused(await api.post("/api/v1/dispatches", json={**DISPATCH, field: 1e308}), field)
    _refused(await api.post("/api/v1/dispatches/preview", json={**DISPATCH, field: 1e7}), field)


# --- instants -------------------------------------------------------------------------


@pytest.mark.parametrize(
    "start_at",
    [
        "9999-12-31T23:59:59-05:00",
        "0001-01-01T00:00:00+01:00",
        (datetime.now(UTC) + timedelta(days=400)).isoformat(),
        1893456000,
        "1893456000",
    ],
)
async def test_start_at_out_of_range_or_not_a_date_time_is_a_422(
    api: httpx.AsyncClient, start_at: Any
) -> None:
    _refused(
        await api.post("/api/v1/dispatches", json={**DISPATCH, "start_at": start_at}), "start_at"
    )


@pytest.mark.parametrize(
    "query",
    [
        "start=0001-01-01T00:00:00Z",
        "start=0001-01-01T00:30:00%2B01:00",
        "end=9999-12-31T23:59:59Z",
        "end=9999-12-31T23:59:59-05:00",
        "start=0.5",
    ],
)
async def test_telemetry_window_out_of_range_is_a_422(api: httpx.AsyncClient, query: str) -> None:
    _refused(await api.get(f"/api/v1/telemetry?asset_id=a&{query}"), query.split("=")[0])


@pytest.mark.parametrize("path", ["/api/v1/dispatches", "/api/v1/audit"])
@pytest.mark.parametrize("since", ["0.5", "0", "1e10", "now", "9999-12-31T23:59:59Z"])
async def test_a_number_or_word_is_not_a_date_time(
    api: httpx.AsyncClient, path: str, since: str
) -> None:
    _refused(await api.get(f"{path}?since={since}"), "since")
    ok = await api.get(path, params={"since": "2026-01-01T00:00:00Z"})
    assert ok.status_code == 200, ok.text


@pytest.mark.parametrize("expires_at", ["2030-01-01T00:00:00", 1893456000, "9999-12-31T23:59Z"])
async def test_token_expiry_must_be_an_aware_date_time_in_range(
    api: httpx.AsyncClient, expires_at: Any
) -> None:
    r = await api.post(
        "/api/v1/tokens", json={"name": "bob", "role": "viewer", "expires_at": expires_at}
    )
    _refused(r, "expires_at")


# --- enums ----------------------------------------------------------------------------


async def test_unknown_state_filter_is_a_422_not_an_empty_list(api: httpx.AsyncClient) -> None:
    _refused(await api.get("/api/v1/dispatches?state=bogus"), "state")
    assert (await api.get("/api/v1/dispatches?state=active")).json() == []


# --- size -----------------------------------------------------------------------------


async def test_a_body_over_the_limit_is_a_413(api: httpx.AsyncClient) -> None:
    big = b'{"detail": "' + b"x" * DEFAULT_MAX_BODY_BYTES + b'"}'
    headers = {"Content-Type": "application/json"}
    r = await api.post("/api/v1/dispatches/d-1/cancel", content=big, headers=headers)
    assert r.status_code == 413, r.text
    assert r.json()["code"] == "payload_too_large"

    async def chunked() -> AsyncIterator[bytes]:  # no Content-Length: counted as it comes
        for i in range(0, len(big), 4096):
            yield big[i : i + 4096]

    r = await api.post("/api/v1/dispatches/d-1/cancel", content=chunked(), headers=headers)
    assert r.status_code == 413, r.text
    assert r.json()["code"] == "payload_too_large"
    # Under the limit the route runs (the dispatch does not exist).
    r = await api.post("/api/v1/dispatches/d-1/cancel", json={"detail": "x" * 400})
    assert r.status_code == 404, r.text


@pytest.mark.parametrize(
    "raw",
    [
        b"[" * 30_000 + b"]" * 30_000,  # nesting past Python's recursion limit
        b'{"asset_id": "\xff\xfe", "p_kw": 1, "duration_s": 10}',  # not UTF-8
        b'{"asset_id": "a", "p_kw": 1e999, "duration_s": 10}',  # inf
        b'{"asset_id": "a", "p_kw": 1, "duration_s": 1000000000000000000000000000000}',
        b'{"asset_id": "a", "p_kw": 1, "duration_s": 10, "priority": 1e400}',
        b'"just a string"',
        b"",
    ],
)
async def test_odd_json_bodies_are_4xx(api: httpx.AsyncClient, raw: bytes) -> None:
    r = await api.post(
        "/api/v1/dispatches", content=raw, headers={"Content-Type": "application/json"}
    )
    assert 400 <= r.status_code < 500, r.text


@pytest.mark.parametrize(
    "url",
    [
        f"/api/v1/dispatches?limit={10**30}",
        "/api/v1/telemetry?asset_id=a&limit=-1",
        "/api/v1/telemetry?asset_id=a&bucket=%ff",
        "/api/v1/assets/%ff%fe",
        "/api/v1/audit?format=xml",
        "/api/v1/tokens?include_revoked=maybe",
    ],
)
async def test_odd_parameters_are_4xx(api: httpx.AsyncClient, url: str) -> None:
    r = await api.get(url)
    assert 400 <= r.status_code < 500, r.text


async def test_an_idempotency_key_must_be_printable_ascii(api: httpx.AsyncClient) -> None:
    r = await api.post(
        "/api/v1/dispatches", json=DISPATCH, headers={"Idempotency-Key": "caf\u00e9".encode()}
    )
    _refused(r, "idempotency-key")
