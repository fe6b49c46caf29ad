"""Retention over REST: an admin sets the tenant's retention and legal hold
(audited), bad values are 422 naming the field (the audit minimum is
enforced), other roles may read or nothing; the headend's retention round
then deletes what the policy says, and nothing while a hold lasts."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from datetime import UTC, datetime, timedelta

import psycopg
import pytest
import pytest_asyncio
from gp_testing import RunningHeadend, TestPki, running_headend, wait_for
from temporalio.testing import WorkflowEnvironment

pytestmark = pytest.mark.integration


@pytest_asyncio.fixture(loop_scope="session")
async def retaining(
    database_url: str, temporal_env: WorkflowEnvironment, task_queue: str, test_pki: TestPki
) -> AsyncIterator[RunningHeadend]:
    address = temporal_env.client.service_client.config.target_host
    async with running_headend(
        database_url, address, task_queue, test_pki, retention_check_s=0.3
    ) as running:
        yield running


def _count(url: str) -> int:
    with psycopg.connect(url) as conn:
        row = conn.execute("SELECT count(*) FROM telemetry").fetchone()
    return int(row[0]) if row else 0


def _seed(url: str) -> None:
    now = datetime.now(UTC)
    with psycopg.connect(url, autocommit=True) as conn:
        # The default tenant's asset: a tenant's telemetry is its assets'.
        conn.execute(
            "INSERT INTO sites (id, name) VALUES ('ret-site', 'S') ON CONFLICT DO NOTHING;"
            "INSERT INTO gateways (id, site_id) VALUES ('ret-gw', 'ret-site') "
            "ON CONFLICT DO NOTHING;"
            "INSERT INTO assets (id, site_id, gateway_id, asset_type, p_min_kw, p_max_kw) "
            "VALUES ('a-1', 'ret-site', 'ret-gw', 'bess', -10, 10) ON CONFLICT DO NOTHING"
        )
        for days in (20, 10, 1):
            conn.execute(
                "INSERT INTO telemetry (asset_id, ts, p_kw) VALUES ('a-1', %s, 1)",
                (now - timedelta(days=days),),
            )


async def test_retention_and_legal_hold_over_rest(retaining: RunningHeadend) -> None:
    url = retaining.settings.database_url
    api = retaining.api  # admin
    got = (await api.get("/api/v1/retention")).json()
    assert got["legal_hold"] is False and got["telemetry_days"] is None
    assert got["default_telemetry_days"] == 365 and got["audit_min_days"] == 365

    for body, field in (
        ({"audit_days": 30}, "audit_days"),
        ({"legal_hold": True}, "hold_reason"),
        ({"legal_hold": True, "hold_reason": "  "}, "hold_reason"),
        ({"telemetry_days": 0}, "telemetry_days"),
        ({"telemetry_days": "soon"}, "telemetry_days"),
        ({"retention": 5}, "retention"),
    ):
        r = await api.put("/api/v1/retention", json=body)
        assert (r.status_code, r.json().get("field")) == (422, field), (body, r.text)
    async with retaining.client(await retaining.token("auditor")) as auditor:
        assert (await auditor.get("/api/v1/retention")).status_code == 200
        assert (await auditor.put("/api/v1/retention", json={})).status_code == 403

    # on hold: a 5-day retention deletes nothing
    hold = {"telemetry_days": 5, "audit_days": 400, "legal_hold": True, "hold_reason": "case 42"}
    r = await api.put("/api/v1/retention", json=hold)
    assert r.status_code == 200, r.text
    assert r.json()["legal_hold"] and r.json()["hold_reason"] == "case 42"
    assert r.json()["updated_by"] == "token:test-admin"
    await asyncio.to_thread(_seed, url)
    seeded = datetime.now(UTC)

    async def checked_since_seed() -> bool:
        checked = (await api.get("/api/v1/retention")).json()["checked_at"]
        return checked is not None and datetime.fromisoformat(checked) > seeded

    # a round looked at the held tenant after the rows were there: none went
    await wait_for(checked_since_seed, timeout=10, what="a retention round")
    assert await asyncio.to_thread(_count, url) == 3

    r = await api.put("/api/v1/retention", json={"telemetry_days": 5})
    assert r.status_code == 200 and r.json()["legal_hold"] is False
    assert r.json()["telemetry_days"] == 5

    async def one_left() -> bool:
        return await asyncio.to_thread(_count, url) == 1

    await wait_for(one_left, timeout=15, what="the retention round")
    rows = (await api.get("/api/v1/audit", params={"action": "retention.update"})).json()
    assert [(x["outcome"], x["detail"]["legal_hold"]) for x in rows] == [
        ("ok", True),
        ("ok", False),
    ]
