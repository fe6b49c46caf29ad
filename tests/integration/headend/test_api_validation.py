"""Bad input gets a 4xx naming the field, and nothing is written."""

from __future__ import annotations

import psycopg
import pytest
from gp_testing import RunningHeadend, ScriptedAgent, demo_assets

pytestmark = pytest.mark.integration


@pytest.mark.parametrize(
    ("body", "status", "field"),
    [
        ({"p_kw": 5, "duration_s": 10}, 422, "asset_id"),
        ({"asset_id": "bess-1", "p_kw": 500, "duration_s": 10}, 422, "p_kw"),
        ({"asset_id": "bess-1", "p_kw": True, "duration_s": 10}, 422, "p_kw"),
        ({"asset_id": "bess-1", "p_kw": "5", "duration_s": 10}, 422, "p_kw"),
        ({"asset_id": "bess-1", "p_kw": 5, "duration_s": 0}, 422, "duration_s"),
        ({"asset_id": "bess-1", "p_kw": 5, "duration_s": 10**6}, 422, "duration_s"),
        ({"asset_id": "bess-1", "p_kw": 5, "duration_s": 1.5}, 422, "duration_s"),
        ({"asset_id": "bess-1", "p_kw": 5, "duration_s": 10, "colour": "red"}, 422, "colour"),
        ({"asset_id": "nope", "p_kw": 5, "duration_s": 10}, 422, "asset_id"),
        ({"site_id": "nope", "p_kw": 5, "duration_s": 10}, 422, "site_id"),
        (
            {"asset_id": "bess-1", "p_kw": 5, "duration_s": 10, "start_at": "2020-01-01T00:00:00Z"},
            422,
            "start_at",
        ),
        (
            {"asset_id": "bess-1", "p_kw": 5, "duration_s": 10, "start_at": "2030-01-01T00:00:00"},
            422,
            "start_at",
        ),
    ],
)
async def test_bad_dispatch_is_refused_naming_the_field(
    headend: RunningHeadend,
    scripted_agent: ScriptedAgent,
    body: dict[str, object],
    status: int,
    field: str,
) -> None:
    await scripted_agent.connect(demo_assets())
    r = await headend.api.post("/api/v1/dispatches", json=body)
    assert r.status_code == status, r.text
    err = r.json()
    assert err["field"] == field
    assert err["code"] in ("validation_failed", "out_of_limits")
    assert err["message"]
    with psycopg.connect(headend.settings.database_url) as conn:
        assert conn.execute("SELECT count(*) FROM dispatches").fetchone() == (0,)


async def test_nan_in_json_is_refused(headend: RunningHeadend) -> None:
    r = await headend.api.post(
        "/api/v1/dispatches",
        content=b'{"asset_id": "a", "p_kw": NaN, "duration_s": 10}',
        headers={"Content-Type": "application/json"},
    )
    assert r.status_code == 422
    assert r.json()["field"] == "p_kw"


async def test_malformed_json_is_a_clear_422(headend: RunningHeadend) -> None:
    r = await headend.api.post(
        "/api/v1/dispatches", content=b"{not json", headers={"Content-Type": "application/json"}
    )
    assert r.status_code == 422
    assert r.json()["code"] == "validation_failed"


async def test_unknown_ids_are_404_with_json(headend: RunningHeadend) -> None:
    for path in ("/api/v1/dispatches/nope", "/api/v1/assets/nope", "/api/v1/nothing-here"):
        r = await headend.api.get(path)
        assert r.status_code == 404
        assert r.json()["code"] == "not_found"
    r = await headend.api.post("/api/v1/dispatches/nope/cancel", json={})
    assert r.status_code == 404


async def test_telemetry_query_needs_a_target_and_a_valid_bucket(headend: RunningHeadend) -> None:
    r = await headend.api.get("/api/v1/telemetry")
    assert r.status_code == 422 and r.json()["field"] == "asset_id"
    r = await headend.api.get("/api/v1/telemetry", params={"asset_id": "a", "bucket": "7m"})
    assert r.status_code == 422 and r.json()["field"] == "bucket"


async def test_openapi_and_console_are_served(headend: RunningHeadend) -> None:
    spec = (await headend.api.get("/openapi.json")).json()
    assert "/api/v1/dispatches" in spec["paths"]
    page = await headend.api.get("/")
    assert page.status_code == 200 and "GridPilot" in page.text
