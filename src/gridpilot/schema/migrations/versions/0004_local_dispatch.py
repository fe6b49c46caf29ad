"""local dispatches: where a dispatch came from (cloud API or a local operator)

Revision ID: 0004
Revises: 0003
Create Date: 2026-11-27 02:00:00
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0004"
down_revision = "0003"
branch_labels = None
depends_on = None


def upgrade() -> None:
    # cloud: submitted through the API; local: written on site (the agent's
    # OPC UA surface) and reported by the agent.
    op.add_column(
        "dispatches", sa.Column("source", sa.Text(), server_default="cloud", nullable=False)
    )


def downgrade() -> None:
    op.drop_column("dispatches", "source")
