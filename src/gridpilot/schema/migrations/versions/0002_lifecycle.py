"""lifecycle: dispatch priority and supersede link

Revision ID: 0002
Revises: 0001
Create Date: 2026-11-26 23:00:00
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0002"
down_revision = "0001"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.add_column(
        "dispatches", sa.Column("priority", sa.Integer(), server_default="0", nullable=False)
    )
    op.add_column("dispatches", sa.Column("superseded_by", sa.Text(), nullable=True))
    # The live dispatches of an asset: what a new dispatch checks and supersedes.
    op.create_index(
        "ix_dispatches_live_asset",
        "dispatches",
        ["asset_id"],
        postgresql_where=sa.text(
            "kind = 'asset' AND state NOT IN ('complete', 'expired', 'failed', 'cancelled')"
        ),
    )


def downgrade() -> None:
    op.drop_index("ix_dispatches_live_asset", table_name="dispatches")
    op.drop_column("dispatches", "superseded_by")
    op.drop_column("dispatches", "priority")
