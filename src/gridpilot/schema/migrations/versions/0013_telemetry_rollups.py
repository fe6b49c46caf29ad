"""telemetry rollups: 1-minute and 1-hour continuous aggregates on TimescaleDB

On a hypertable (TimescaleDB with its Timescale License parts) this adds the
continuous aggregates ``telemetry_1m`` and ``telemetry_1h`` with their
refresh policies (schema/rollups.py). On plain PostgreSQL it changes nothing:
the history API computes the same buckets from the raw rows there.

Revision ID: 0013
Revises: 0012
Create Date: 2026-12-06 07:00:00
"""

from __future__ import annotations

from alembic import op

from gridpilot.schema.rollups import create_rollups, drop_rollups
from gridpilot.schema.telemetry_ddl import compression_licensed, is_hypertable

revision = "0013"
down_revision = "0012"
branch_labels = None
depends_on = None


def upgrade() -> None:
    conn = op.get_bind()
    if is_hypertable(conn) and compression_licensed(conn):
        create_rollups(conn)


def downgrade() -> None:
    conn = op.get_bind()
    if is_hypertable(conn):
        drop_rollups(conn)
