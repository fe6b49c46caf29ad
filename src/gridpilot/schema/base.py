"""What every table module shares: the one ``MetaData`` (with the naming
convention the migrations use), the default tenant, and the column helpers."""

from __future__ import annotations

from sqlalchemy import Column, DateTime, ForeignKey, MetaData, Text, func, text

DEFAULT_TENANT = "default"

metadata = MetaData(
    naming_convention={
        "ix": "ix_%(table_name)s_%(column_0_N_name)s",
        "uq": "uq_%(table_name)s_%(column_0_N_name)s",
        "fk": "fk_%(table_name)s_%(column_0_name)s_%(referred_table_name)s",
        "pk": "pk_%(table_name)s",
    }
)


def tenant_column() -> Column[str]:
    return Column(
        "tenant_id",
        Text,
        ForeignKey("tenants.id"),
        nullable=False,
        server_default=text(f"'{DEFAULT_TENANT}'"),
    )


def ts_column(name: str, nullable: bool = False, now: bool = False) -> Column[object]:
    return Column(
        name,
        DateTime(timezone=True),
        nullable=nullable,
        server_default=func.now() if now else None,
    )
