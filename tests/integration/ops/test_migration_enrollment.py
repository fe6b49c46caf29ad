"""Migration 0007 (site enrollment) locks no existing site out: every gateway
already known is enrolled for its site, with no bound, and its assets stay
counted."""

from __future__ import annotations

import psycopg
import pytest

from gridpilot.schema import db

pytestmark = pytest.mark.integration


def test_upgrade_enrolls_existing_gateways_for_their_site(database_url: str) -> None:
    db.upgrade(database_url, "0006")
    with psycopg.connect(database_url, autocommit=True) as conn:
        conn.execute("INSERT INTO sites (id, name) VALUES ('s-old', 'Old')")
        conn.execute("INSERT INTO gateways (id, site_id) VALUES ('gw-old', 's-old')")
        conn.execute(
            "INSERT INTO assets (id, site_id, gateway_id, asset_type, p_min_kw, p_max_kw) "
            "VALUES ('bess-old', 's-old', 'gw-old', 'bess', -5000, 5000)"
        )
    db.upgrade(database_url)
    with psycopg.connect(database_url) as conn:
        enrolled = conn.execute(
            "SELECT site_id, gateway_id, enrolled_by, max_asset_kw FROM gateway_enrollments"
        ).fetchall()
        held = conn.execute("SELECT held_reason FROM assets WHERE id = 'bess-old'").fetchone()
    assert enrolled == [("s-old", "gw-old", "migration 0007", None)]
    assert held == (None,)
