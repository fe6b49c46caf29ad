"""console reads: indexes for the console's and the event stream's queries, and
when a gateway's edge buffer last dropped data

- ``dispatches.updated_at``: the event stream asks for its maximum every
  second (one index probe instead of a scan of every dispatch);
- ``dispatches (state, created_at)``: a list by state (the overview's active
  and failed dispatches, the state filter) newest first;
- ``agent_sessions (gateway_id, connected_at)``: a gateway's session history;
  ``agent_sessions (gateway_id, ended_at)`` (ended ones): its last disconnect;
  ``greatest(last_seen, ended_at)``: the event stream's "agents changed";
- ``gateways.last_drop_at``: when a heartbeat last showed the agent's drop
  count grow, so "buffer dropping at the edge" is a fact of the last minutes,
  not of the agent's whole life (the counts are cumulative).

Revision ID: 0014
Revises: 0013
Create Date: 2026-12-06 17:45:00
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0014"
down_revision = "0013"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_index("ix_dispatches_updated_at", "dispatches", ["updated_at"])
    op.create_index("ix_dispatches_state_created_at", "dispatches", ["state", "created_at"])
    op.create_index(
        "ix_agent_sessions_gateway_connected", "agent_sessions", ["gateway_id", "connected_at"]
    )
    op.create_index(
        "ix_agent_sessions_gateway_ended",
        "agent_sessions",
        ["gateway_id", "ended_at"],
        postgresql_where=sa.text("ended_at IS NOT NULL"),
    )
    op.create_index(
        "ix_agent_sessions_seen",
        "agent_sessions",
        [sa.text("greatest(last_seen, ended_at)")],
    )
    op.add_column("gateways", sa.Column("last_drop_at", sa.DateTime(timezone=True), nullable=True))


def downgrade() -> None:
    op.drop_column("gateways", "last_drop_at")
    for name, table in (
        ("ix_agent_sessions_seen", "agent_sessions"),
        ("ix_agent_sessions_gateway_ended", "agent_sessions"),
        ("ix_agent_sessions_gateway_connected", "agent_sessions"),
        ("ix_dispatches_state_created_at", "dispatches"),
        ("ix_dispatches_updated_at", "dispatches"),
    ):
        op.drop_index(name, table_name=table)
