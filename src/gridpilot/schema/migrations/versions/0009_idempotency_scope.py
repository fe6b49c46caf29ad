"""idempotency keys scoped to the caller

An Idempotency-Key is unique per (tenant, submitted_by, key) instead of per
(tenant, key): another caller's same key is another dispatch, never the first
caller's.

Revision ID: 0009
Revises: 0008
Create Date: 2026-12-05 09:00:00
"""

from __future__ import annotations

from alembic import op

revision = "0009"
down_revision = "0008"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.drop_constraint("uq_dispatches_tenant_id_idempotency_key", "dispatches", type_="unique")
    op.create_unique_constraint(
        "uq_dispatches_tenant_id_submitted_by_idempotency_key",
        "dispatches",
        ["tenant_id", "submitted_by", "idempotency_key"],
    )


def downgrade() -> None:
    # Fails if two callers have used one key since: that is the data the
    # narrower constraint cannot hold.
    op.drop_constraint(
        "uq_dispatches_tenant_id_submitted_by_idempotency_key", "dispatches", type_="unique"
    )
    op.create_unique_constraint(
        "uq_dispatches_tenant_id_idempotency_key", "dispatches", ["tenant_id", "idempotency_key"]
    )
