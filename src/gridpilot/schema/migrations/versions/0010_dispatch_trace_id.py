"""dispatches.trace_id

The OpenTelemetry trace id of the submit that made the dispatch (32 hex
digits; NULL when tracing was off or for dispatches made before), so
``GET /dispatches/{id}`` and the console lead to its trace.

Revision ID: 0010
Revises: 0009
Create Date: 2026-12-06 06:30:00
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0010"
down_revision = "0009"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.add_column("dispatches", sa.Column("trace_id", sa.Text(), nullable=True))


def downgrade() -> None:
    op.drop_column("dispatches", "trace_id")
