"""supersede order: a dispatch's submission sequence

Among overlapping dispatches of one asset at equal priority the newest
submitted wins (core.supersede). The order is taken at submit from one
sequence, not from which workflow claims first. Rows before this have NULL
(older than every numbered one).

Revision ID: 0006
Revises: 0005
Create Date: 2026-12-05 09:00:00
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0006"
down_revision = "0005"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.execute(sa.schema.CreateSequence(sa.Sequence("dispatch_submit_seq")))
    op.add_column("dispatches", sa.Column("submit_seq", sa.BigInteger(), nullable=True))


def downgrade() -> None:
    op.drop_column("dispatches", "submit_seq")
    op.execute(sa.schema.DropSequence(sa.Sequence("dispatch_submit_seq")))
