"""usage metering and retention: hourly usage per tenant, the hours pushed to
the usage webhook, and each tenant's retention and legal hold

- ``usage_hourly`` (tenant, hour, metric) -> value: counters the replicas add
  to (samples, bytes, API calls) and dispatch outcomes recomputed from the
  transitions;
- ``usage_active_assets`` (tenant, hour, asset): the assets that sent
  accepted telemetry in the hour;
- ``usage_pushes`` (tenant, hour): hours the webhook receiver acknowledged;
- ``retention_policies`` (tenant): telemetry and audit retention in days
  (NULL: the headend's default) and a legal hold that suspends deletion;
- ``audit_anchor``: where the audit chain starts once its oldest rows were
  pruned (``gridpilot audit prune``): the last pruned row's id and hash;
- ``gridpilot_hold_retention(hold)``: pauses (or resumes) TimescaleDB's
  retention jobs while any tenant is on legal hold. SECURITY DEFINER, so the
  app role (which does not own the jobs) can call it; a no-op without
  TimescaleDB.

Revision ID: 0016
Revises: 0014
Create Date: 2026-12-06 21:00:00
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import context, op

from gridpilot.schema.roles import APP_ROLE, check_role_name

revision = "0016"
down_revision = "0015"
branch_labels = None
depends_on = None


def _tenant() -> sa.Column[str]:
    return sa.Column("tenant_id", sa.Text(), server_default=sa.text("'default'"), nullable=False)


def _fk(table: str) -> sa.ForeignKeyConstraint:
    return sa.ForeignKeyConstraint(
        ["tenant_id"], ["tenants.id"], name=op.f(f"fk_{table}_tenant_id_tenants")
    )


def upgrade() -> None:
    op.create_table(
        "usage_hourly",
        _tenant(),
        sa.Column("hour", sa.DateTime(timezone=True), nullable=False),
        sa.Column("metric", sa.Text(), nullable=False),
        sa.Column("value", sa.BigInteger(), server_default="0", nullable=False),
        sa.Column(
            "updated_at", sa.DateTime(timezone=True), server_default=sa.func.now(), nullable=False
        ),
        _fk("usage_hourly"),
        sa.PrimaryKeyConstraint("tenant_id", "hour", "metric", name=op.f("pk_usage_hourly")),
    )
    op.create_table(
        "usage_active_assets",
        _tenant(),
        sa.Column("hour", sa.DateTime(timezone=True), nullable=False),
        sa.Column("asset_id", sa.Text(), nullable=False),
        _fk("usage_active_assets"),
        sa.PrimaryKeyConstraint(
            "tenant_id", "hour", "asset_id", name=op.f("pk_usage_active_assets")
        ),
    )
    op.create_table(
        "usage_pushes",
        _tenant(),
        sa.Column("hour", sa.DateTime(timezone=True), nullable=False),
        sa.Column(
            "pushed_at", sa.DateTime(timezone=True), server_default=sa.func.now(), nullable=False
        ),
        sa.Column("attempts", sa.Integer(), server_default="1", nullable=False),
        _fk("usage_pushes"),
        sa.PrimaryKeyConstraint("tenant_id", "hour", name=op.f("pk_usage_pushes")),
    )
    op.create_table(
        "retention_policies",
        sa.Column("tenant_id", sa.Text(), nullable=False),
        sa.Column("telemetry_days", sa.Integer(), nullable=True),
        sa.Column("audit_days", sa.Integer(), nullable=True),
        sa.Column("legal_hold", sa.Boolean(), server_default="false", nullable=False),
        sa.Column("hold_reason", sa.Text(), nullable=True),
        sa.Column("updated_by", sa.Text(), nullable=False),
        sa.Column(
            "updated_at", sa.DateTime(timezone=True), server_default=sa.func.now(), nullable=False
        ),
        sa.Column("checked_at", sa.DateTime(timezone=True), nullable=True),
        _fk("retention_policies"),
        sa.PrimaryKeyConstraint("tenant_id", name=op.f("pk_retention_policies")),
    )

    op.create_table(
        "audit_anchor",
        sa.Column("id", sa.BigInteger(), autoincrement=False, nullable=False),
        sa.Column("hash", sa.Text(), nullable=False),
        sa.Column("rows", sa.BigInteger(), nullable=False),
        sa.Column("pruned_by", sa.Text(), nullable=False),
        sa.Column(
            "pruned_at", sa.DateTime(timezone=True), server_default=sa.func.now(), nullable=False
        ),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_audit_anchor")),
    )
    op.execute(HOLD_FUNCTION)
    # Only the app role may pause or resume the retention jobs through it.
    op.execute("REVOKE ALL ON FUNCTION gridpilot_hold_retention(boolean) FROM PUBLIC")
    role = context.config.get_main_option("gridpilot_app_role") or APP_ROLE
    op.execute(
        "DO $$ BEGIN IF EXISTS (SELECT 1 FROM pg_roles WHERE rolname = "
        f"'{check_role_name(role)}') THEN GRANT EXECUTE ON FUNCTION "
        f"gridpilot_hold_retention(boolean) TO {role}; END IF; END $$"
    )


HOLD_FUNCTION = """
CREATE OR REPLACE FUNCTION gridpilot_hold_retention(hold boolean) RETURNS integer
LANGUAGE plpgsql SECURITY DEFINER SET search_path = pg_catalog, public AS $$
DECLARE
    job integer;
    changed integer := 0;
BEGIN
    IF to_regclass('timescaledb_information.jobs') IS NULL THEN
        RETURN 0;
    END IF;
    FOR job IN EXECUTE 'SELECT job_id FROM timescaledb_information.jobs '
        'WHERE proc_name = ''policy_retention'' AND scheduled = $1' USING hold LOOP
        EXECUTE 'SELECT alter_job($1, scheduled => $2)' USING job, NOT hold;
        changed := changed + 1;
    END LOOP;
    RETURN changed;
END
$$
"""


def downgrade() -> None:
    op.execute("DROP FUNCTION IF EXISTS gridpilot_hold_retention(boolean)")
    for table in (
        "audit_anchor",
        "retention_policies",
        "usage_pushes",
        "usage_active_assets",
        "usage_hourly",
    ):
        op.drop_table(table)
