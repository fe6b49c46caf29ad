"""tenancy: suspended tenants, and row-level security on the tenant tables

- ``tenants.suspended_at`` / ``suspended_by``: a suspended tenant's principals
  are refused and its gateways' streams too (docs/security.md, Tenancy);
- ``ENABLE`` + ``FORCE ROW LEVEL SECURITY`` with one policy per tenant table:
  a row is visible (and may be written) when its ``tenant_id`` is the
  transaction's ``gridpilot.tenant`` setting, or that setting is ``*`` (system
  work). Unset, nothing is visible: a forgotten scope reads no rows. FORCE
  applies the policies to the tables' owner too (a superuser or a BYPASSRLS
  role still skips them; the app role is neither, schema/roles.py).

Not under row-level security, by necessity (docs/security.md says so):
``telemetry`` (PostgreSQL refuses COPY FROM into a table with row security,
and TimescaleDB refuses compression and continuous aggregates on one),
``telemetry_latest`` (written in the same COPY transaction), ``audit_log``
(one hash chain across tenants: an append reads the previous row, whoever's
it is) and ``tenants``. The application filters their reads by tenant.

Revision ID: 0015
Revises: 0014
Create Date: 2026-12-06 21:00:00
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0015"
down_revision = "0014"
branch_labels = None
depends_on = None

# Every table with a tenant_id that row-level security guards.
RLS_TABLES = (
    "sites",
    "gateways",
    "assets",
    "gateway_enrollments",
    "agent_sessions",
    "dispatches",
    "dispatch_transitions",
    "dispatch_late_acks",
    "ingest_watermarks",
    "api_tokens",
    "gateway_certificates",
    "enrollment_tokens",
)
POLICY = "tenant_isolation"
PREDICATE = (
    "tenant_id = current_setting('gridpilot.tenant', true) "
    "OR current_setting('gridpilot.tenant', true) = '*'"
)


def upgrade() -> None:
    op.add_column("tenants", sa.Column("suspended_at", sa.DateTime(timezone=True), nullable=True))
    op.add_column("tenants", sa.Column("suspended_by", sa.Text(), nullable=True))
    for table in RLS_TABLES:
        op.execute(f"ALTER TABLE {table} ENABLE ROW LEVEL SECURITY")
        op.execute(f"ALTER TABLE {table} FORCE ROW LEVEL SECURITY")
        op.execute(
            f"CREATE POLICY {POLICY} ON {table} USING ({PREDICATE}) WITH CHECK ({PREDICATE})"
        )


def downgrade() -> None:
    for table in RLS_TABLES:
        op.execute(f"DROP POLICY IF EXISTS {POLICY} ON {table}")
        op.execute(f"ALTER TABLE {table} NO FORCE ROW LEVEL SECURITY")
        op.execute(f"ALTER TABLE {table} DISABLE ROW LEVEL SECURITY")
    op.drop_column("tenants", "suspended_by")
    op.drop_column("tenants", "suspended_at")
