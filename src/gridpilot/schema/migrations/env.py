"""Alembic environment: runs against the URL given in the Config (see schema.db)."""

from __future__ import annotations

from alembic import context
from sqlalchemy import create_engine, pool

from gridpilot.schema.tables import metadata
from gridpilot.schema.tenancy import SYSTEM_OPTIONS

config = context.config


def _include(
    obj: object, name: str | None, type_: str, reflected: bool, compare_to: object
) -> bool:
    # Telemetry partitions are created by the app, not by migrations.
    return not (type_ == "table" and name is not None and name.startswith("telemetry_p"))


def run_migrations_online() -> None:
    connectable = config.attributes.get("connection")
    if connectable is not None:
        context.configure(connection=connectable, target_metadata=metadata, include_object=_include)
        with context.begin_transaction():
            context.run_migrations()
        return
    # Migrations are system work: row-level security (0015) shows them every tenant's rows.
    engine = create_engine(
        config.get_main_option("sqlalchemy.url") or "",
        poolclass=pool.NullPool,
        connect_args={"options": SYSTEM_OPTIONS},
    )
    with engine.connect() as connection:
        context.configure(connection=connection, target_metadata=metadata, include_object=_include)
        with context.begin_transaction():
            context.run_migrations()


run_migrations_online()
