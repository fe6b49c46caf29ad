"""enrollment tokens: one-time, short-lived, bound to a gateway id and a site

An admin issues one (``POST /api/v1/enrollment-tokens``, ``gridpilot gateway
token``); the gateway spends it with a CSR (``gridpilot agent enroll``) and
gets a certificate signed by the headend's CA. Only the token's SHA-256 is
stored.

Revision ID: 0012
Revises: 0011
Create Date: 2026-12-06 06:30:00
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0012"
down_revision = "0011"
branch_labels = None
depends_on = None


def _ts(name: str, nullable: bool = False, now: bool = False) -> sa.Column[object]:
    return sa.Column(
        name,
        sa.DateTime(timezone=True),
        server_default=sa.text("now()") if now else None,
        nullable=nullable,
    )


def upgrade() -> None:
    op.create_table(
        "enrollment_tokens",
        sa.Column("id", sa.Text(), nullable=False),
        sa.Column("tenant_id", sa.Text(), server_default=sa.text("'default'"), nullable=False),
        sa.Column("token_hash", sa.Text(), nullable=False),
        sa.Column("prefix", sa.Text(), nullable=False),
        sa.Column("gateway_id", sa.Text(), nullable=False),
        sa.Column("site_id", sa.Text(), nullable=False),
        sa.Column("max_asset_kw", sa.Float(), nullable=True),
        sa.Column("created_by", sa.Text(), nullable=False),
        _ts("created_at", now=True),
        _ts("expires_at"),
        _ts("used_at", nullable=True),
        sa.Column("used_fingerprint", sa.Text(), nullable=True),
        sa.ForeignKeyConstraint(
            ["tenant_id"], ["tenants.id"], name=op.f("fk_enrollment_tokens_tenant_id_tenants")
        ),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_enrollment_tokens")),
        sa.UniqueConstraint("token_hash", name=op.f("uq_enrollment_tokens_token_hash")),
    )
    op.create_index(op.f("ix_enrollment_tokens_gateway_id"), "enrollment_tokens", ["gateway_id"])


def downgrade() -> None:
    op.drop_index(op.f("ix_enrollment_tokens_gateway_id"), table_name="enrollment_tokens")
    op.drop_table("enrollment_tokens")
