"""Usage metering and retention (migration 0016).

``usage_hourly``: per tenant and hour, one row per metric (``store/usage.py``
lists them): counters replicas add to, and dispatch outcomes recomputed from
the transitions. ``usage_active_assets``: the assets that sent accepted
telemetry in the hour (its count is the hour's ``active_assets``).
``usage_pushes``: the hours a webhook receiver has acknowledged.
``retention_policies``: a tenant's retention and legal hold.
``audit_anchor``: where the audit chain starts after its oldest rows were
pruned (the last pruned row's id and hash).
"""

from __future__ import annotations

from sqlalchemy import (
    BigInteger,
    Boolean,
    Column,
    ForeignKey,
    Integer,
    PrimaryKeyConstraint,
    Table,
    Text,
)

from .base import metadata, tenant_column, ts_column

usage_hourly = Table(
    "usage_hourly",
    metadata,
    tenant_column(),
    ts_column("hour"),
    Column("metric", Text, nullable=False),
    Column("value", BigInteger, nullable=False, server_default="0"),
    ts_column("updated_at", now=True),
    PrimaryKeyConstraint("tenant_id", "hour", "metric"),
)

usage_active_assets = Table(
    "usage_active_assets",
    metadata,
    tenant_column(),
    ts_column("hour"),
    Column("asset_id", Text, nullable=False),
    PrimaryKeyConstraint("tenant_id", "hour", "asset_id"),
)

usage_pushes = Table(
    "usage_pushes",
    metadata,
    tenant_column(),
    ts_column("hour"),
    ts_column("pushed_at", now=True),
    Column("attempts", Integer, nullable=False, server_default="1"),
    PrimaryKeyConstraint("tenant_id", "hour"),
)

retention_policies = Table(
    "retention_policies",
    metadata,
    Column("tenant_id", Text, ForeignKey("tenants.id"), primary_key=True),
    # NULL: the headend's default (GRIDPILOT_TELEMETRY_RETENTION_DAYS, ...).
    Column("telemetry_days", Integer, nullable=True),
    Column("audit_days", Integer, nullable=True),
    Column("legal_hold", Boolean, nullable=False, server_default="false"),
    Column("hold_reason", Text, nullable=True),
    Column("updated_by", Text, nullable=False),
    ts_column("updated_at", now=True),
    # When a retention round last looked at the tenant (held or not).
    ts_column("checked_at", nullable=True),
)

audit_anchor = Table(
    "audit_anchor",
    metadata,
    Column("id", BigInteger, primary_key=True, autoincrement=False),
    Column("hash", Text, nullable=False),
    Column("rows", BigInteger, nullable=False),
    Column("pruned_by", Text, nullable=False),
    ts_column("pruned_at", now=True),
)
