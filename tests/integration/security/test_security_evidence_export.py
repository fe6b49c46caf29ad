"""Evidence export over REST (auditor) and its offline check with
`gridpilot audit verify-export`: a dispatch's and a time range's bundle
verify; a changed byte, a wrong key, a row changed in the database are named."""

from __future__ import annotations

import asyncio
import io
import json
import os
import subprocess
import sys
import zipfile
from datetime import UTC, datetime, timedelta
from functools import partial
from pathlib import Path

import psycopg
import pytest
from gp_testing import (
    RunningHeadend,
    ScriptedAgent,
    demo_assets,
    dispatch_in_state,
    wait_for,
)

pytestmark = pytest.mark.integration


def gridpilot(*args: str) -> subprocess.CompletedProcess[str]:
    # Offline: no database or API settings are given to the verifier.
    env = {k: v for k, v in os.environ.items() if not k.startswith("GRIDPILOT_")}
    return subprocess.run(
        [sys.executable, "-m", "gridpilot", *args],
        env=env,
        capture_output=True,
        text=True,
        timeout=120,
    )


def _member(bundle: bytes, name: str) -> bytes:
    with zipfile.ZipFile(io.BytesIO(bundle)) as z:
        return z.read(name)


def _replace_member(bundle: bytes, name: str, body: bytes) -> bytes:
    out = io.BytesIO()
    with zipfile.ZipFile(io.BytesIO(bundle)) as src, zipfile.ZipFile(out, "w") as dst:
        for info in src.infolist():
            dst.writestr(info.filename, body if info.filename == name else src.read(info))
    return out.getvalue()


def _verify_sync(tmp_path: Path, bundle: bytes, *args: str) -> subprocess.CompletedProcess[str]:
    path = tmp_path / f"bundle-{len(list(tmp_path.iterdir()))}.zip"
    path.write_bytes(bundle)
    return gridpilot("audit", "verify-export", str(path), *args)


async def _verify(tmp_path: Path, bundle: bytes, *args: str) -> subprocess.CompletedProcess[str]:
    return await asyncio.to_thread(_verify_sync, tmp_path, bundle, *args)


async def test_a_dispatch_and_a_range_export_verify_offline_and_tampering_is_named(
    headend: RunningHeadend, scripted_agent: ScriptedAgent, tmp_path: Path
) -> None:
    started = datetime.now(UTC) - timedelta(seconds=1)
    await scripted_agent.connect(demo_assets())
    operator = headend.client(await headend.token("operator", name="olga"))
    auditor = headend.client(await headend.token("auditor", name="audrey"))
    async with operator, auditor:
        r = await operator.post(
            "/api/v1/dispatches", json={"asset_id": "bess-1", "p_kw": 20, "duration_s": 60}
        )
        assert r.status_code == 201, r.text
        dispatch_id = r.json()["id"]
        await wait_for(lambda: scripted_agent.first("setpoint"))
        assert (
            await operator.post(f"/api/v1/dispatches/{dispatch_id}/cancel", json={})
        ).status_code == 202
        # the cancel is recorded by the workflow, after the 202: wait for it
        await wait_for(
            partial(dispatch_in_state, operator, dispatch_id, "cancelled"), what="cancelled"
        )
        # an operator may not export; an auditor may
        denied = await operator.get("/api/v1/audit/export", params={"dispatch_id": dispatch_id})
        assert denied.status_code == 403
        key = await auditor.get("/api/v1/audit/export/key")
        assert key.status_code == 200 and key.json()["algorithm"] == "Ed25519"
        key_file = tmp_path / "evidence.pub"
        key_file.write_text(key.json()["public_key_pem"])
        one = await auditor.get("/api/v1/audit/export", params={"dispatch_id": dispatch_id})
        assert one.status_code == 200, one.text
        assert one.headers["content-type"] == "application/zip"
        assert f"gridpilot-evidence-{dispatch_id}.zip" in one.headers["content-disposition"]
        until = datetime.now(UTC) + timedelta(seconds=1)
        span = {"from": started.isoformat(), "to": until.isoformat()}
        ranged = await auditor.get("/api/v1/audit/export", params=span)
        assert ranged.status_code == 200, ranged.text

    # what the dispatch's bundle holds
    manifest = json.loads(_member(one.content, "manifest.json"))
    assert manifest["scope"] == {"kind": "dispatch", "dispatch_id": dispatch_id}
    assert manifest["signature"]["key_fingerprint"] == key.json()["fingerprint"]
    assert manifest["created_by"] == "token:audrey"
    [row] = json.loads(_member(one.content, "dispatches.json"))
    assert row["id"] == dispatch_id and row["submitted_by"] == "token:olga"
    states = [x["to_state"] for x in json.loads(_member(one.content, "transitions.json"))]
    assert states[0] == "submitted" and "cancelled" in states
    audit = {x["id"]: x for x in json.loads(_member(one.content, "audit.json"))}
    in_scope = [audit[i] for i in manifest["audit_chain"]["in_scope"]]
    assert {(x["action"], x["outcome"]) for x in in_scope} >= {
        ("dispatch.submit", "ok"),
        ("dispatch.cancel", "ok"),
    }
    assert all(x["target"] == dispatch_id for x in in_scope)
    assert manifest["audit_chain"]["anchor"]["id"] == min(audit) - 1  # token rows came first

    ok = await _verify(tmp_path, one.content, "--key", str(key_file))
    assert ok.returncode == 0, ok.stderr
    assert ok.stdout.startswith(f"evidence bundle ok: dispatch {dispatch_id};")
    ok = await _verify(tmp_path, ranged.content, "--key", str(key_file))
    assert ok.returncode == 0, ok.stderr
    ranged_ids = [x["id"] for x in json.loads(_member(ranged.content, "dispatches.json"))]
    assert ranged_ids == [dispatch_id]

    # one byte of a CSV, a dropped JSON row, another key
    csv = _member(one.content, "dispatches.csv")
    bad = await _verify(tmp_path, _replace_member(one.content, "dispatches.csv", csv[:-2] + b"X\n"))
    assert bad.returncode == 1 and "dispatches.csv: content changed" in bad.stderr
    rows = json.loads(_member(one.content, "transitions.json"))
    dropped = _replace_member(one.content, "transitions.json", json.dumps(rows[1:]).encode())
    bad = await _verify(tmp_path, dropped)
    assert bad.returncode == 1 and "transitions.json: content changed" in bad.stderr
    other = tmp_path / "other.key"
    other_pub = tmp_path / "other.pub"
    other_pub.write_text(
        (await asyncio.to_thread(gridpilot, "audit", "export-key", "--key-file", str(other))).stdout
    )
    bad = await _verify(tmp_path, one.content, "--key", str(other_pub))
    assert bad.returncode == 1 and "not by the given key" in bad.stderr

    # the export itself is audited
    async with headend.client(headend.admin_token) as admin:
        rows = (await admin.get("/api/v1/audit", params={"action": "audit.export"})).json()
    assert [(x["actor"], x["outcome"]) for x in rows][-2:] == [
        ("token:audrey", "attempt"),
        ("token:audrey", "ok"),
    ]


async def test_a_row_changed_in_the_database_is_named_in_a_signed_export(
    headend: RunningHeadend, tmp_path: Path
) -> None:
    started = datetime.now(UTC) - timedelta(seconds=1)
    for name in ("a", "b", "c"):
        await headend.token("viewer", name=name)  # three token.create rows
    with psycopg.connect(headend.settings.database_url, autocommit=True) as conn:
        found = conn.execute(
            "SELECT id FROM audit_log WHERE action = 'token.create' ORDER BY id DESC OFFSET 1"
        ).fetchone()
        assert found is not None
        victim = found[0]  # the middle one of the three
        conn.execute("ALTER TABLE audit_log DISABLE TRIGGER USER")
        conn.execute("UPDATE audit_log SET actor = 'token:mallory' WHERE id = %s", (victim,))
        conn.execute("ALTER TABLE audit_log ENABLE TRIGGER USER")
    async with headend.client(await headend.token("auditor")) as auditor:
        span = {"from": started.isoformat(), "to": datetime.now(UTC).isoformat()}
        r = await auditor.get("/api/v1/audit/export", params=span)
    assert r.status_code == 200, r.text
    bad = await _verify(tmp_path, r.content)
    assert bad.returncode == 1
    assert f"audit row {victim}: changed (its content does not match its hash)" in bad.stderr


BAD_REQUESTS = [
    ({}, 422, "from"),
    ({"from": "2026-01-01T00:00:00Z"}, 422, "to"),
    ({"from": "2026-01-02T00:00:00Z", "to": "2026-01-01T00:00:00Z"}, 422, "to"),
    ({"from": "yesterday", "to": "2026-01-01T00:00:00Z"}, 422, "from"),
    ({"dispatch_id": "d", "from": "2026-01-01T00:00:00Z"}, 422, "dispatch_id"),
    ({"dispatch_id": "no-such-dispatch"}, 404, "dispatch_id"),
]


async def test_bad_export_requests_are_4xx_naming_the_field_and_the_routes_are_documented(
    headend: RunningHeadend,
) -> None:
    for params, status, field in BAD_REQUESTS:
        r = await headend.api.get("/api/v1/audit/export", params=params)
        assert (r.status_code, r.json().get("field")) == (status, field), (params, r.text)
    doc = (await headend.api.get("/openapi.json")).json()
    export = doc["paths"]["/api/v1/audit/export"]["get"]
    assert {"200", "401", "403", "404", "422", "503"} <= set(export["responses"])
    assert "application/zip" in export["responses"]["200"]["content"]
    assert "auditor" in export["responses"]["403"]["description"]
    assert "/api/v1/audit/export/key" in doc["paths"]
