"""site enrollment: the gateways an admin enrolled for a site

A Hello for a site its gateway is not enrolled for is refused; assets a Hello
declares for the first time beyond the enrollment's max_asset_kw are held
(assets.held_reason) until an admin approves them. Gateways that already
exist are enrolled for their site (with no bound: their existing assets stay
counted, new ones wait for approval), so an upgrade locks no site out.

Revision ID: 0007
Revises: 0006
Create Date: 2026-12-05 09:00:00
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0007"
down_revision = "0006"
branch_labels = None
depends_on = None


def upgrade() -> None:
    # No foreign keys to sites or gateways: a gateway is enrolled before its
    # first Hello creates either.
    op.create_table(
        "gateway_enrollments",
        sa.Column("site_id", sa.Text(), nullable=False),
        sa.Column("gateway_id", sa.Text(), nullable=False),
        sa.Column("tenant_id", sa.Text(), server_default=sa.text("'default'"), nullable=False),
        sa.Column("enrolled_by", sa.Text(), nullable=False),
        sa.Column(
            "enrolled_at",
            sa.DateTime(timezone=True),
            server_default=sa.text("now()"),
            nullable=False,
        ),
        sa.Column("max_asset_kw", sa.Float(), nullable=True),
        sa.ForeignKeyConstraint(
            ["tenant_id"], ["tenants.id"], name=op.f("fk_gateway_enrollments_tenant_id_tenants")
        ),
        sa.PrimaryKeyConstraint("site_id", "gateway_id", name=op.f("pk_gateway_enrollments")),
    )
    op.create_index(
        op.f("ix_gateway_enrollments_gateway_id"), "gateway_enrollments", ["gateway_id"]
    )
    op.add_column("assets", sa.Column("held_reason", sa.Text(), nullable=True))
    op.execute(
        "INSERT INTO gateway_enrollments (site_id, gateway_id, tenant_id, enrolled_by) "
        "SELECT site_id, id, tenant_id, 'migration 0007' FROM gateways"
    )


def downgrade() -> None:
    op.drop_column("assets", "held_reason")
    op.drop_index(op.f("ix_gateway_enrollments_gateway_id"), table_name="gateway_enrollments")
    op.drop_table("gateway_enrollments")
