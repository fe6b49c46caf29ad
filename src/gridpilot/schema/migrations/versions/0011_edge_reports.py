"""what each gateway last reported about its edge buffer, and its rejected samples

The headend that holds a gateway's stream writes, with each heartbeat, the
agent's store-and-forward figures and the samples the gateway refused since
its stream started: /metrics on any API replica and `gridpilot doctor` read
them from here, also after the agent has gone.

Revision ID: 0011
Revises: 0010
Create Date: 2026-12-06 06:30:00
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0011"
down_revision = "0010"
branch_labels = None
depends_on = None

_COUNTS = (
    "buffered_batches",
    "buffered_bytes",
    "dropped_batches",
    "dropped_samples",
    "rejected_samples",
)


def upgrade() -> None:
    for name in _COUNTS:
        op.add_column(
            "gateways", sa.Column(name, sa.BigInteger(), nullable=False, server_default="0")
        )
    op.add_column("gateways", sa.Column("last_rejection", sa.Text(), nullable=True))
    op.add_column("gateways", sa.Column("reported_at", sa.DateTime(timezone=True), nullable=True))


def downgrade() -> None:
    for name in ("reported_at", "last_rejection", *reversed(_COUNTS)):
        op.drop_column("gateways", name)
