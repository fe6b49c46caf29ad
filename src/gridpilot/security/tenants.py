"""Tenants: who owns sites, gateways, assets, dispatches and principals.

A platform admin (the service operator) creates, lists, suspends and resumes
them; each change is audited. A suspended tenant's principals are refused at
authentication and its gateways' streams at the handshake; its data stays.
``default`` is the tenant of a single-tenant deployment (migration 0001).
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any

from sqlalchemy import select, update
from sqlalchemy.exc import IntegrityError
from sqlalchemy.ext.asyncio import AsyncEngine

from gridpilot.core.errors import Conflict, NotFound, ValidationFailed
from gridpilot.schema import tables as t
from gridpilot.schema.events import announce_gateway_changed

from .audit import Actor, AuditEvent, AuditLog

TENANT_ID = re.compile(r"^[a-z0-9][a-z0-9-]{0,62}$")


class TenantSuspended(Exception):
    """The tenant of a principal or gateway is suspended (or unknown)."""


@dataclass(frozen=True)
class TenantInfo:
    id: str
    name: str
    created_at: datetime
    suspended_at: datetime | None
    suspended_by: str | None

    @classmethod
    def from_row(cls, row: Any) -> TenantInfo:
        return cls(**{f: row[f] for f in cls.__dataclass_fields__})


def check_tenant_id(tenant_id: str, field: str = "tenant_id") -> str:
    if not TENANT_ID.match(tenant_id):
        raise ValidationFailed(
            f"{field}: 1-63 lower-case letters, digits or '-', starting with a letter or digit",
            field=field,
        )
    return tenant_id


class TenantStore:
    def __init__(self, engine: AsyncEngine, audit: AuditLog) -> None:
        self._engine = engine
        self._audit = audit

    async def create(self, tenant_id: str, name: str, by: Actor) -> TenantInfo:
        check_tenant_id(tenant_id, "id")
        if not name.strip() or len(name) > 200:
            raise ValidationFailed("name: 1-200 characters", field="name")
        try:
            async with self._engine.begin() as conn:
                await conn.execute(t.tenants.insert().values(id=tenant_id, name=name.strip()))
                await self._audit.append(
                    AuditEvent(by, "tenant.create", tenant_id, "ok", {"name": name}), conn
                )
        except IntegrityError:
            raise Conflict(f"tenant {tenant_id} exists", field="id") from None
        return await self.get(tenant_id)

    async def get(self, tenant_id: str) -> TenantInfo:
        async with self._engine.connect() as conn:
            row = (
                (await conn.execute(select(t.tenants).where(t.tenants.c.id == tenant_id)))
                .mappings()
                .first()
            )
        if row is None:
            raise NotFound(f"tenant {tenant_id} does not exist", field="tenant_id")
        return TenantInfo.from_row(row)

    async def list(self) -> list[TenantInfo]:
        async with self._engine.connect() as conn:
            rows = (await conn.execute(select(t.tenants).order_by(t.tenants.c.id))).mappings()
            return [TenantInfo.from_row(r) for r in rows.all()]

    async def set_suspended(self, tenant_id: str, suspended: bool, by: Actor) -> TenantInfo:
        """Suspend or resume (idempotent); audited either way."""
        ten = t.tenants
        values = (
            {"suspended_at": datetime.now(UTC), "suspended_by": by.name}
            if suspended
            else {"suspended_at": None, "suspended_by": None}
        )
        async with self._engine.begin() as conn:
            found = (
                await conn.execute(
                    select(ten.c.suspended_at).where(ten.c.id == tenant_id).with_for_update()
                )
            ).first()
            if found is None:
                raise NotFound(f"tenant {tenant_id} does not exist", field="tenant_id")
            if (found[0] is not None) != suspended:
                await conn.execute(update(ten).where(ten.c.id == tenant_id).values(**values))
                # Every replica's session guard ends the tenant's live streams now.
                gateways = await conn.execute(
                    select(t.gateways.c.id).where(t.gateways.c.tenant_id == tenant_id)
                )
                for (gateway_id,) in gateways:
                    await announce_gateway_changed(conn, gateway_id)
            action = "tenant.suspend" if suspended else "tenant.resume"
            detail = {} if (found[0] is not None) != suspended else {"unchanged": True}
            await self._audit.append(AuditEvent(by, action, tenant_id, "ok", detail), conn)
        return await self.get(tenant_id)

    async def check_active(self, tenant_id: str) -> None:
        """TenantSuspended when the tenant is suspended or does not exist."""
        async with self._engine.connect() as conn:
            row = (
                await conn.execute(
                    select(t.tenants.c.suspended_at).where(t.tenants.c.id == tenant_id)
                )
            ).first()
        if row is None:
            raise TenantSuspended(f"tenant {tenant_id} does not exist")
        if row[0] is not None:
            raise TenantSuspended(f"tenant {tenant_id} is suspended")
