"""audit: the app role that does not own the audit table

The owner runs migrations; the app runs as ``gridpilot_app`` (or
``GRIDPILOT_DB_APP_ROLE``): SELECT/INSERT on ``audit_log`` only, no ownership,
not a superuser, so it can neither change nor remove audit rows nor switch the
append-only triggers off. The triggers become ENABLE ALWAYS, so they fire in
``session_replication_role = replica`` too. See gridpilot.schema.roles.

Revision ID: 0008
Revises: 0007
Create Date: 2026-12-05 09:00:00
"""

from __future__ import annotations

from alembic import context, op

from gridpilot.schema.roles import APP_ROLE, drop_app_grants, ensure_app_role

revision = "0008"
down_revision = "0007"
branch_labels = None
depends_on = None


def _role() -> str:
    return context.config.get_main_option("gridpilot_app_role") or APP_ROLE


def upgrade() -> None:
    ensure_app_role(op.get_bind(), _role())


def downgrade() -> None:
    drop_app_grants(op.get_bind(), _role())
