"""Audit retention: only what every tenant's policy lets go is pruned (never
under the minimum, nothing under a legal hold), the newest row stays, the
chain then verifies from its anchor, the prune is audited, and an evidence
export of what is left still verifies offline."""

from __future__ import annotations

import asyncio
import os
import subprocess
import sys
from collections.abc import AsyncIterator
from datetime import UTC, datetime, timedelta
from pathlib import Path
from urllib.parse import urlsplit, urlunsplit

import psycopg
import pytest
import pytest_asyncio

from gridpilot.schema import db
from gridpilot.schema.roles import APP_ROLE
from gridpilot.security import evidence
from gridpilot.security.audit import Actor, AuditEvent, AuditLog
from gridpilot.security.audit_prune import prune
from gridpilot.security.evidence_verify import verify_bundle
from gridpilot.security.signing import EvidenceSigner
from gridpilot.store import evidence as store_evidence
from gridpilot.store import retention
from gridpilot.store.retention import RetentionPolicy

pytestmark = pytest.mark.integration
ADMIN = Actor("token:admin", "admin", "token")


@pytest_asyncio.fixture(loop_scope="session")
async def audit(database_url: str) -> AsyncIterator[AuditLog]:
    await asyncio.to_thread(db.upgrade, database_url)
    engine = db.async_engine(database_url)
    try:
        yield AuditLog(engine)
    finally:
        await engine.dispose()


def gridpilot(*args: str, **env: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "gridpilot", *args],
        env={**os.environ, **env},
        capture_output=True,
        text=True,
        timeout=120,
    )


async def test_prune_removes_only_what_every_policy_lets_go_and_the_chain_still_verifies(
    audit: AuditLog, database_url: str, tmp_path: Path
) -> None:
    for i in range(6):
        await audit.append(AuditEvent(ADMIN, "token.create", f"tok-{i}", "ok"))
    later = datetime.now(UTC) + timedelta(days=500)
    # no audit_days: kept forever
    assert (await prune(audit, later, 365, ADMIN)).rows == 0
    engine = audit.engine
    await retention.put(engine, RetentionPolicy("default", audit_days=400), ADMIN, audit)  # 7
    held = RetentionPolicy("default", audit_days=400, legal_hold=True, hold_reason="case 42")
    await retention.put(engine, held, ADMIN, audit)  # 8
    assert (await prune(audit, later, 365, ADMIN)).rows == 0  # on hold
    await retention.put(engine, RetentionPolicy("default", audit_days=400), ADMIN, audit)  # 9
    # the minimum wins over a shorter policy
    assert (await prune(audit, later, 1000, ADMIN)).rows == 0
    dry = await prune(audit, later, 365, ADMIN, dry_run=True)
    assert dry.rows == 8 and dry.anchor is not None and dry.anchor[0] == 8
    assert (await audit.verify()).count == 9  # a dry run removes nothing

    done = await prune(audit, later, 365, ADMIN)
    assert done == dry  # rows 1..8; the newest (9) stays for the chain to go on
    result = await audit.verify()
    assert result.ok and result.count == 2 and result.head_id == 10, result  # 9, audit.prune
    [row] = await audit.query(action="audit.prune")
    assert row["detail"]["rows"] == 8 and row["detail"]["anchor"].startswith("8:")

    r = await asyncio.to_thread(gridpilot, "audit", "verify", GRIDPILOT_DATABASE_URL=database_url)
    assert r.returncode == 0 and r.stdout.startswith("audit log ok: 2 events, head 10:"), r.stderr
    r = await asyncio.to_thread(
        gridpilot, "audit", "prune", "--dry-run", GRIDPILOT_DATABASE_URL=database_url
    )
    assert r.returncode == 0 and r.stdout.strip() == "audit log: nothing to prune", r.stderr

    # an export of what is left anchors on the pruned row
    data = await store_evidence.gather_range(
        engine, "default", datetime.now(UTC) - timedelta(hours=1), datetime.now(UTC)
    )
    assert data.anchor == {"id": 8, "hash": dry.anchor[1]}
    signer = EvidenceSigner.load_or_create(tmp_path / "evidence.key")
    bundle = evidence.build(data, signer, "token:auditor", datetime.now(UTC))
    assert verify_bundle(bundle, signer.public_key).audit_rows == 2


def test_the_app_role_can_neither_prune_nor_move_the_anchor_but_may_hold_retention(
    database_url: str,
) -> None:
    db.upgrade(database_url)  # as the owner: grants the app role
    with psycopg.connect(database_url, autocommit=True) as conn:
        conn.execute(f"ALTER ROLE {APP_ROLE} LOGIN PASSWORD 'app-role-test'")
    parts = urlsplit(database_url)
    host = parts.netloc.rpartition("@")[2]
    app_url = urlunsplit(parts._replace(netloc=f"{APP_ROLE}:app-role-test@{host}"))
    with psycopg.connect(app_url, autocommit=True) as conn:
        assert conn.execute("SELECT count(*) FROM audit_anchor").fetchone() == (0,)  # may read
        # may pause TimescaleDB's retention for a legal hold (a no-op on plain PostgreSQL)
        assert conn.execute("SELECT gridpilot_hold_retention(true)").fetchone() == (0,)
        for sql in (
            "INSERT INTO audit_anchor (id, hash, rows, pruned_by) VALUES (5, 'x', 5, 'me')",
            "DELETE FROM audit_anchor",
        ):
            with pytest.raises(psycopg.errors.InsufficientPrivilege):
                conn.execute(sql)
    r = gridpilot("audit", "prune", GRIDPILOT_DATABASE_URL=app_url)
    assert r.returncode == 1
    assert "audit prune must run as the owner of audit_log" in r.stderr
