"""Deleting the newest audit rows leaves a shorter chain that still verifies;
`gridpilot audit verify --expect-head ID:HASH`, with a head recorded elsewhere
(the headend's `audit_head` log line), finds it."""

from __future__ import annotations

import asyncio
import os
import subprocess
import sys

import psycopg
import pytest
from gp_testing import TestPki, running_headend, wait_for
from structlog.testing import capture_logs

pytestmark = pytest.mark.integration


def verify(database_url: str, *args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "gridpilot", "audit", "verify", *args],
        env={**os.environ, "GRIDPILOT_DATABASE_URL": database_url},
        capture_output=True,
        text=True,
        timeout=120,
    )


async def test_removing_the_newest_rows_is_found_against_the_logged_head(
    database_url: str, temporal_env: object, task_queue: str, test_pki: TestPki
) -> None:
    address = temporal_env.client.service_client.config.target_host  # type: ignore[attr-defined]
    with capture_logs() as logs:
        async with running_headend(
            database_url, address, task_queue, test_pki, audit_head_log_s=0.2
        ) as headend:
            for name in ("a", "b", "c"):
                r = await headend.api.post("/api/v1/tokens", json={"name": name, "role": "viewer"})
                assert r.status_code == 201
            head = await headend.headend.audit.head()
            assert head is not None

            def logged() -> bool:
                return any(
                    e["event"] == "audit_head" and e["head"] == f"{head[0]}:{head[1]}" for e in logs
                )

            await wait_for(logged, timeout=10)
    recorded = f"{head[0]}:{head[1]}"

    ok = await asyncio.to_thread(verify, database_url, "--expect-head", recorded)
    assert ok.returncode == 0, ok.stderr
    assert ok.stdout.strip().endswith(f"head {recorded}")

    # Someone able to switch the triggers off removes the newest two rows.
    with psycopg.connect(database_url, autocommit=True) as conn:
        conn.execute("ALTER TABLE audit_log DISABLE TRIGGER USER")
        conn.execute("DELETE FROM audit_log WHERE id > %s", (head[0] - 2,))
        conn.execute("ALTER TABLE audit_log ENABLE TRIGGER USER")
    plain = await asyncio.to_thread(verify, database_url)
    assert plain.returncode == 0  # the shorter chain is consistent in itself...
    found = await asyncio.to_thread(verify, database_url, "--expect-head", recorded)
    assert found.returncode == 1  # ... but not with the head recorded elsewhere
    assert f"the chain ends at id {head[0] - 2}" in found.stderr
    assert "newer rows were removed" in found.stderr

    wrong = await asyncio.to_thread(verify, database_url, "--expect-head", f"1:{'f' * 64}")
    assert wrong.returncode == 1 and "differs from the expected head" in wrong.stderr
    bad = await asyncio.to_thread(verify, database_url, "--expect-head", "nonsense")
    assert bad.returncode == 2 and "ID:HASH" in bad.stderr
