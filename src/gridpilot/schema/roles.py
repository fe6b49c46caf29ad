"""Database roles: the owner migrates, the app runs as a role that cannot
rewrite the audit log.

The owner (the role migrations run as) owns every table. The app role
(``gridpilot_app``, ``GRIDPILOT_DB_APP_ROLE``) reads and writes the tables the
app needs, but on ``audit_log`` only SELECT and INSERT; it owns nothing, so it
cannot disable the append-only triggers, and, not being a superuser, it cannot
set ``session_replication_role`` (the triggers are ENABLE ALWAYS besides, so
they fire even in replica mode). :func:`ensure_app_role` is idempotent: the
migration that introduced it (0008) and every ``gridpilot db upgrade`` run it.
"""

from __future__ import annotations

import re

import structlog
from sqlalchemy import Connection, text

log = structlog.get_logger(__name__)

APP_ROLE = "gridpilot_app"
AUDIT_TRIGGERS = ("audit_log_no_update_delete", "audit_log_no_truncate")
_ROLE_NAME = re.compile(r"^[a-z_][a-z0-9_]{0,62}$")


def check_role_name(name: str) -> str:
    if not _ROLE_NAME.match(name):
        raise ValueError("a role name is 1-63 lower-case letters, digits or '_'")
    return name


def ensure_app_role(conn: Connection, role: str = APP_ROLE) -> bool:
    """Make the audit triggers fire always, create the app role where this
    role may (else a DBA creates it: ``CREATE ROLE gridpilot_app LOGIN``) and
    grant it what the app needs. Returns False, with a warning, when the role
    does not exist and could not be created (the app then runs as the owner).
    Refuses a role that could bypass the audit triggers (ValueError), and a
    connection that is not the tables' owner (PermissionError)."""
    role = check_role_name(role)
    owner = conn.execute(
        text(
            "SELECT current_user, pg_has_role(current_user, tableowner, 'USAGE') FROM pg_tables "
            "WHERE schemaname = current_schema() AND tablename = 'audit_log'"
        )
    ).first()
    if owner is not None and not owner[1]:
        raise PermissionError(
            f"database role {owner[0]} does not own the tables; run `gridpilot db upgrade` "
            "as their owner (GRIDPILOT_DATABASE_URL of the owner)"
        )
    for trigger in AUDIT_TRIGGERS:
        conn.execute(text(f"ALTER TABLE audit_log ENABLE ALWAYS TRIGGER {trigger}"))
    conn.execute(
        text(
            f"""
            DO $$ BEGIN
                IF NOT EXISTS (SELECT FROM pg_roles WHERE rolname = '{role}') THEN
                    CREATE ROLE {role} NOLOGIN NOSUPERUSER NOBYPASSRLS NOCREATEDB NOCREATEROLE;
                END IF;
            EXCEPTION
                WHEN duplicate_object OR unique_violation THEN NULL;  -- created meanwhile
                WHEN insufficient_privilege THEN
                    RAISE NOTICE 'may not create role {role}';
            END $$
            """
        )
    )
    found = conn.execute(
        text(
            "SELECT rolsuper, rolbypassrls, pg_has_role(r.oid, t.tableowner, 'USAGE') "
            "FROM pg_roles r, pg_tables t "
            "WHERE r.rolname = :role AND t.schemaname = current_schema() "
            "AND t.tablename = 'audit_log'"
        ),
        {"role": role},
    ).first()
    if found is None:
        log.warning(
            "db_app_role_missing",
            role=role,
            note="the role does not exist and this role may not create it; create it "
            f"(CREATE ROLE {role} LOGIN PASSWORD '...') and run `gridpilot db upgrade` again",
        )
        return False
    superuser, bypassrls, owns_audit = found
    if superuser or bypassrls or owns_audit:
        raise ValueError(
            f"database role {role} can bypass the audit log's triggers (superuser, BYPASSRLS "
            "or member of the owner of audit_log); the app role must be a plain role"
        )
    for sql in (
        f"GRANT USAGE ON SCHEMA public TO {role}",
        f"GRANT SELECT, INSERT, UPDATE, DELETE ON ALL TABLES IN SCHEMA public TO {role}",
        f"GRANT USAGE, SELECT, UPDATE ON ALL SEQUENCES IN SCHEMA public TO {role}",
        f"REVOKE ALL ON audit_log, alembic_version FROM {role}",
        f"GRANT SELECT, INSERT ON audit_log TO {role}",
        f"GRANT SELECT ON alembic_version TO {role}",
        # Tables later migrations (run as this role) create.
        f"ALTER DEFAULT PRIVILEGES IN SCHEMA public "
        f"GRANT SELECT, INSERT, UPDATE, DELETE ON TABLES TO {role}",
        f"ALTER DEFAULT PRIVILEGES IN SCHEMA public "
        f"GRANT USAGE, SELECT, UPDATE ON SEQUENCES TO {role}",
    ):
        conn.execute(text(sql))
    # Where the audit chain starts after pruning (migration 0016): the app may
    # read it, only the owner (`gridpilot audit prune`) moves it.
    if conn.execute(text("SELECT to_regclass('public.audit_anchor')")).scalar() is not None:
        conn.execute(text(f"REVOKE INSERT, UPDATE, DELETE, TRUNCATE ON audit_anchor FROM {role}"))
    hold = "gridpilot_hold_retention(boolean)"  # pauses TimescaleDB retention (migration 0016)
    if conn.execute(text(f"SELECT to_regprocedure('{hold}')")).scalar() is not None:
        conn.execute(text(f"GRANT EXECUTE ON FUNCTION {hold} TO {role}"))
    return True


def drop_app_grants(conn: Connection, role: str = APP_ROLE) -> None:
    """Undo :func:`ensure_app_role` in this database (the role itself stays:
    it is shared by every database of the server)."""
    role = check_role_name(role)
    for trigger in AUDIT_TRIGGERS:
        conn.execute(text(f"ALTER TABLE audit_log ENABLE TRIGGER {trigger}"))
    exists = conn.execute(text("SELECT 1 FROM pg_roles WHERE rolname = :r"), {"r": role}).first()
    if exists is None:
        return
    for sql in (
        f"ALTER DEFAULT PRIVILEGES IN SCHEMA public REVOKE ALL ON TABLES FROM {role}",
        f"ALTER DEFAULT PRIVILEGES IN SCHEMA public REVOKE ALL ON SEQUENCES FROM {role}",
        f"REVOKE ALL ON ALL TABLES IN SCHEMA public FROM {role}",
        f"REVOKE ALL ON ALL SEQUENCES IN SCHEMA public FROM {role}",
        f"REVOKE USAGE ON SCHEMA public FROM {role}",
    ):
        conn.execute(text(sql))


def can_rewrite_audit(conn: Connection) -> str | None:
    """Why the connected role could rewrite the audit log undetected (a
    superuser, or a member of audit_log's owner), or None."""
    row = conn.execute(
        text(
            "SELECT current_user, r.rolsuper, pg_has_role(current_user, t.tableowner, 'USAGE') "
            "FROM pg_roles r, pg_tables t WHERE r.rolname = current_user "
            "AND t.schemaname = current_schema() AND t.tablename = 'audit_log'"
        )
    ).first()
    if row is None:
        return None
    user, superuser, owner = row
    if superuser:
        return f"{user} is a superuser"
    if owner:
        return f"{user} owns audit_log"
    return None
