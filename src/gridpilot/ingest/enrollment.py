"""Site enrollment: which gateways may speak for a site, and which of their
assets count.

A site belongs to the gateways an admin enrolled for it (REST
``/sites/{id}/gateways``, CLI ``gridpilot gateway enroll``), or whose
certificate names it (``spiffe://<domain>/site/<site>/gateway/<id>``). A Hello
for any other site is refused. Assets a Hello declares for the first time (or
with changed limits) beyond the enrollment's ``max_asset_kw``, or when no bound
is set, are *held*: stored, but not dispatched to, split over or counted in the
site until an admin approves them. Every change here is audited in the
transaction that makes it.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from sqlalchemy import and_, delete, func, select, update
from sqlalchemy.dialects.postgresql import insert
from sqlalchemy.exc import DBAPIError
from sqlalchemy.ext.asyncio import AsyncConnection, AsyncEngine

from gridpilot.core.assets import Asset
from gridpilot.core.errors import Conflict, NotFound
from gridpilot.schema import tables as t
from gridpilot.schema.events import announce_gateway_changed
from gridpilot.schema.tables import DEFAULT_TENANT
from gridpilot.schema.tenancy import owner_tenant, visible
from gridpilot.security.audit import Actor, AuditEvent, AuditLog


@dataclass(frozen=True)
class Admission:
    """What a gateway's Hello for a site may do. ``enforce`` is False only in
    insecure dev mode (no certificate: nothing to bind an enrollment to)."""

    enrolled: bool
    max_asset_kw: float | None = None
    enforce: bool = True
    by_admin_only: bool = False  # enrolled by an admin, and the certificate names no site
    # The tenant the site, gateway and assets of this Hello belong to: the
    # enrollment's (else the named site's); and why it may not connect now.
    tenant_id: str = DEFAULT_TENANT
    tenant_refusal: str | None = None

    def hold_reason(self, asset: Asset) -> str | None:
        """Why a newly declared asset waits for approval (None: it counts)."""
        if not self.enforce:
            return None
        size = max(abs(asset.limits.p_min_kw), abs(asset.limits.p_max_kw))
        if self.max_asset_kw is None:
            return "new asset: no max_asset_kw is set for this gateway's enrollment"
        if size > self.max_asset_kw:
            return f"new asset of {size:g} kW is beyond the enrollment's {self.max_asset_kw:g} kW"
        return None


OPEN = Admission(enrolled=True, enforce=False)


class EnrollmentStore:
    def __init__(self, engine: AsyncEngine, audit: AuditLog) -> None:
        self._engine = engine
        self._audit = audit

    async def admission(
        self, gateway_id: str, site_id: str, cert_site: str | None = None
    ) -> Admission:
        """Whether the gateway may speak for the site, and the bound on the
        assets it declares. A certificate naming the site enrolls it (with no
        bound, unless an admin's enrollment sets one)."""
        e, ten = t.gateway_enrollments, t.tenants
        async with self._engine.connect() as conn:
            row = (
                await conn.execute(
                    select(e.c.max_asset_kw, e.c.tenant_id).where(
                        and_(e.c.site_id == site_id, e.c.gateway_id == gateway_id)
                    )
                )
            ).first()
            site_tenant = (
                await conn.execute(select(t.sites.c.tenant_id).where(t.sites.c.id == site_id))
            ).scalar()
            tenant = row.tenant_id if row is not None else site_tenant or DEFAULT_TENANT
            suspended = (
                await conn.execute(select(ten.c.suspended_at).where(ten.c.id == tenant))
            ).scalar()
        refusal = f"tenant {tenant} is suspended" if suspended is not None else None
        named = cert_site is not None and cert_site == site_id
        if row is not None:
            return Admission(
                True,
                row.max_asset_kw,
                by_admin_only=not named,
                tenant_id=tenant,
                tenant_refusal=refusal,
            )
        return Admission(enrolled=named, tenant_id=tenant, tenant_refusal=refusal)

    async def enroll(
        self,
        site_id: str,
        gateway_id: str,
        max_asset_kw: float | None,
        actor: Actor,
        conn: AsyncConnection | None = None,
    ) -> dict[str, Any]:
        """Enroll (or re-enroll with a new bound) a gateway for a site, in
        ``conn``'s transaction or one of its own. A gateway that already
        belongs to another site is refused (Conflict)."""
        if conn is not None:
            return await self._enroll(conn, site_id, gateway_id, max_asset_kw, actor)
        async with self._engine.begin() as own:
            return await self._enroll(own, site_id, gateway_id, max_asset_kw, actor)

    async def _enroll(
        self,
        conn: AsyncConnection,
        site_id: str,
        gateway_id: str,
        max_asset_kw: float | None,
        actor: Actor,
    ) -> dict[str, Any]:
        e = t.gateway_enrollments
        owner = (
            await conn.execute(
                select(t.gateways.c.site_id).where(
                    t.gateways.c.id == gateway_id, visible(t.gateways)
                )
            )
        ).scalar()
        if owner is not None and owner != site_id:
            raise Conflict(f"gateway {gateway_id} belongs to site {owner}", field="gateway_id")
        # The enrollment is the gateway's tie to a tenant: the enrolling admin's.
        # (Another tenant's site or gateway of these ids: its Hello is refused.)
        stmt = insert(e).values(
            site_id=site_id,
            gateway_id=gateway_id,
            enrolled_by=actor.name,
            max_asset_kw=max_asset_kw,
            tenant_id=owner_tenant(DEFAULT_TENANT),
        )
        taken = Conflict(
            f"gateway {gateway_id} cannot be enrolled for site {site_id}", field="gateway_id"
        )
        try:
            async with conn.begin_nested():
                row = (
                    (
                        await conn.execute(
                            stmt.on_conflict_do_update(
                                index_elements=[e.c.site_id, e.c.gateway_id],
                                set_={
                                    "max_asset_kw": stmt.excluded.max_asset_kw,
                                    "enrolled_by": stmt.excluded.enrolled_by,
                                    "enrolled_at": func.now(),
                                },
                                # another tenant's enrollment of these ids stays its own
                                where=e.c.tenant_id == stmt.excluded.tenant_id,
                            ).returning(*e.c)
                        )
                    )
                    .mappings()
                    .first()
                )
        except DBAPIError as exc:  # row security refused another tenant's row
            if getattr(exc.orig, "sqlstate", None) != "42501":
                raise
            raise taken from None
        if row is None:
            raise taken
        await self._audit.append(
            AuditEvent(
                actor,
                "gateway.enroll",
                gateway_id,
                "ok",
                {"site_id": site_id, "max_asset_kw": max_asset_kw},
            ),
            conn,
        )
        return dict(row)

    async def list_enrollments(
        self, site_id: str | None = None, gateway_id: str | None = None
    ) -> list[dict[str, Any]]:
        e = t.gateway_enrollments
        q = select(e).where(visible(e)).order_by(e.c.site_id, e.c.gateway_id)
        if site_id is not None:
            q = q.where(e.c.site_id == site_id)
        if gateway_id is not None:
            q = q.where(e.c.gateway_id == gateway_id)
        async with self._engine.connect() as conn:
            return [dict(r) for r in (await conn.execute(q)).mappings().all()]

    async def remove(self, site_id: str, gateway_id: str, actor: Actor) -> None:
        """Withdraw an enrollment: the gateway's live session for the site is
        ended at once (announced to every replica's guard) and its next Hello
        refused (unless its certificate names the site)."""
        e = t.gateway_enrollments
        async with self._engine.begin() as conn:
            gone = await conn.execute(
                delete(e)
                .where(and_(e.c.site_id == site_id, e.c.gateway_id == gateway_id), visible(e))
                .returning(e.c.gateway_id)
            )
            if gone.first() is None:
                raise NotFound(
                    f"gateway {gateway_id} is not enrolled for site {site_id}", field="gateway_id"
                )
            await announce_gateway_changed(conn, gateway_id)
            await self._audit.append(
                AuditEvent(actor, "gateway.unenroll", gateway_id, "ok", {"site_id": site_id}),
                conn,
            )

    async def held(self, site_id: str) -> list[dict[str, Any]]:
        a = t.assets
        q = (
            select(a)
            .where(and_(a.c.site_id == site_id, a.c.held_reason.is_not(None)), visible(a))
            .order_by(a.c.id)
        )
        async with self._engine.connect() as conn:
            return [dict(r) for r in (await conn.execute(q)).mappings().all()]

    async def approve(self, asset_id: str, actor: Actor, reason: str = "") -> dict[str, Any]:
        """Count a held asset from now on (dispatch, split, site capacity)."""
        a = t.assets
        async with self._engine.begin() as conn:
            row = (
                await conn.execute(
                    select(a.c.held_reason, a.c.p_min_kw, a.c.p_max_kw, a.c.gateway_id)
                    .where(a.c.id == asset_id, visible(a))
                    .with_for_update()
                )
            ).first()
            if row is None:
                raise NotFound(f"asset {asset_id} does not exist", field="asset_id")
            if row.held_reason is None:
                raise Conflict(f"asset {asset_id} is not held", field="asset_id")
            updated = (
                (
                    await conn.execute(
                        update(a)
                        .where(a.c.id == asset_id)
                        .values(held_reason=None, updated_at=func.now())
                        .returning(*a.c)
                    )
                )
                .mappings()
                .one()
            )
            await self._audit.append(
                AuditEvent(
                    actor,
                    "asset.approve",
                    asset_id,
                    "ok",
                    {
                        "gateway_id": row.gateway_id,
                        "p_min_kw": row.p_min_kw,
                        "p_max_kw": row.p_max_kw,
                        "held_reason": row.held_reason,
                        "reason": reason,
                    },
                ),
                conn,
            )
        return dict(updated)
