"""`gridpilot gateway enroll|list|remove|held|approve` and `pki issue-gateway
--site`, against a real database; every change audited as the CLI user."""

from __future__ import annotations

import asyncio
import getpass
import os
import subprocess
import sys
from pathlib import Path

import psycopg
import pytest

from gridpilot.core.assets import Asset, AssetType, PowerLimits
from gridpilot.ingest.enrollment import Admission
from gridpilot.ingest.registry import GatewayStore
from gridpilot.schema import db

pytestmark = pytest.mark.integration


def gridpilot(database_url: str, *args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "gridpilot", *args],
        env={**os.environ, "GRIDPILOT_DATABASE_URL": database_url},
        capture_output=True,
        text=True,
        timeout=120,
    )


def _audit(database_url: str, action: str) -> list[tuple[str, str, str]]:
    with psycopg.connect(database_url) as conn:
        rows = conn.execute(
            "SELECT actor, target, outcome FROM audit_log WHERE action = %s ORDER BY id", (action,)
        ).fetchall()
    return [tuple(r) for r in rows]


async def _declare(database_url: str, p_max_kw: float) -> list[str]:
    """What a Hello of gw-c for site-c does, under a 100 kW enrollment."""
    engine = db.async_engine(database_url)
    try:
        asset = Asset("big-1", "site-c", AssetType.BESS, PowerLimits(-p_max_kw, p_max_kw))
        admission = Admission(enrolled=True, max_asset_kw=100)
        return await GatewayStore(engine).register("gw-c", "site-c", "C", "t", [asset], admission)
    finally:
        await engine.dispose()


def test_gateway_enroll_list_held_approve_remove(database_url: str) -> None:
    db.upgrade(database_url)
    me = f"cli:{getpass.getuser()}"
    r = gridpilot(
        database_url, "gateway", "enroll", "gw-c", "--site", "site-c", "--max-asset-kw", "100"
    )
    assert r.returncode == 0, r.stderr
    assert "site-c" in r.stdout and "gw-c" in r.stdout and "100" in r.stdout
    r = gridpilot(database_url, "gateway", "list")
    assert r.returncode == 0 and "site-c" in r.stdout and f"by {me}" in r.stdout
    assert _audit(database_url, "gateway.enroll") == [(me, "gw-c", "ok")]

    assert asyncio.run(_declare(database_url, 1_000_000)) == ["big-1"]
    r = gridpilot(database_url, "gateway", "held", "--site", "site-c")
    assert (
        r.returncode == 0 and "big-1" in r.stdout and "beyond the enrollment's 100 kW" in r.stdout
    )
    r = gridpilot(database_url, "gateway", "approve", "big-1", "--reason", "metered")
    assert r.returncode == 0, r.stderr
    assert "big-1 approved" in r.stdout
    assert _audit(database_url, "asset.approve") == [(me, "big-1", "ok")]
    r = gridpilot(database_url, "gateway", "held", "--site", "site-c")
    assert r.returncode == 0 and r.stdout == "" and "no asset" in r.stderr
    r = gridpilot(database_url, "gateway", "approve", "big-1")
    assert r.returncode == 1 and "is not held" in r.stderr

    r = gridpilot(database_url, "gateway", "remove", "gw-c", "--site", "site-c")
    assert r.returncode == 0, r.stderr
    assert _audit(database_url, "gateway.unenroll") == [(me, "gw-c", "ok")]
    r = gridpilot(database_url, "gateway", "remove", "gw-c", "--site", "site-c")
    assert r.returncode == 1 and "not enrolled" in r.stderr
    r = gridpilot(database_url, "gateway", "list", "--site", "site-c")
    assert r.returncode == 0 and r.stdout == ""


def test_gateway_commands_refuse_bad_ids_and_bounds(database_url: str) -> None:
    r = gridpilot(database_url, "gateway", "enroll", "bad id", "--site", "s")
    assert r.returncode == 2 and "not a gateway id" in r.stderr
    r = gridpilot(database_url, "gateway", "enroll", "g", "--site", "bad site")
    assert r.returncode == 2 and "not a site id" in r.stderr
    r = gridpilot(database_url, "gateway", "enroll", "g", "--site", "s", "--max-asset-kw", "-5")
    assert r.returncode == 2 and "max-asset-kw" in r.stderr


def test_pki_issue_gateway_for_a_site_names_it_in_the_certificate(tmp_path: Path) -> None:
    pki = tmp_path / "pki"
    assert gridpilot("", "pki", "init", "--dir", str(pki)).returncode == 0
    r = gridpilot("", "pki", "issue-gateway", "gw-s", "--site", "site-s", "--dir", str(pki))
    assert r.returncode == 0, r.stderr
    assert "spiffe://gridpilot/site/site-s/gateway/gw-s" in r.stdout
    r = gridpilot("", "pki", "issue-gateway", "gw-s", "--site", "bad site", "--dir", str(pki))
    assert r.returncode == 1 and "not a site id" in r.stderr
