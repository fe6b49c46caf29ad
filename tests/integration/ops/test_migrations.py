"""The migrations build exactly the schema the code's tables describe."""

from __future__ import annotations

import pytest
from alembic.autogenerate import compare_metadata
from alembic.migration import MigrationContext

from gridpilot.schema import db
from gridpilot.schema import tables as t

pytestmark = pytest.mark.integration


def test_migrations_to_head_match_the_tables_in_code(database_url: str) -> None:
    db.upgrade(database_url)
    engine = db.sync_engine(database_url)
    try:
        with engine.connect() as conn:
            diff = compare_metadata(MigrationContext.configure(conn), t.metadata)
    finally:
        engine.dispose()
    # The telemetry table is partitioned/hypertable DDL of its own (telemetry_ddl.py).
    assert [d for d in diff if "telemetry" not in repr(d)] == []
