"""What an evidence export holds, read from the database in one snapshot
(``security/evidence.py`` builds the bundle from it)."""

from __future__ import annotations

from datetime import datetime
from typing import Any

from sqlalchemy import or_, select
from sqlalchemy.ext.asyncio import AsyncConnection, AsyncEngine

from gridpilot.core.errors import NotFound, ValidationFailed
from gridpilot.schema import tables as t
from gridpilot.security.evidence import COLUMNS, EvidenceData, audit_row

from .reads import telemetry_evidence

MAX_DISPATCHES = 10_000
MAX_AUDIT_ROWS = 100_000


async def gather_range(
    engine: AsyncEngine, tenant_id: str, start: datetime, end: datetime
) -> EvidenceData:
    """Dispatches created in [start, end) and the audit rows written then."""
    if end <= start:
        raise ValidationFailed("'to' must be after 'from'", field="to")
    d, a = t.dispatches, t.audit_log
    scope = {"kind": "range", "from": start, "to": end}
    async with _snapshot(engine) as conn:
        ids = await _ids(
            conn,
            select(d.c.id).where(
                d.c.tenant_id == tenant_id, d.c.created_at >= start, d.c.created_at < end
            ),
            "from",
        )
        audit_ids = select(a.c.id).where(a.c.at >= start, a.c.at < end)
        return await _gather(conn, tenant_id, scope, ids, audit_ids)


async def gather_dispatch(engine: AsyncEngine, tenant_id: str, dispatch_id: str) -> EvidenceData:
    """One dispatch (a site dispatch with its children) and the audit rows that name them."""
    d, a = t.dispatches, t.audit_log
    async with _snapshot(engine) as conn:
        found = (
            await conn.execute(
                select(d.c.id).where(d.c.id == dispatch_id, d.c.tenant_id == tenant_id)
            )
        ).first()
        if found is None:
            raise NotFound(f"dispatch {dispatch_id} does not exist", field="dispatch_id")
        children = select(d.c.id).where(d.c.parent_id == dispatch_id, d.c.tenant_id == tenant_id)
        ids = [dispatch_id, *await _ids(conn, children.order_by(d.c.id), "dispatch_id")]
        audit_ids = select(a.c.id).where(
            or_(a.c.target.in_(ids), a.c.detail["dispatch_id"].astext.in_(ids))
        )
        scope = {"kind": "dispatch", "dispatch_id": dispatch_id}
        return await _gather(conn, tenant_id, scope, ids, audit_ids)


class _snapshot:
    """One REPEATABLE READ, read-only transaction: every table as of one moment."""

    def __init__(self, engine: AsyncEngine) -> None:
        self._engine = engine

    async def __aenter__(self) -> AsyncConnection:
        self._conn = await self._engine.connect()
        await self._conn.execution_options(isolation_level="REPEATABLE READ")
        await self._conn.begin()
        return self._conn

    async def __aexit__(self, *exc: object) -> None:
        await self._conn.rollback()
        await self._conn.close()


async def _ids(conn: AsyncConnection, q: Any, field: str) -> list[str]:
    ids = list((await conn.execute(q.limit(MAX_DISPATCHES + 1))).scalars())
    if len(ids) > MAX_DISPATCHES:
        raise ValidationFailed(
            f"more than {MAX_DISPATCHES} dispatches: export a narrower range", field=field
        )
    return ids


async def _gather(
    conn: AsyncConnection, tenant_id: str, scope: dict[str, Any], ids: list[str], audit_ids: Any
) -> EvidenceData:
    d, tr, late, a = t.dispatches, t.dispatch_transitions, t.dispatch_late_acks, t.audit_log
    out = EvidenceData(tenant_id=tenant_id, scope=scope)
    rows = (
        await conn.execute(select(d).where(d.c.id.in_(ids)).order_by(d.c.created_at, d.c.id))
    ).mappings()
    dispatches = [dict(r) for r in rows]
    transitions = [
        dict(r)
        for r in (
            await conn.execute(
                select(tr).where(tr.c.dispatch_id.in_(ids)).order_by(tr.c.dispatch_id, tr.c.seq)
            )
        ).mappings()
    ]
    for row in dispatches:
        own = [x for x in transitions if x["dispatch_id"] == row["id"]]
        row["evidence"] = await telemetry_evidence(conn, row, own)
        out.dispatches.append({c: row.get(c) for c in COLUMNS["dispatches"]})
    out.transitions = [{c: x[c] for c in COLUMNS["transitions"]} for x in transitions]
    late_rows = await conn.execute(
        select(late).where(late.c.dispatch_id.in_(ids)).order_by(late.c.dispatch_id, late.c.at)
    )
    out.late_acks = [{c: x[c] for c in COLUMNS["late_acks"]} for x in late_rows.mappings()]
    selected = list((await conn.execute(audit_ids.order_by(a.c.id))).scalars())
    out.in_scope = selected
    head = (await conn.execute(select(a.c.id, a.c.hash).order_by(a.c.id.desc()).limit(1))).first()
    out.head = None if head is None else {"id": head.id, "hash": head.hash}
    if not selected:
        return out
    first, last = selected[0], selected[-1]
    if last - first + 1 > MAX_AUDIT_ROWS:
        raise ValidationFailed(
            f"the audit segment spans more than {MAX_AUDIT_ROWS} rows: export a narrower range",
            field="from" if scope["kind"] == "range" else "dispatch_id",
        )
    segment = await conn.execute(select(a).where(a.c.id >= first, a.c.id <= last).order_by(a.c.id))
    out.audit = [audit_row(dict(r), r["tenant_id"] == tenant_id) for r in segment.mappings()]
    before = (await conn.execute(select(a.c.id, a.c.hash).where(a.c.id == first - 1))).first()
    if before is None:  # pruned: the chain's anchor is the last removed row
        an = t.audit_anchor
        before = (
            await conn.execute(select(an.c.id, an.c.hash).where(an.c.id == first - 1))
        ).first()
    out.anchor = None if before is None else {"id": before.id, "hash": before.hash}
    return out
