"""Gateway certificates in the database: seen on connect, revoked by fingerprint.

grpcio has no CRL support, so revocation is a registry status the headend
checks on every new stream; live streams are closed when the revocation is
announced (``schema.events``, heard by ``ingest.guard`` on every replica),
and re-checked by a slower poll in case an announcement was missed. Revoking
a gateway revokes every certificate of it the headend has seen plus any the
caller passes (e.g. all the CA issued to it), so a certificate issued
afterwards works again.
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from datetime import UTC, datetime
from typing import Any

from cryptography import x509
from sqlalchemy import and_, func, select, update
from sqlalchemy.dialects.postgresql import insert
from sqlalchemy.ext.asyncio import AsyncConnection, AsyncEngine

from gridpilot.schema import tables as t
from gridpilot.schema.events import announce_gateway_changed
from gridpilot.schema.tables import DEFAULT_TENANT

from .audit import Actor, AuditEvent, AuditLog
from .identity import GatewayIdentity, IdentityError, identity_from_cert


class CertificateRegistry:
    def __init__(self, engine: AsyncEngine, audit: AuditLog) -> None:
        self._engine = engine
        self._audit = audit

    async def admit(self, ident: GatewayIdentity) -> bool:
        """Record the certificate as seen; False if it is revoked."""
        gc = t.gateway_certificates
        now = datetime.now(UTC)
        async with self._engine.begin() as conn:
            stmt = insert(gc).values(
                fingerprint=ident.fingerprint,
                gateway_id=ident.gateway_id,
                serial=ident.serial,
                not_before=ident.not_before,
                not_after=ident.not_after,
                first_seen=now,
                last_seen=now,
                tenant_id=gateway_tenant(ident.gateway_id),
            )
            row = (
                await conn.execute(
                    stmt.on_conflict_do_update(
                        index_elements=[gc.c.fingerprint],
                        set_={
                            "last_seen": now,
                            "first_seen": func.coalesce(gc.c.first_seen, now),
                        },
                    ).returning(gc.c.revoked_at, gc.c.gateway_id)
                )
            ).first()
        assert row is not None
        return row[0] is None and row[1] == ident.gateway_id

    async def record_issued(self, conn: AsyncConnection, ident: GatewayIdentity) -> None:
        """Record a certificate the headend's CA just signed (not yet seen on
        a stream), so revoking its gateway revokes it too."""
        gc = t.gateway_certificates
        await conn.execute(
            insert(gc)
            .values(
                fingerprint=ident.fingerprint,
                gateway_id=ident.gateway_id,
                serial=ident.serial,
                not_before=ident.not_before,
                not_after=ident.not_after,
                tenant_id=gateway_tenant(ident.gateway_id),
            )
            .on_conflict_do_nothing(index_elements=[gc.c.fingerprint])
        )

    async def revoked_among(self, fingerprints: Iterable[str]) -> set[str]:
        fps = list(fingerprints)
        if not fps:
            return set()
        gc = t.gateway_certificates
        async with self._engine.connect() as conn:
            rows = await conn.execute(
                select(gc.c.fingerprint).where(
                    and_(gc.c.fingerprint.in_(fps), gc.c.revoked_at.is_not(None))
                )
            )
            return {r[0] for r in rows}

    async def revoke_gateway(
        self,
        gateway_id: str,
        by: Actor,
        reason: str = "",
        certificates: Sequence[x509.Certificate] = (),
        trust_domain: str | None = None,
    ) -> list[str]:
        """Revoke every certificate of the gateway seen so far, plus ``certificates``
        (which must name this gateway). Returns the fingerprints newly revoked."""
        gc = t.gateway_certificates
        now = datetime.now(UTC)
        async with self._engine.begin() as conn:
            for cert in certificates:
                ident = _identity(cert, trust_domain)
                if ident.gateway_id != gateway_id:
                    raise ValueError(f"certificate names gateway {ident.gateway_id}")
                await self.record_issued(conn, ident)
            revoked = (
                await conn.execute(
                    update(gc)
                    .where(and_(gc.c.gateway_id == gateway_id, gc.c.revoked_at.is_(None)))
                    .values(revoked_at=now, revoked_by=by.name, revoke_reason=reason)
                    .returning(gc.c.fingerprint)
                )
            ).all()
            fps = sorted(r[0] for r in revoked)
            await announce_gateway_changed(conn, gateway_id)  # delivered at commit
            await self._audit.append(
                AuditEvent(
                    by,
                    "gateway.revoke",
                    gateway_id,
                    "ok",
                    {"fingerprints": fps, "reason": reason},
                ),
                conn,
            )
        return fps

    async def list_for(self, gateway_id: str) -> list[dict[str, Any]]:
        gc = t.gateway_certificates
        async with self._engine.connect() as conn:
            rows = await conn.execute(
                select(gc).where(gc.c.gateway_id == gateway_id).order_by(gc.c.not_before)
            )
            return [dict(r) for r in rows.mappings().all()]


def _identity(cert: x509.Certificate, trust_domain: str | None) -> GatewayIdentity:
    if trust_domain is None:
        raise ValueError("a trust domain is needed to read a gateway certificate")
    try:
        return identity_from_cert(cert, trust_domain)
    except IdentityError as exc:
        raise ValueError(str(exc)) from None


def gateway_tenant(gateway_id: str) -> Any:
    """The tenant a gateway's certificates belong to: its own (once it said
    Hello), else its enrollment's, else ``default``."""
    g, e = t.gateways, t.gateway_enrollments
    return func.coalesce(
        select(g.c.tenant_id).where(g.c.id == gateway_id).scalar_subquery(),
        select(e.c.tenant_id).where(e.c.gateway_id == gateway_id).limit(1).scalar_subquery(),
        DEFAULT_TENANT,
    )
