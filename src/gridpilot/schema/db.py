"""Database plumbing: engines, migrations and reset."""

from __future__ import annotations

from datetime import UTC, datetime
from pathlib import Path

import psycopg
import sqlalchemy.exc
import structlog
from alembic import command
from alembic.config import Config
from alembic.script import ScriptDirectory
from sqlalchemy import Engine, create_engine, text
from sqlalchemy.exc import ProgrammingError
from sqlalchemy.ext.asyncio import AsyncEngine, create_async_engine

from . import tenancy
from .roles import APP_ROLE, can_rewrite_audit, ensure_app_role
from .telemetry_ddl import (
    TelemetryPolicy,
    apply_policies,
    convert_to_hypertable,
    ensure_partitions,
    is_hypertable,
)

log = structlog.get_logger(__name__)
MIGRATIONS = Path(__file__).parent / "migrations"
# The database cannot be reached now (connection, server, pool, timeout), through
# SQLAlchemy or psycopg: a retry later may work. Not a fault of the data or the SQL.
DATABASE_UNAVAILABLE: tuple[type[Exception], ...] = (
    sqlalchemy.exc.OperationalError,
    sqlalchemy.exc.InterfaceError,
    sqlalchemy.exc.TimeoutError,
    psycopg.OperationalError,
    psycopg.InterfaceError,
    TimeoutError,
)
# The same, or the network under a raw connection (any OSError).
DATABASE_OR_NETWORK_DOWN: tuple[type[Exception], ...] = (*DATABASE_UNAVAILABLE, OSError)


def sqlalchemy_url(libpq_url: str) -> str:
    """``postgresql://`` → ``postgresql+psycopg://`` (psycopg 3 for SQLAlchemy)."""
    for prefix in ("postgresql://", "postgres://"):
        if libpq_url.startswith(prefix):
            return "postgresql+psycopg://" + libpq_url[len(prefix) :]
    return libpq_url


def sync_engine(url: str) -> Engine:
    """An engine for the owner's work (migrations, partitions, resets): every
    tenant's rows (the system scope, schema/tenancy.py)."""
    return create_engine(
        sqlalchemy_url(url),
        pool_pre_ping=True,
        connect_args={"options": tenancy.SYSTEM_OPTIONS},
    )


def async_engine(url: str, pool_size: int = 5) -> AsyncEngine:
    """The app's engine: each transaction starts in the caller's tenant scope
    (schema/tenancy.py), so row-level security sees what the caller may."""
    engine = create_async_engine(
        sqlalchemy_url(url),
        pool_size=pool_size,
        max_overflow=5,
        pool_pre_ping=True,
        pool_timeout=5,
        connect_args={"connect_timeout": 5},
    )
    tenancy.install(engine.sync_engine)
    return engine


def _alembic_config(url: str, app_role: str = APP_ROLE) -> Config:
    cfg = Config()
    cfg.set_main_option("script_location", str(MIGRATIONS))
    cfg.set_main_option("sqlalchemy.url", sqlalchemy_url(url).replace("%", "%%"))
    cfg.set_main_option("gridpilot_app_role", app_role)
    return cfg


def upgrade(url: str, revision: str = "head", app_role: str = APP_ROLE) -> None:
    """Migrate, as the owner. At head, the app role's grants are applied
    again (idempotent), so tables of every revision are covered."""
    command.upgrade(_alembic_config(url, app_role), revision)
    if revision == "head":
        engine = sync_engine(url)
        try:
            with engine.begin() as conn:
                ensure_app_role(conn, app_role)
        finally:
            engine.dispose()


def head_revision() -> str | None:
    return ScriptDirectory.from_config(_alembic_config("postgresql://")).get_current_head()


def current_revision(url: str) -> str | None:
    engine = sync_engine(url)
    try:
        with engine.connect() as conn:
            exists = conn.execute(text("SELECT to_regclass('alembic_version')")).scalar()
            if exists is None:
                return None
            return conn.execute(text("SELECT version_num FROM alembic_version")).scalar()
    finally:
        engine.dispose()


def reset(url: str) -> None:
    """Drop everything in the public schema and migrate to head again."""
    engine = sync_engine(url)
    try:
        with engine.begin() as conn:
            conn.execute(text("DROP SCHEMA public CASCADE"))
            conn.execute(text("CREATE SCHEMA public"))
    finally:
        engine.dispose()
    upgrade(url)


def maintain_partitions(url: str, policy: TelemetryPolicy | None = None) -> list[str] | None:
    """The telemetry partitions created (plain PostgreSQL) or the policies
    changed to ``policy`` (a hypertable); None when this role may not (the
    app role does not own the table): rows then go to the DEFAULT partition
    until the owner runs ``gridpilot db upgrade`` (daily, say)."""
    engine = sync_engine(url)
    try:
        with engine.begin() as conn:
            if is_hypertable(conn):
                return [] if policy is None else apply_policies(conn, policy)
            return ensure_partitions(conn, datetime.now(UTC).date())
    except ProgrammingError as exc:
        if getattr(exc.orig, "sqlstate", None) != "42501":  # insufficient_privilege
            raise
        return None
    finally:
        engine.dispose()


def move_to_timescaledb(url: str, policy: TelemetryPolicy, app_role: str = APP_ROLE) -> int:
    """Telemetry of a plain-PostgreSQL database into a hypertable, as the
    owner (``gridpilot db move-to-timescaledb``); the rows moved."""
    engine = sync_engine(url)
    try:
        with engine.begin() as conn:
            moved = convert_to_hypertable(conn)
            apply_policies(conn, policy)
            ensure_app_role(conn, app_role)  # the new table and views
        return moved
    finally:
        engine.dispose()


def telemetry_backend(url: str) -> str | None:
    """``"timescaledb <version>"`` when telemetry is a hypertable, else None."""
    engine = sync_engine(url)
    try:
        with engine.connect() as conn:
            if not is_hypertable(conn):
                return None
            version = conn.execute(
                text("SELECT extversion FROM pg_extension WHERE extname = 'timescaledb'")
            ).scalar()
            return f"timescaledb {version}"
    finally:
        engine.dispose()


def audit_bypass(url: str) -> str | None:
    """Why the role of ``url`` could rewrite the audit log (None: it cannot)."""
    engine = sync_engine(url)
    try:
        with engine.connect() as conn:
            return can_rewrite_audit(conn)
    finally:
        engine.dispose()
