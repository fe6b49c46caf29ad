"""row-level security on the usage and retention tables (migration 0016's)

The same policy as migration 0015's tenant tables: a row is visible (and may
be written) when its ``tenant_id`` is the transaction's ``gridpilot.tenant``
setting, or that setting is ``*`` (system work: metering's flush, the usage
webhook, the retention round, the CLI). Their routes read the caller's
tenant's rows; a forgotten filter now reads no other tenant's.

Revision ID: 0017
Revises: 0016
Create Date: 2026-12-06 22:20:00
"""

from __future__ import annotations

from alembic import op

revision = "0017"
down_revision = "0016"
branch_labels = None
depends_on = None

TABLES = ("usage_hourly", "usage_active_assets", "usage_pushes", "retention_policies")
POLICY = "tenant_isolation"
PREDICATE = (
    "tenant_id = current_setting('gridpilot.tenant', true) "
    "OR current_setting('gridpilot.tenant', true) = '*'"
)


def upgrade() -> None:
    for table in TABLES:
        op.execute(f"ALTER TABLE {table} ENABLE ROW LEVEL SECURITY")
        op.execute(f"ALTER TABLE {table} FORCE ROW LEVEL SECURITY")
        op.execute(
            f"CREATE POLICY {POLICY} ON {table} USING ({PREDICATE}) WITH CHECK ({PREDICATE})"
        )


def downgrade() -> None:
    for table in TABLES:
        op.execute(f"DROP POLICY IF EXISTS {POLICY} ON {table}")
        op.execute(f"ALTER TABLE {table} NO FORCE ROW LEVEL SECURITY")
        op.execute(f"ALTER TABLE {table} DISABLE ROW LEVEL SECURITY")
