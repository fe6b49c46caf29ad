"""late acks: what an agent reported about a dispatch after it had ended

Revision ID: 0005
Revises: 0004
Create Date: 2026-11-27 03:00:00
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0005"
down_revision = "0004"
branch_labels = None
depends_on = None


def upgrade() -> None:
    # A terminal state never changes, but the agent's later word (e.g. that it
    # had returned the asset to its default while the headend ended the
    # dispatch at end_at) belongs in the record.
    op.create_table(
        "dispatch_late_acks",
        sa.Column("dispatch_id", sa.Text(), nullable=False),
        sa.Column("tenant_id", sa.Text(), server_default=sa.text("'default'"), nullable=False),
        sa.Column("state", sa.Text(), nullable=False),
        sa.Column("at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("reason", sa.Text(), nullable=True),
        sa.Column("detail", sa.Text(), server_default="", nullable=False),
        sa.Column("gateway_id", sa.Text(), server_default="", nullable=False),
        sa.Column(
            "received_at",
            sa.DateTime(timezone=True),
            server_default=sa.text("now()"),
            nullable=False,
        ),
        sa.ForeignKeyConstraint(
            ["dispatch_id"],
            ["dispatches.id"],
            name=op.f("fk_dispatch_late_acks_dispatch_id_dispatches"),
        ),
        sa.ForeignKeyConstraint(
            ["tenant_id"], ["tenants.id"], name=op.f("fk_dispatch_late_acks_tenant_id_tenants")
        ),
        # The same ack re-sent (on a new session) is kept once.
        sa.PrimaryKeyConstraint("dispatch_id", "state", "at", name=op.f("pk_dispatch_late_acks")),
    )


def downgrade() -> None:
    op.drop_table("dispatch_late_acks")
