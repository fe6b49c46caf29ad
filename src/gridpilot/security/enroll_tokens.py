"""One-time enrollment tokens: what lets a new gateway get its certificate.

An admin issues a token bound to a gateway id and a site (REST
``POST /api/v1/enrollment-tokens``, CLI ``gridpilot gateway token``). It is
``gpe_`` + 43 url-safe characters, shown once; only its SHA-256 is stored
(``security.tokens`` says why that is enough). It expires after a short TTL
and is spent by the first enrollment that uses it: the ``UPDATE ... WHERE
used_at IS NULL`` that spends it runs in the transaction that records the
certificate, so two gateways racing with one token get one certificate.
"""

from __future__ import annotations

import secrets
import uuid
from datetime import UTC, datetime, timedelta
from typing import Any

from sqlalchemy import and_, select, update
from sqlalchemy.ext.asyncio import AsyncConnection, AsyncEngine

from gridpilot.core.errors import Refused
from gridpilot.schema import tables as t
from gridpilot.schema.tables import DEFAULT_TENANT
from gridpilot.schema.tenancy import owner_tenant, visible

from .audit import Actor, AuditEvent, AuditLog
from .identity import check_gateway_id, check_site_id
from .tokens import hash_token

ENROLL_PREFIX = "gpe_"
MIN_TTL_S, MAX_TTL_S = 60, 7 * 86_400
DEFAULT_TTL_S = 3600
VIEW_FIELDS = (
    "id",
    "prefix",
    "gateway_id",
    "site_id",
    "max_asset_kw",
    "created_by",
    "created_at",
    "expires_at",
    "used_at",
    "used_fingerprint",
)


def refused(message: str, code: str, status: int, field: str = "token") -> Refused:
    """Why a token cannot enroll: unknown (403), expired (403) or used (409)."""
    return Refused(message, code=code, field=field, status=status)


def unknown() -> Refused:
    return refused("token: not an enrollment token of this headend", "token_unknown", 403)


def check_ttl(ttl_s: int) -> timedelta:
    if not MIN_TTL_S <= ttl_s <= MAX_TTL_S:
        raise refused(
            f"ttl_s: must be {MIN_TTL_S}..{MAX_TTL_S} seconds (got {ttl_s})",
            "validation_failed",
            422,
            "ttl_s",
        )
    return timedelta(seconds=ttl_s)


class EnrollmentTokens:
    def __init__(self, engine: AsyncEngine, audit: AuditLog) -> None:
        self._engine = engine
        self._audit = audit

    async def create(
        self,
        gateway_id: str,
        site_id: str,
        by: Actor,
        ttl_s: int,
        max_asset_kw: float | None = None,
    ) -> tuple[dict[str, Any], str]:
        """The token's record and the token itself (shown once, never stored)."""
        for check, value in ((check_gateway_id, gateway_id), (check_site_id, site_id)):
            try:
                check(value)
            except ValueError as exc:
                field = "gateway_id" if check is check_gateway_id else "site_id"
                raise refused(f"{field}: {exc}", "validation_failed", 422, field) from None
        expires = datetime.now(UTC) + check_ttl(ttl_s)
        secret = ENROLL_PREFIX + secrets.token_urlsafe(32)
        token_id = f"enr_{uuid.uuid4().hex[:12]}"
        row: dict[str, Any] = {
            "id": token_id,
            "token_hash": hash_token(secret),
            "prefix": secret[: len(ENROLL_PREFIX) + 6],
            "gateway_id": gateway_id,
            "site_id": site_id,
            "max_asset_kw": max_asset_kw,
            "created_by": by.name,
            "expires_at": expires,
            "tenant_id": owner_tenant(DEFAULT_TENANT),  # the issuing admin's
        }
        async with self._engine.begin() as conn:
            await conn.execute(t.enrollment_tokens.insert().values(**row))
            detail = {k: row[k] for k in ("gateway_id", "site_id", "max_asset_kw", "prefix")}
            await self._audit.append(
                AuditEvent(
                    by,
                    "enrollment_token.create",
                    token_id,
                    "ok",
                    {**detail, "expires_at": expires.isoformat()},
                ),
                conn,
            )
        return await self.get(token_id), secret

    async def get(self, token_id: str) -> dict[str, Any]:
        e = t.enrollment_tokens
        async with self._engine.connect() as conn:
            row = (
                (await conn.execute(select(e).where(e.c.id == token_id, visible(e))))
                .mappings()
                .one()
            )
        return {k: row[k] for k in VIEW_FIELDS}

    async def list(self, include_spent: bool = False) -> list[dict[str, Any]]:
        """Tokens in creation order; by default only those still usable."""
        e = t.enrollment_tokens
        q = select(e).where(visible(e)).order_by(e.c.created_at)
        if not include_spent:
            q = q.where(and_(e.c.used_at.is_(None), e.c.expires_at > datetime.now(UTC)))
        async with self._engine.connect() as conn:
            rows = (await conn.execute(q)).mappings().all()
        return [{k: r[k] for k in VIEW_FIELDS} for r in rows]

    async def find(self, secret: str) -> dict[str, Any]:
        """The record of a token, spent or not; Refused (403) if there is none."""
        async with self._engine.connect() as conn:
            row = await _by_secret(conn, secret)
        return {k: row[k] for k in VIEW_FIELDS}

    async def spend(self, conn: AsyncConnection, secret: str, fingerprint: str) -> dict[str, Any]:
        """Mark the token used by the certificate ``fingerprint``, in ``conn``'s
        transaction; exactly one caller wins a race for it."""
        e = t.enrollment_tokens
        now = datetime.now(UTC)
        row = (
            (
                await conn.execute(
                    update(e)
                    .where(
                        and_(
                            e.c.token_hash == hash_token(secret),
                            e.c.used_at.is_(None),
                            e.c.expires_at > now,
                        )
                    )
                    .values(used_at=now, used_fingerprint=fingerprint)
                    .returning(*e.c)
                )
            )
            .mappings()
            .first()
        )
        if row is None:
            check_usable(await _by_secret(conn, secret))
            raise unknown()  # not reached: check_usable raised
        return {**{k: row[k] for k in VIEW_FIELDS}, "tenant_id": row["tenant_id"]}


async def _by_secret(conn: AsyncConnection, secret: str) -> Any:
    e = t.enrollment_tokens
    if not secret.startswith(ENROLL_PREFIX):
        raise unknown()
    row = (
        (await conn.execute(select(e).where(e.c.token_hash == hash_token(secret))))
        .mappings()
        .first()
    )
    if row is None or not secrets.compare_digest(row["token_hash"], hash_token(secret)):
        raise unknown()
    return row


def _utc(at: datetime) -> str:
    return f"{at.astimezone(UTC):%Y-%m-%d %H:%M:%S} UTC"


def check_usable(row: Any) -> None:
    """Refused (409 used, 403 expired) unless the token can still enroll."""
    if row["used_at"] is not None:
        raise refused(
            f"token: {row['id']} was used at {_utc(row['used_at'])}; ask an admin for a new one",
            "token_used",
            409,
        )
    if row["expires_at"] <= datetime.now(UTC):
        raise refused(
            f"token: {row['id']} expired at {_utc(row['expires_at'])}; ask an admin for a new one",
            "token_expired",
            403,
        )
