"""The relational model (SQLAlchemy Core). Alembic migrations own the DDL.

Every row carries ``tenant_id``; ``default`` is the tenant of a single-tenant
deployment. Row-level security (migration 0015, schema/tenancy.py) guards the
tables with a tenant_id, except telemetry, telemetry_latest and audit_log.
"""

from __future__ import annotations

from sqlalchemy import (
    BigInteger,
    Column,
    Float,
    ForeignKey,
    Index,
    Integer,
    PrimaryKeyConstraint,
    Table,
    Text,
    UniqueConstraint,
    text,
)
from sqlalchemy.dialects.postgresql import JSONB

from gridpilot.core.lifecycle import TERMINAL_VALUES
from gridpilot.core.telemetry_fields import CORE

from .base import DEFAULT_TENANT as DEFAULT_TENANT
from .base import metadata as metadata
from .base import tenant_column as _tenant
from .base import ts_column as _ts

# Usage metering and retention (migration 0016), on the same metadata.
from .usage_tables import audit_anchor as audit_anchor
from .usage_tables import retention_policies as retention_policies
from .usage_tables import usage_active_assets as usage_active_assets
from .usage_tables import usage_hourly as usage_hourly
from .usage_tables import usage_pushes as usage_pushes

# 'complete', 'expired', 'failed', 'cancelled': the live-asset index's predicate.
_TERMINAL_SQL = ", ".join(f"'{state}'" for state in TERMINAL_VALUES)

tenants = Table(
    "tenants",
    metadata,
    Column("id", Text, primary_key=True),
    Column("name", Text, nullable=False),
    _ts("created_at", now=True),
    # A suspended tenant's principals and gateways are refused (migration 0015).
    _ts("suspended_at", nullable=True),
    Column("suspended_by", Text, nullable=True),
)

sites = Table(
    "sites",
    metadata,
    Column("id", Text, primary_key=True),
    _tenant(),
    Column("name", Text, nullable=False),
    _ts("created_at", now=True),
    _ts("updated_at", now=True),
)

gateways = Table(
    "gateways",
    metadata,
    Column("id", Text, primary_key=True),
    _tenant(),
    Column("site_id", Text, ForeignKey("sites.id"), nullable=False),
    Column("agent_version", Text, nullable=False, server_default=""),
    _ts("first_seen", now=True),
    _ts("last_seen", now=True),
    # The agent's store-and-forward buffer as its last heartbeat reported it,
    # and the samples refused at the gateway (migration 0010).
    Column("buffered_batches", BigInteger, nullable=False, server_default="0"),
    Column("buffered_bytes", BigInteger, nullable=False, server_default="0"),
    Column("dropped_batches", BigInteger, nullable=False, server_default="0"),
    Column("dropped_samples", BigInteger, nullable=False, server_default="0"),
    Column("rejected_samples", BigInteger, nullable=False, server_default="0"),
    Column("last_rejection", Text, nullable=True),
    _ts("reported_at", nullable=True),
    # When a heartbeat last showed the drop counts grow (migration 0014).
    _ts("last_drop_at", nullable=True),
)

assets = Table(
    "assets",
    metadata,
    Column("id", Text, primary_key=True),
    _tenant(),
    Column("site_id", Text, ForeignKey("sites.id"), nullable=False, index=True),
    Column("gateway_id", Text, ForeignKey("gateways.id"), nullable=False),
    Column("name", Text, nullable=False, server_default=""),
    Column("asset_type", Text, nullable=False),
    Column("p_min_kw", Float, nullable=False),
    Column("p_max_kw", Float, nullable=False),
    Column("capacity_kwh", Float, nullable=False, server_default="0"),
    Column("default_p_kw", Float, nullable=False, server_default="0"),
    _ts("created_at", now=True),
    _ts("updated_at", now=True),
    # Set while the asset waits for an admin's approval (migration 0007): a
    # held asset is not dispatched to, split over or counted in a site.
    Column("held_reason", Text, nullable=True),
)

# The gateways an admin enrolled for a site (migration 0007). No foreign keys:
# a gateway is enrolled before its first Hello creates the site or gateway.
gateway_enrollments = Table(
    "gateway_enrollments",
    metadata,
    Column("site_id", Text, nullable=False),
    Column("gateway_id", Text, nullable=False, index=True),
    _tenant(),
    Column("enrolled_by", Text, nullable=False),
    _ts("enrolled_at", now=True),
    # Bound on |p_min_kw| and |p_max_kw| of assets this gateway declares for
    # the first time; beyond it (or with none set) they are held for approval.
    Column("max_asset_kw", Float, nullable=True),
    PrimaryKeyConstraint("site_id", "gateway_id"),
)

agent_sessions = Table(
    "agent_sessions",
    metadata,
    Column("id", Text, primary_key=True),
    _tenant(),
    Column("gateway_id", Text, ForeignKey("gateways.id"), nullable=False),
    Column("site_id", Text, ForeignKey("sites.id"), nullable=False),
    Column("headend_id", Text, nullable=False),
    Column("task_queue", Text, nullable=False),
    Column("peer", Text, nullable=False, server_default=""),
    Column("agent_version", Text, nullable=False, server_default=""),
    _ts("connected_at", now=True),
    _ts("last_seen", now=True),
    _ts("ended_at", nullable=True),
    Column("end_reason", Text, nullable=True),
    # One live session per gateway, enforced by the database.
    Index(
        "uq_agent_sessions_live_gateway",
        "gateway_id",
        unique=True,
        postgresql_where=text("ended_at IS NULL"),
    ),
    # A gateway's history, its last disconnect, and the event stream's
    # "agents changed" (migration 0014).
    Index("ix_agent_sessions_gateway_connected", "gateway_id", "connected_at"),
    Index(
        "ix_agent_sessions_gateway_ended",
        "gateway_id",
        "ended_at",
        postgresql_where=text("ended_at IS NOT NULL"),
    ),
    Index("ix_agent_sessions_seen", text("greatest(last_seen, ended_at)")),
)

dispatches = Table(
    "dispatches",
    metadata,
    Column("id", Text, primary_key=True),
    _tenant(),
    Column("kind", Text, nullable=False),  # asset | site
    Column("parent_id", Text, ForeignKey("dispatches.id"), nullable=True, index=True),
    Column("asset_id", Text, nullable=True, index=True),
    Column("site_id", Text, nullable=True, index=True),
    Column("p_kw", Float, nullable=False),
    Column("q_kvar", Float, nullable=True),
    Column("duration_s", Integer, nullable=False),
    _ts("start_at"),
    _ts("end_at"),
    _ts("deliver_by"),
    Column("state", Text, nullable=False),
    Column("reason", Text, nullable=True),
    Column("detail", Text, nullable=False, server_default=""),
    Column("applied_p_kw", Float, nullable=True),
    Column("policy", Text, nullable=True),
    Column("allocation", JSONB, nullable=True),
    Column("warnings", JSONB, nullable=False, server_default=text("'[]'::jsonb")),
    Column("idempotency_key", Text, nullable=True),
    Column("request_hash", Text, nullable=True),
    Column("submitted_by", Text, nullable=False, server_default="anonymous"),
    _ts("created_at", now=True),
    _ts("updated_at", now=True),
    # Higher wins: a new dispatch with priority >= the live one supersedes it.
    Column("priority", Integer, nullable=False, server_default="0"),
    Column("superseded_by", Text, nullable=True),
    # The submission order (core.supersede; migration 0006): NULL before it was recorded.
    Column("submit_seq", BigInteger, nullable=True),
    # cloud (the API) | local (written on site, reported by the agent; migration 0004)
    Column("source", Text, nullable=False, server_default="cloud"),
    # The OpenTelemetry trace of its submit, 32 hex digits (migration 0010).
    Column("trace_id", Text, nullable=True),
    # An Idempotency-Key is the caller's own (migration 0009).
    UniqueConstraint("tenant_id", "submitted_by", "idempotency_key"),
    Index("ix_dispatches_created_at", "created_at"),
    # The event stream's max(updated_at); lists by state (migration 0014).
    Index("ix_dispatches_updated_at", "updated_at"),
    Index("ix_dispatches_state_created_at", "state", "created_at"),
    Index(
        "ix_dispatches_live_asset",
        "asset_id",
        postgresql_where=text(f"kind = 'asset' AND state NOT IN ({_TERMINAL_SQL})"),
    ),
)

dispatch_transitions = Table(
    "dispatch_transitions",
    metadata,
    Column("dispatch_id", Text, ForeignKey("dispatches.id"), nullable=False),
    Column("seq", Integer, nullable=False),
    _tenant(),
    Column("from_state", Text, nullable=True),
    Column("to_state", Text, nullable=False),
    _ts("at"),
    Column("reason", Text, nullable=True),
    Column("detail", Text, nullable=False, server_default=""),
    Column("actor", Text, nullable=False, server_default=""),
    PrimaryKeyConstraint("dispatch_id", "seq"),
    # The state machine has no cycles: each state is entered at most once,
    # which makes recording a transition idempotent.
    UniqueConstraint("dispatch_id", "to_state"),
)

# What an agent reported about a dispatch after it had ended: a terminal state
# never changes, but the agent's later word belongs in the record.
dispatch_late_acks = Table(
    "dispatch_late_acks",
    metadata,
    Column("dispatch_id", Text, ForeignKey("dispatches.id"), nullable=False),
    _tenant(),
    Column("state", Text, nullable=False),
    _ts("at"),  # the agent's time
    Column("reason", Text, nullable=True),
    Column("detail", Text, nullable=False, server_default=""),
    Column("gateway_id", Text, nullable=False, server_default=""),
    _ts("received_at", now=True),
    # The same ack re-sent (on a new session) is kept once.
    PrimaryKeyConstraint("dispatch_id", "state", "at"),
)


def _telemetry_columns() -> list[Column[object]]:
    return [
        Column("asset_id", Text, nullable=False),
        _ts("ts"),
        Column("tenant_id", Text, nullable=False, server_default=text(f"'{DEFAULT_TENANT}'")),
        _ts("received_at", now=True),
        # core's fields: p_kw ... frequency_hz (numbers), then state (text)
        *[Column(f.name, Float if f.kind == "number" else Text, nullable=True) for f in CORE],
        Column("details", JSONB, nullable=False, server_default=text("'{}'::jsonb")),
    ]


# Partitioned by time (or a hypertable); its DDL is in the baseline migration.
telemetry = Table(
    "telemetry",
    metadata,
    *_telemetry_columns(),
    PrimaryKeyConstraint("asset_id", "ts"),
    info={"managed_by_migration": True},
)

telemetry_latest = Table(
    "telemetry_latest",
    metadata,
    *_telemetry_columns(),
    PrimaryKeyConstraint("asset_id"),
)

ingest_watermarks = Table(
    "ingest_watermarks",
    metadata,
    Column("gateway_id", Text, primary_key=True),
    _tenant(),
    Column("last_batch_seq", BigInteger, nullable=False),
    _ts("updated_at", now=True),
)

# --- security (migration 0002) -------------------------------------------------

api_tokens = Table(
    "api_tokens",
    metadata,
    Column("id", Text, primary_key=True),
    _tenant(),
    Column("name", Text, nullable=False),
    Column("role", Text, nullable=False),
    # SHA-256 of the token: the token itself is shown once and never stored.
    Column("token_hash", Text, nullable=False, unique=True),
    Column("prefix", Text, nullable=False),
    Column("created_by", Text, nullable=False),
    _ts("created_at", now=True),
    _ts("expires_at", nullable=True),
    _ts("last_used_at", nullable=True),
    _ts("revoked_at", nullable=True),
    Column("revoked_by", Text, nullable=True),
    Index(
        "uq_api_tokens_live_name",
        "tenant_id",
        "name",
        unique=True,
        postgresql_where=text("revoked_at IS NULL"),
    ),
)

# Gateway certificates the headend has seen or the CLI has revoked, by
# fingerprint. No foreign key to gateways: a certificate can be revoked
# before its gateway ever connected.
gateway_certificates = Table(
    "gateway_certificates",
    metadata,
    Column("fingerprint", Text, primary_key=True),
    _tenant(),
    Column("gateway_id", Text, nullable=False, index=True),
    Column("serial", Text, nullable=False),
    _ts("not_before"),
    _ts("not_after"),
    _ts("first_seen", nullable=True),
    _ts("last_seen", nullable=True),
    _ts("revoked_at", nullable=True),
    Column("revoked_by", Text, nullable=True),
    Column("revoke_reason", Text, nullable=True),
)

# One-time enrollment tokens: an admin binds one to a gateway id and a site;
# ``POST /api/v1/enroll`` spends it (``used_at``) to get the gateway's CSR
# signed. Only the SHA-256 of the token is stored.
enrollment_tokens = Table(
    "enrollment_tokens",
    metadata,
    Column("id", Text, primary_key=True),
    _tenant(),
    Column("token_hash", Text, nullable=False, unique=True),
    Column("prefix", Text, nullable=False),
    Column("gateway_id", Text, nullable=False, index=True),
    Column("site_id", Text, nullable=False),
    Column("max_asset_kw", Float, nullable=True),
    Column("created_by", Text, nullable=False),
    _ts("created_at", now=True),
    _ts("expires_at"),
    _ts("used_at", nullable=True),
    Column("used_fingerprint", Text, nullable=True),  # the certificate it got signed
)

# Append-only and hash-chained: ids are contiguous, each row's hash covers its
# fields and the previous row's hash. Triggers refuse UPDATE, DELETE, TRUNCATE.
audit_log = Table(
    "audit_log",
    metadata,
    Column("id", BigInteger, primary_key=True, autoincrement=False),
    _tenant(),
    _ts("at"),
    Column("actor", Text, nullable=False),
    Column("actor_role", Text, nullable=False, server_default=""),
    Column("auth_method", Text, nullable=False, server_default=""),
    Column("action", Text, nullable=False),
    Column("target", Text, nullable=False, server_default=""),
    Column("outcome", Text, nullable=False),
    Column("request_id", Text, nullable=False, server_default=""),
    Column("detail", JSONB, nullable=False, server_default=text("'{}'::jsonb")),
    Column("prev_hash", Text, nullable=False),
    Column("hash", Text, nullable=False, unique=True),
    Index("ix_audit_log_at", "at"),
    Index("ix_audit_log_action", "action"),
)
