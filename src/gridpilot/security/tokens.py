"""Static API tokens: shown once, stored as SHA-256, listed and revoked by id or name.

A token is ``gp_`` + 43 url-safe characters (32 random bytes). SHA-256 is
enough at rest because the token carries its own entropy (no password to
brute-force). Logs and lists only ever show the id and a short prefix.
"""

from __future__ import annotations

import hashlib
import secrets
import uuid
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import Any

from sqlalchemy import and_, func, or_, select, update
from sqlalchemy.exc import IntegrityError
from sqlalchemy.ext.asyncio import AsyncConnection, AsyncEngine

from gridpilot.core.errors import Conflict, NotFound, ValidationFailed
from gridpilot.schema import tables as t
from gridpilot.schema.tables import DEFAULT_TENANT

from .audit import Actor, AuditEvent, AuditLog
from .principal import AuthError, Principal, Role
from .tenants import check_tenant_id

TOKEN_PREFIX = "gp_"
LAST_USED_EVERY = timedelta(seconds=60)


def new_token() -> str:
    return TOKEN_PREFIX + secrets.token_urlsafe(32)


def hash_token(token: str) -> str:
    return hashlib.sha256(token.encode()).hexdigest()


@dataclass(frozen=True)
class TokenInfo:
    id: str
    name: str
    role: str
    tenant_id: str
    prefix: str
    created_by: str
    created_at: datetime
    expires_at: datetime | None
    last_used_at: datetime | None
    revoked_at: datetime | None

    @classmethod
    def from_row(cls, row: Any) -> TokenInfo:
        return cls(**{f: row[f] for f in cls.__dataclass_fields__})


class TokenStore:
    def __init__(self, engine: AsyncEngine, audit: AuditLog) -> None:
        self._engine = engine
        self._audit = audit

    async def create(
        self,
        name: str,
        role: str,
        by: Actor,
        expires_at: datetime | None = None,
        tenant_id: str = DEFAULT_TENANT,
    ) -> tuple[TokenInfo, str]:
        """Returns the token's record and the token itself (never stored).
        A platform-admin token belongs to the ``default`` tenant (it acts
        above tenants)."""
        row = _new_row(name, role, by, expires_at, tenant_id)
        try:
            async with self._engine.begin() as conn:
                known = await conn.execute(
                    select(t.tenants.c.id).where(t.tenants.c.id == row["tenant_id"])
                )
                if known.first() is None:
                    raise ValidationFailed(
                        f"tenant_id: no tenant {row['tenant_id']!r}", field="tenant_id"
                    )
                await self._insert(conn, row, by)
        except IntegrityError:
            raise Conflict(f"a live token named {name!r} exists", field="name") from None
        return await self.get(row["id"]), row["secret"]

    async def rotate(self, name: str, role: str, by: Actor) -> tuple[TokenInfo, str]:
        """Replace the live token named ``name`` (if any) by a new one, in one
        transaction: the last admin token can be rotated, never left out.
        The ``default`` tenant's (``gridpilot up``'s admin token)."""
        row = _new_row(name, role, by, None, DEFAULT_TENANT)
        tok = t.api_tokens
        async with self._engine.begin() as conn:
            await _lock_live_admins(conn, DEFAULT_TENANT)
            old = (
                await conn.execute(
                    select(tok.c.id).where(
                        tok.c.name == name,
                        tok.c.revoked_at.is_(None),
                        tok.c.tenant_id == DEFAULT_TENANT,
                    )
                )
            ).scalar()
            if old is not None:
                await self._revoke_row(conn, old, name, by)
            await self._insert(conn, row, by)
        return await self.get(row["id"]), row["secret"]

    async def _insert(self, conn: AsyncConnection, row: dict[str, Any], by: Actor) -> None:
        values = {k: v for k, v in row.items() if k != "secret"}
        await conn.execute(t.api_tokens.insert().values(**values))
        await self._audit.append(
            AuditEvent(
                by,
                "token.create",
                row["id"],
                "ok",
                {"name": row["name"], "role": row["role"], "tenant_id": row["tenant_id"]},
            ),
            conn,
        )

    async def _revoke_row(self, conn: AsyncConnection, token_id: str, name: str, by: Actor) -> None:
        tok = t.api_tokens
        await conn.execute(
            update(tok)
            .where(tok.c.id == token_id)
            .values(revoked_at=datetime.now(UTC), revoked_by=by.name)
        )
        await self._audit.append(
            AuditEvent(by, "token.revoke", token_id, "ok", {"name": name}), conn
        )

    async def get(self, token_id: str, tenant: str | None = None) -> TokenInfo:
        """``tenant``: the caller's (another tenant's token does not exist
        for it); None: any tenant's."""
        q = select(t.api_tokens).where(t.api_tokens.c.id == token_id)
        if tenant is not None:
            q = q.where(t.api_tokens.c.tenant_id == tenant)
        async with self._engine.connect() as conn:
            row = (await conn.execute(q)).mappings().first()
        if row is None:
            raise NotFound(f"token {token_id} does not exist", field="token_id")
        return TokenInfo.from_row(row)

    async def list(
        self, include_revoked: bool = False, tenant: str | None = None
    ) -> list[TokenInfo]:
        q = select(t.api_tokens).order_by(t.api_tokens.c.created_at)
        if not include_revoked:
            q = q.where(t.api_tokens.c.revoked_at.is_(None))
        if tenant is not None:
            q = q.where(t.api_tokens.c.tenant_id == tenant)
        async with self._engine.connect() as conn:
            return [TokenInfo.from_row(r) for r in (await conn.execute(q)).mappings().all()]

    async def revoke(self, id_or_name: str, by: Actor, tenant: str | None = None) -> TokenInfo:
        """Revoke by id (``tok_…``) or by the name of a live token (of
        ``tenant``, the caller's; None: any). Idempotent. The last live admin
        token of a tenant is refused (Conflict): without one, only a platform
        admin or the database could grant admin there again."""
        tok = t.api_tokens
        where = (
            tok.c.id == id_or_name
            if id_or_name.startswith("tok_")
            else and_(tok.c.name == id_or_name, tok.c.revoked_at.is_(None))
        )
        if tenant is not None:
            where = and_(where, tok.c.tenant_id == tenant)
        async with self._engine.begin() as conn:
            target = (await conn.execute(select(tok.c.tenant_id).where(where))).first()
            admins = await _lock_live_admins(conn, target[0] if target else DEFAULT_TENANT)
            row = (
                (await conn.execute(select(tok).where(where).with_for_update())).mappings().first()
            )
            if row is None:
                raise NotFound(f"no live token {id_or_name!r}", field="token_id")
            detail = {"name": row["name"]}
            if row["revoked_at"] is None:
                if admins == [row["id"]]:
                    raise Conflict(
                        f"token {row['id']} ({row['name']}) is the last live admin token; "
                        "create another admin token first",
                        field="token_id",
                    )
                await self._revoke_row(conn, row["id"], row["name"], by)
            else:
                detail["already_revoked_at"] = row["revoked_at"].isoformat()
                await self._audit.append(
                    AuditEvent(by, "token.revoke", row["id"], "ok", detail), conn
                )
        return await self.get(row["id"])

    async def authenticate(self, secret: str) -> Principal | None:
        """The principal of a live token, or None. Compares hashes only."""
        digest = hash_token(secret)
        tok = t.api_tokens
        q = (
            select(tok, t.tenants.c.suspended_at.label("tenant_suspended_at"))
            .join(t.tenants, t.tenants.c.id == tok.c.tenant_id)
            .where(tok.c.token_hash == digest)
        )
        async with self._engine.connect() as conn:
            row = (await conn.execute(q)).mappings().first()
        now = datetime.now(UTC)
        if row is None or not secrets.compare_digest(row["token_hash"], digest):
            return None
        if row["revoked_at"] is not None:
            return None
        if row["expires_at"] is not None and row["expires_at"] <= now:
            return None
        if row["last_used_at"] is None or now - row["last_used_at"] > LAST_USED_EVERY:
            async with self._engine.begin() as conn:
                await conn.execute(
                    update(tok).where(tok.c.id == row["id"]).values(last_used_at=now)
                )
        principal = Principal(
            name=f"token:{row['name']}",
            roles=frozenset({Role(row["role"])}),
            method="token",
            token_id=row["id"],
            tenant_id=row["tenant_id"],
        )
        if row["tenant_suspended_at"] is not None and not principal.platform:
            raise AuthError(f"tenant {row['tenant_id']} is suspended")
        return principal


def _new_row(
    name: str, role: str, by: Actor, expires_at: datetime | None, tenant_id: str
) -> dict[str, Any]:
    """A token's row (with its ``secret``, which is never stored), or ValidationFailed."""
    if not name or len(name) > 64 or not name.replace("-", "").replace("_", "").isalnum():
        raise ValidationFailed("name: 1-64 letters, digits, '-' or '_'", field="name")
    try:
        role = Role(role).value
    except ValueError:
        roles = ", ".join(r.value for r in Role)
        raise ValidationFailed(f"role must be one of {roles}", field="role") from None
    check_tenant_id(tenant_id)
    if role == Role.PLATFORM_ADMIN.value:
        tenant_id = DEFAULT_TENANT  # above tenants: kept with the operator's own
    if expires_at is not None and expires_at <= datetime.now(UTC):
        raise ValidationFailed("expires_at is in the past", field="expires_at")
    secret = new_token()
    return {
        "id": f"tok_{uuid.uuid4().hex[:12]}",
        "name": name,
        "role": role,
        "tenant_id": tenant_id,
        "token_hash": hash_token(secret),
        "prefix": secret[: len(TOKEN_PREFIX) + 6],
        "created_by": by.name,
        "expires_at": expires_at,
        "secret": secret,
    }


async def _lock_live_admins(conn: AsyncConnection, tenant_id: str) -> list[str]:
    """Lock the tenant's live admin tokens (in id order, so two revokes cannot
    deadlock) and return their ids: two admins revoking each other's tokens
    at once leave one, not none."""
    tok = t.api_tokens
    rows = await conn.execute(
        select(tok.c.id)
        .where(
            tok.c.tenant_id == tenant_id,
            tok.c.role == Role.ADMIN.value,
            tok.c.revoked_at.is_(None),
            or_(tok.c.expires_at.is_(None), tok.c.expires_at > func.now()),
        )
        .order_by(tok.c.id)
        .with_for_update()
    )
    return [r.id for r in rows]
