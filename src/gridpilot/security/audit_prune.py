"""Audit retention: remove the oldest audit rows every tenant's policy lets go
(``gridpilot audit prune``, as the owner of ``audit_log``).

The chain is one for all tenants, so only a *prefix* can go: rows from the
oldest up to the first one some tenant still keeps (no ``audit_days``, on
legal hold, or younger than ``max(audit_days, GRIDPILOT_AUDIT_RETENTION_MIN_DAYS)``).
The newest row always stays (appends chain onto it). The last removed row's
id and hash become the chain's anchor (``audit_anchor``), where
:meth:`AuditLog.verify` starts; the prune itself is audited (``audit.prune``).
The app role cannot do this: its triggers stay on and it holds no DELETE.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime

from sqlalchemy import func, select, text

from gridpilot.core.errors import Refused
from gridpilot.schema import tables as t

from .audit import LOCK_KEY, Actor, AuditEvent, AuditLog

FIRST_KEPT_SQL = text(
    "SELECT min(a.id) FROM audit_log a "
    "LEFT JOIN retention_policies r ON r.tenant_id = a.tenant_id "
    "WHERE r.audit_days IS NULL OR r.legal_hold "
    "OR a.at >= :now - make_interval(days => greatest(r.audit_days, :min_days))"
)
TRIGGER = "audit_log_no_update_delete"
OWNER_SQL = text(
    "SELECT pg_has_role(current_user, tableowner, 'USAGE') FROM pg_tables "
    "WHERE schemaname = 'public' AND tablename = 'audit_log'"
)


@dataclass(frozen=True)
class PruneResult:
    rows: int  # removed (or, dry run, that would be)
    anchor: tuple[int, str] | None  # the last removed row's (id, hash)


async def prune(
    audit: AuditLog, now: datetime, min_days: int, who: Actor, dry_run: bool = False
) -> PruneResult:
    """Raises Refused (``not_owner``) when this role does not own ``audit_log``."""
    a = t.audit_log
    async with audit.engine.begin() as conn:
        if not await conn.scalar(OWNER_SQL):
            raise Refused(
                "audit prune must run as the owner of audit_log (not the app role)",
                code="not_owner",
                status=403,
            )
        # No append interleaves: they take the same lock.
        await conn.execute(text("SELECT pg_advisory_xact_lock(:k)"), {"k": LOCK_KEY})
        oldest, newest = (await conn.execute(select(func.min(a.c.id), func.max(a.c.id)))).one()
        if newest is None:
            return PruneResult(0, None)
        kept = await conn.scalar(FIRST_KEPT_SQL, {"now": now, "min_days": min_days})
        keep_from = min(kept or newest, newest)
        if keep_from <= oldest:
            return PruneResult(0, None)
        last = (await conn.execute(select(a.c.id, a.c.hash).where(a.c.id == keep_from - 1))).one()
        result = PruneResult(keep_from - oldest, (int(last.id), str(last.hash)))
        if dry_run:
            return result
        await conn.execute(text(f"ALTER TABLE audit_log DISABLE TRIGGER {TRIGGER}"))
        await conn.execute(a.delete().where(a.c.id < keep_from))
        await conn.execute(text(f"ALTER TABLE audit_log ENABLE ALWAYS TRIGGER {TRIGGER}"))
        await conn.execute(
            t.audit_anchor.insert().values(
                id=last.id, hash=last.hash, rows=result.rows, pruned_by=who.name
            )
        )
        detail = {"rows": result.rows, "anchor": f"{last.id}:{last.hash}"}
        await audit.append(AuditEvent(who, "audit.prune", f"..{last.id}", "ok", detail), conn)
    return result
