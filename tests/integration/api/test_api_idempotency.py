"""An Idempotency-Key belongs to its caller, and concurrent submits with one key
create one dispatch with one audit row (real headend, Temporal and PostgreSQL)."""

from __future__ import annotations

import asyncio

import psycopg
import pytest
from gp_testing import RunningHeadend, ScriptedAgent, demo_assets

pytestmark = pytest.mark.integration
BODY = {"asset_id": "bess-1", "p_kw": 5, "duration_s": 30}


def _submit_audit(database_url: str, dispatch_id: str) -> list[tuple[str, str]]:
    with psycopg.connect(database_url) as conn:
        rows = conn.execute(
            "SELECT actor, outcome FROM audit_log "
            "WHERE action = 'dispatch.submit' AND target = %s ORDER BY id",
            (dispatch_id,),
        )
        return [(r[0], r[1]) for r in rows.fetchall()]


async def test_another_callers_key_is_another_dispatch(
    headend: RunningHeadend, scripted_agent: ScriptedAgent
) -> None:
    await scripted_agent.connect(demo_assets())
    headers = {"Idempotency-Key": "order-42"}
    async with (
        headend.client(await headend.token("operator", "alice")) as alice,
        headend.client(await headend.token("operator", "bob")) as bob,
    ):
        first = await alice.post("/api/v1/dispatches", json=BODY, headers=headers)
        assert first.status_code == 201, first.text
        theirs = await bob.post("/api/v1/dispatches", json=BODY, headers=headers)
        assert theirs.status_code == 201, theirs.text
        assert theirs.json()["id"] != first.json()["id"]
        assert theirs.json()["submitted_by"] == "token:bob"
        # Each caller's retry returns its own dispatch; a changed body is the
        # caller's own conflict, whatever the other caller sent.
        again = await bob.post("/api/v1/dispatches", json=BODY, headers=headers)
        assert (again.status_code, again.json()["id"]) == (200, theirs.json()["id"])
        changed = await alice.post("/api/v1/dispatches", json={**BODY, "p_kw": 6}, headers=headers)
        assert changed.status_code == 409, changed.text


async def test_concurrent_submits_with_one_key_create_one_dispatch_and_one_audit_row(
    headend: RunningHeadend, scripted_agent: ScriptedAgent
) -> None:
    await scripted_agent.connect(demo_assets())
    headers = {"Idempotency-Key": "burst-1"}
    async with headend.client(headend.admin_token) as api:
        answers = await asyncio.gather(
            *(api.post("/api/v1/dispatches", json=BODY, headers=headers) for _ in range(8))
        )
    statuses = sorted(r.status_code for r in answers)
    assert statuses == [200] * 7 + [201], [r.text for r in answers]
    ids = {r.json()["id"] for r in answers}
    assert len(ids) == 1
    # One submit ran: its attempt and its outcome, nothing from the seven repeats.
    assert _submit_audit(headend.settings.database_url, ids.pop()) == [
        ("token:test-admin", "attempt"),
        ("token:test-admin", "ok"),
    ]
    with psycopg.connect(headend.settings.database_url) as conn:
        count = conn.execute("SELECT count(*) FROM dispatches WHERE idempotency_key = 'burst-1'")
        assert count.fetchone() == (1,)
