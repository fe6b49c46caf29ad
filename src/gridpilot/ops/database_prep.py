"""The headend's database at start: migrated (or reset, in dev), its
telemetry partitions made, and what it is told about the database's role.
An unreachable database is one HeadendError line, not a traceback."""

from __future__ import annotations

import structlog

from gridpilot.schema import db

from .credentials import HeadendError
from .settings import Environment, Settings

log = structlog.get_logger(__name__)


def prepare_database(settings: Settings) -> None:
    """Migrate (or reset) the schema; an unreachable database is one HeadendError
    line naming the setting and the server tried, not a driver traceback."""
    try:
        _prepare_database(settings)
    except db.DATABASE_OR_NETWORK_DOWN as exc:
        # SQLAlchemy's wrapper names the driver's error as .orig.
        raise _database_error(settings, getattr(exc, "orig", None) or exc) from None


def _database_error(settings: Settings, exc: BaseException) -> HeadendError:
    lines = [line.strip() for line in str(exc).splitlines() if line.strip()]
    why = lines[0] if lines else type(exc).__name__
    return HeadendError(
        f"cannot use the database at GRIDPILOT_DATABASE_URL={_redact(settings.database_url)}: {why}"
    )


def _prepare_database(settings: Settings) -> None:
    if settings.reset_db:
        if settings.environment is Environment.PRODUCTION:
            raise HeadendError(
                "GRIDPILOT_RESET_DB is refused in production (GRIDPILOT_ENVIRONMENT=production)"
            )
        log.warning("database_reset", url=_redact(settings.database_url))
        db.reset(settings.database_url)
    elif db.current_revision(settings.database_url) != db.head_revision():
        # At head there is nothing to do, so the app role (which may not
        # migrate) starts; behind it, this must be the owner.
        db.upgrade(settings.database_url, app_role=settings.db_app_role)
    if db.maintain_partitions(settings.database_url, settings.telemetry_policy) is None:
        log.warning(
            "telemetry_partitions_not_owner",
            note="this database role may not create telemetry partitions (or, on TimescaleDB, "
            "change the compression/retention policies to the settings); new days go to the "
            "DEFAULT partition until the owner runs `gridpilot db upgrade` (run it daily)",
        )
    # Detected, not configured: an external database with the extension is used as one.
    backend = db.telemetry_backend(settings.database_url) or "plain PostgreSQL (partitioned)"
    log.info("telemetry_storage", backend=backend)
    problem = db.audit_bypass(settings.database_url)
    if problem is not None:
        log.warning(
            "db_role_can_rewrite_audit",
            problem=problem,
            note=f"run the headend as {settings.db_app_role} (GRIDPILOT_DATABASE_URL) and "
            "migrations as the owner; see docs/security.md",
        )


def _redact(url: str) -> str:
    head, _, tail = url.rpartition("@")
    return ("…@" + tail) if head else url
