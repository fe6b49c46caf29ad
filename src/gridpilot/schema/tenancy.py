"""Whose rows a database transaction may see: the tenant scope, and the
setting PostgreSQL's row-level security policies read (migration 0015).

Every transaction an engine of ours opens starts with
``set_config('gridpilot.tenant', <scope>, true)`` (transaction-local, so a
pooled connection carries nothing over). The scope comes from a context
variable:

- a tenant id: an API request of that tenant's principal (set by the auth
  middleware for the request): the policies show that tenant's rows only;
- ``*`` (:data:`SYSTEM`): work for no one caller (telemetry ingest, the gRPC
  gateway, workflow activities, migrations, the CLI, a platform admin),
  entered explicitly by a composition root (``Headend.run``, the CLI);
- unset: the policies show nothing. Code that forgot to say whose work it
  does reads no rows rather than every tenant's.

Superusers and roles with BYPASSRLS skip the policies; the app role
(``gridpilot_app``, schema/roles.py) may not, which makes them the second
wall behind the application's own ``tenant_id`` filters.
"""

from __future__ import annotations

import contextlib
from collections.abc import Iterator
from contextvars import ContextVar
from typing import Any

from sqlalchemy import ColumnElement, Engine, event, true

SETTING = "gridpilot.tenant"
SYSTEM = "*"
NOBODY = ""
# libpq option that gives a raw psycopg connection the system scope for its
# whole session (the telemetry writer's COPY connection).
SYSTEM_OPTIONS = f"-c {SETTING}={SYSTEM}"

_scope: ContextVar[str | None] = ContextVar("gridpilot_tenant_scope", default=None)


def current_scope() -> str:
    """The scope a transaction opened now gets: a tenant id, SYSTEM, or NOBODY."""
    found = _scope.get()
    return NOBODY if found is None else found


def scoped_tenant() -> str | None:
    """The tenant this context acts for, or None (system work, or no scope)."""
    found = _scope.get()
    return None if found in (None, SYSTEM, NOBODY) else found


def enter_scope(scope: str) -> None:
    """Set the scope for the rest of this context (a task, a request): a
    composition root's ``enter_scope(SYSTEM)``, the auth middleware's tenant."""
    _scope.set(scope)


@contextlib.contextmanager
def scope(value: str) -> Iterator[None]:
    """Run a block in ``value``'s scope, then restore the one before."""
    token = _scope.set(value)
    try:
        yield
    finally:
        _scope.reset(token)


def install(engine: Engine) -> None:
    """Make every transaction ``engine`` opens start in the current scope."""

    @event.listens_for(engine, "begin")
    def _begin(conn: Any) -> None:
        # The DBAPI cursor, not conn.execute: the begin event runs while
        # SQLAlchemy opens the transaction (psycopg begins implicitly on the
        # first statement, this one).
        cursor = conn.connection.dbapi_connection.cursor()
        try:
            cursor.execute("SELECT set_config(%s, %s, true)", (SETTING, current_scope()))
        finally:
            cursor.close()


def visible(table: Any) -> ColumnElement[bool]:
    """The application's own tenant filter: ``table``'s rows of the tenant in
    scope (every row for system work). Every query an API request makes puts
    it in its WHERE clause; row-level security repeats it in the database."""
    tenant = scoped_tenant()
    return true() if tenant is None else table.c.tenant_id == tenant


def owner_tenant(default: str) -> str:
    """The tenant a row written now belongs to: the scope's, else ``default``."""
    return scoped_tenant() or default
