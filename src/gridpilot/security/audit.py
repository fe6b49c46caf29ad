"""The audit log: append-only, hash-chained, one row per security-relevant action.

Each row's ``hash`` is SHA-256 over the canonical JSON of its fields and the
previous row's hash; ids are contiguous. Appends are serialized by a
transaction-level advisory lock, so concurrent writers (API, gRPC, CLI, other
replicas) still make one linear chain. Database triggers refuse UPDATE,
DELETE and TRUNCATE; :meth:`AuditLog.verify` finds any row changed or removed
behind their back.

A mutating action is written as ``attempt`` before it runs and as ``ok``,
``refused`` (the request was wrong: a domain error) or ``failed`` (it could not
be carried out: a dependency was down) after it, so a row never claims more than
happened (:meth:`AuditLog.action`).
"""

from __future__ import annotations

import asyncio
import contextlib
import hashlib
import json
from collections.abc import AsyncIterator, Mapping
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any

import structlog
from sqlalchemy import select, text
from sqlalchemy.ext.asyncio import AsyncConnection, AsyncEngine

from gridpilot.core.errors import DomainError
from gridpilot.schema import tables as t
from gridpilot.schema.tenancy import scoped_tenant

log = structlog.get_logger(__name__)

GENESIS = "0" * 64
# pg_advisory_xact_lock key: the bytes "gpaudit1" as a signed 64-bit integer.
LOCK_KEY = int.from_bytes(b"gpaudit1", "big", signed=True)
HASHED_FIELDS = (
    "id",
    "tenant_id",
    "at",
    "actor",
    "actor_role",
    "auth_method",
    "action",
    "target",
    "outcome",
    "request_id",
    "detail",
    "prev_hash",
)


@dataclass(frozen=True)
class Actor:
    """Who acted: a principal name (``token:alice``, ``gateway:gw-1``, ``cli:root``)."""

    name: str
    role: str = ""
    method: str = ""
    request_id: str = ""


SYSTEM = Actor("system", method="system")


@dataclass(frozen=True)
class AuditEvent:
    actor: Actor
    action: str  # e.g. dispatch.submit, token.create, gateway.identity_refused
    target: str
    outcome: str  # attempt | ok | refused | failed
    detail: Mapping[str, Any] = field(default_factory=dict)


@dataclass
class Action:
    """An action being audited: the route may add to ``detail`` what it learns
    (the outcome row carries it), or set ``recorded`` when the action wrote its
    own ``ok`` row in its transaction (so no second one is written)."""

    detail: dict[str, Any]
    target: str
    recorded: bool = False


@dataclass(frozen=True)
class VerifyResult:
    ok: bool
    count: int
    head_hash: str
    bad_id: int | None = None
    problem: str | None = None
    head_id: int = 0  # the newest row verified (or the anchor's, with none after it)


def _jsonable(value: Mapping[str, Any]) -> dict[str, Any]:
    return dict(json.loads(json.dumps(dict(value), default=str)))


def row_hash(row: Mapping[str, Any]) -> str:
    fields = {k: row[k] for k in HASHED_FIELDS}
    at = fields["at"]
    fields["at"] = at.astimezone(UTC).isoformat() if isinstance(at, datetime) else str(at)
    canonical = json.dumps(fields, sort_keys=True, separators=(",", ":"), ensure_ascii=True)
    return hashlib.sha256(canonical.encode()).hexdigest()


class AuditLog:
    def __init__(self, engine: AsyncEngine, tenant_id: str = t.DEFAULT_TENANT) -> None:
        self._engine = engine
        self._tenant = tenant_id

    @property
    def engine(self) -> AsyncEngine:
        return self._engine

    async def append(self, event: AuditEvent, conn: AsyncConnection | None = None) -> int:
        """Append in ``conn``'s transaction (so it commits with the action), or in
        one of its own. Returns the row id. Raises if the database is down: the
        caller must then not perform the action (fail closed)."""
        if conn is not None:
            return await self._append(conn, event)
        async with self._engine.begin() as own:
            return await self._append(own, event)

    async def _append(self, conn: AsyncConnection, event: AuditEvent) -> int:
        await conn.execute(text("SELECT pg_advisory_xact_lock(:k)"), {"k": LOCK_KEY})
        last = (
            await conn.execute(
                select(t.audit_log.c.id, t.audit_log.c.hash).order_by(t.audit_log.c.id.desc())
            )
        ).first()
        row: dict[str, Any] = {
            "id": 1 if last is None else last[0] + 1,
            # The tenant the action was for (a request's), else the log's own.
            "tenant_id": scoped_tenant() or self._tenant,
            "at": datetime.now(UTC),
            "actor": event.actor.name,
            "actor_role": event.actor.role,
            "auth_method": event.actor.method,
            "action": event.action,
            "target": event.target,
            "outcome": event.outcome,
            "request_id": event.actor.request_id,
            "detail": _jsonable(event.detail),
            "prev_hash": GENESIS if last is None else last[1],
        }
        row["hash"] = row_hash(row)
        await conn.execute(t.audit_log.insert().values(**row))
        log.info(
            "audit",
            id=row["id"],
            actor=row["actor"],
            action=row["action"],
            target=row["target"],
            outcome=row["outcome"],
            request_id=row["request_id"],
        )
        return int(row["id"])

    @contextlib.asynccontextmanager
    async def action(
        self,
        actor: Actor,
        action: str,
        target: str,
        detail: Mapping[str, Any] | None = None,
        *,
        recorded: bool = False,
    ) -> AsyncIterator[Action]:
        """Audit a mutating action: ``attempt`` before it runs (fail closed: if
        that cannot be written, the action does not run), then its outcome after:
        ``ok``, ``refused`` (a :class:`DomainError`: 4xx) or ``failed`` (anything
        else, e.g. Temporal down: 503). ``recorded=True``: the action writes its
        own ``ok`` row in the transaction that does it. A failed outcome write is
        logged, never raised over the action's own result."""
        act = Action(dict(detail or {}), target, recorded)
        await self.append(AuditEvent(actor, action, target, "attempt", act.detail))
        try:
            yield act
        except BaseException as exc:
            outcome = "refused" if isinstance(exc, DomainError) else "failed"
            why = {"error": type(exc).__name__, "message": str(exc)[:500]}
            await self._outcome(AuditEvent(actor, action, act.target, outcome, why))
            raise
        if not act.recorded:
            await self._outcome(AuditEvent(actor, action, act.target, "ok", act.detail))

    async def _outcome(self, event: AuditEvent) -> None:
        try:
            await asyncio.shield(self.append(event))
        except Exception as exc:
            log.error(
                "audit_write_failed", action=event.action, outcome=event.outcome, error=str(exc)
            )

    async def rows(self, after_id: int = 0, batch: int = 1000) -> AsyncIterator[dict[str, Any]]:
        """Every row in id order, read in batches."""
        while True:
            async with self._engine.connect() as conn:
                page = (
                    (
                        await conn.execute(
                            select(t.audit_log)
                            .where(t.audit_log.c.id > after_id)
                            .order_by(t.audit_log.c.id)
                            .limit(batch)
                        )
                    )
                    .mappings()
                    .all()
                )
            for r in page:
                yield dict(r)
            if len(page) < batch:
                return
            after_id = page[-1]["id"]

    async def verify(self, expect_head: tuple[int, str] | None = None) -> VerifyResult:
        """Walk the chain from the start. ``expect_head`` (id, hash), a head
        recorded elsewhere (the headend's ``audit_head`` log line, an earlier
        verify): that row must still be in the chain with that hash, so deleting
        the newest rows, which leaves a valid shorter chain, is found too. After
        ``gridpilot audit prune`` the chain starts at its anchor (the last pruned
        row's id and hash)."""
        anchor = await self.anchor()
        prev, count, expected_id = (
            (GENESIS, 0, 1) if anchor is None else (anchor[1], 0, anchor[0] + 1)
        )
        async for row in self.rows(after_id=expected_id - 1):
            if row["id"] != expected_id:
                return VerifyResult(False, count, prev, row["id"], f"row {expected_id} is missing")
            if row["prev_hash"] != prev:
                return VerifyResult(
                    False, count, prev, row["id"], "prev_hash does not match the row before"
                )
            if row_hash(row) != row["hash"]:
                return VerifyResult(
                    False, count, prev, row["id"], "row content does not match its hash"
                )
            if expect_head is not None and row["id"] == expect_head[0]:
                if row["hash"] != expect_head[1]:
                    return VerifyResult(
                        False, count, prev, row["id"], "row differs from the expected head"
                    )
            prev, count, expected_id = row["hash"], count + 1, expected_id + 1
        if expect_head is not None and expect_head[0] >= expected_id:
            return VerifyResult(
                False,
                count,
                prev,
                expect_head[0],
                f"the chain ends at id {expected_id - 1}, before the expected head "
                f"{expect_head[0]}: newer rows were removed",
            )
        return VerifyResult(True, count, prev, head_id=expected_id - 1)

    async def anchor(self) -> tuple[int, str] | None:
        """(id, hash) of the last row pruned, where the chain now starts; None: never pruned."""
        a = t.audit_anchor
        async with self._engine.connect() as conn:
            row = (
                await conn.execute(select(a.c.id, a.c.hash).order_by(a.c.id.desc()).limit(1))
            ).first()
        return None if row is None else (int(row[0]), str(row[1]))

    async def head(self) -> tuple[int, str] | None:
        """The newest row's (id, hash), to record elsewhere (``audit_head``)."""
        async with self._engine.connect() as conn:
            row = (
                await conn.execute(
                    select(t.audit_log.c.id, t.audit_log.c.hash)
                    .order_by(t.audit_log.c.id.desc())
                    .limit(1)
                )
            ).first()
        return None if row is None else (int(row[0]), str(row[1]))

    async def query(
        self,
        *,
        after_id: int = 0,
        since: datetime | None = None,
        until: datetime | None = None,
        action: str | None = None,
        actor: str | None = None,
        target: str | None = None,
        limit: int = 1000,
        tenant: str | None = None,
    ) -> list[dict[str, Any]]:
        """``tenant``: that tenant's rows only (the caller's); None: every row."""
        a = t.audit_log
        q = select(a).where(a.c.id > after_id).order_by(a.c.id).limit(limit)
        if tenant is not None:
            q = q.where(a.c.tenant_id == tenant)
        if since is not None:
            q = q.where(a.c.at >= since)
        if until is not None:
            q = q.where(a.c.at < until)
        if action:
            q = q.where(a.c.action == action)
        if actor:
            q = q.where(a.c.actor == actor)
        if target:
            q = q.where(a.c.target == target)
        async with self._engine.connect() as conn:
            return [dict(r) for r in (await conn.execute(q)).mappings().all()]
