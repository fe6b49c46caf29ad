"""Gateways, their sites, assets and sessions in the database."""

from __future__ import annotations

from collections.abc import Awaitable, Callable, Sequence
from dataclasses import dataclass, fields

from sqlalchemy import and_, func, select, text, update
from sqlalchemy.dialects.postgresql import insert
from sqlalchemy.ext.asyncio import AsyncConnection, AsyncEngine

from gridpilot.core.assets import Asset
from gridpilot.core.errors import Conflict, NotFound
from gridpilot.core.sessions import EndReason
from gridpilot.schema import tables as t
from gridpilot.schema.events import announce_gateway_changed
from gridpilot.wire.text import clean_text

from .edge_reports import EdgeBufferReport
from .enrollment import OPEN, Admission


class GatewayStore:
    def __init__(self, engine: AsyncEngine) -> None:
        self._engine = engine

    @property
    def engine(self) -> AsyncEngine:
        return self._engine

    async def register(
        self,
        gateway_id: str,
        site_id: str,
        site_name: str,
        agent_version: str,
        assets: Sequence[Asset],
        admission: Admission = OPEN,
    ) -> list[str]:
        """Upsert the site, the gateway and its assets in one transaction.
        Returns the ids of the assets held for an admin's approval.

        The first registration binds an asset to its gateway; another gateway
        claiming it is refused (Conflict) and nothing is written. A Hello never
        renames a site: the name is the first one given. An asset declared for
        the first time, or with changed limits, beyond the admission's bound is
        held (not dispatched to or counted) until an admin approves it."""
        a_ = t.assets
        async with self._engine.begin() as conn:
            bound = await conn.execute(
                select(a_.c.id, a_.c.gateway_id, a_.c.p_min_kw, a_.c.p_max_kw, a_.c.held_reason)
                .where(a_.c.id.in_([a.asset_id for a in assets]))
                .with_for_update()
            )
            known = {r.id: r for r in bound}
            for asset_id, row in known.items():
                if row.gateway_id != gateway_id:
                    raise Conflict(
                        f"asset {asset_id} is bound to gateway {row.gateway_id}",
                        field="hello.assets.asset_id",
                    )
            owner_row = await conn.execute(
                select(t.gateways.c.site_id).where(t.gateways.c.id == gateway_id)
            )
            owner_site = owner_row.scalar()
            if owner_site is not None and owner_site != site_id:
                raise Conflict(
                    f"gateway {gateway_id} belongs to site {owner_site}", field="hello.site_id"
                )
            tenant = admission.tenant_id
            await _same_tenant(conn, tenant, gateway_id, site_id, list(known))
            await conn.execute(
                insert(t.sites)
                .values(id=site_id, name=site_name, tenant_id=tenant)
                .on_conflict_do_nothing()
            )
            gw = insert(t.gateways).values(
                id=gateway_id, site_id=site_id, agent_version=agent_version, tenant_id=tenant
            )
            await conn.execute(
                gw.on_conflict_do_update(
                    index_elements=[t.gateways.c.id],
                    set_={"agent_version": gw.excluded.agent_version, "last_seen": func.now()},
                )
            )
            held = []
            for a in assets:
                prior = known.get(a.asset_id)
                unchanged = prior is not None and (prior.p_min_kw, prior.p_max_kw) == (
                    a.limits.p_min_kw,
                    a.limits.p_max_kw,
                )
                held_reason = (
                    prior.held_reason
                    if prior is not None and unchanged
                    else admission.hold_reason(a)
                )
                if held_reason is not None:
                    held.append(a.asset_id)
                upsert = insert(t.assets).values(
                    id=a.asset_id,
                    site_id=site_id,
                    gateway_id=gateway_id,
                    name=a.name,
                    asset_type=a.asset_type.value,
                    p_min_kw=a.limits.p_min_kw,
                    p_max_kw=a.limits.p_max_kw,
                    capacity_kwh=a.capacity_kwh,
                    default_p_kw=a.default_p_kw,
                    held_reason=held_reason,
                    tenant_id=tenant,
                )
                ex = upsert.excluded
                await conn.execute(
                    upsert.on_conflict_do_update(
                        index_elements=[t.assets.c.id],
                        set_={
                            "name": ex.name,
                            "asset_type": ex.asset_type,
                            "p_min_kw": ex.p_min_kw,
                            "p_max_kw": ex.p_max_kw,
                            "capacity_kwh": ex.capacity_kwh,
                            "default_p_kw": ex.default_p_kw,
                            "held_reason": ex.held_reason,
                            "updated_at": func.now(),
                        },
                    )
                )
        return held

    async def open_session(
        self,
        session_id: str,
        gateway_id: str,
        site_id: str,
        headend_id: str,
        task_queue: str,
        peer: str,
        agent_version: str,
    ) -> list[str]:
        """Record a live session, ending the gateway's older one (superseded).
        Returns the ids of the sessions it ended.

        The gateway's row (written by ``register``) is locked first, so two
        Hellos of one gateway, here or on two replicas, take turns: the later
        one ends the earlier's session instead of both finding none live and
        one failing on the one-live-session index."""
        async with self._engine.begin() as conn:
            await conn.execute(
                select(t.gateways.c.id).where(t.gateways.c.id == gateway_id).with_for_update()
            )
            ended = await conn.execute(
                update(t.agent_sessions)
                .where(
                    and_(
                        t.agent_sessions.c.gateway_id == gateway_id,
                        t.agent_sessions.c.ended_at.is_(None),
                    )
                )
                .values(ended_at=func.now(), end_reason=EndReason.SUPERSEDED.value)
                .returning(t.agent_sessions.c.id)
            )
            ended_ids = [r[0] for r in ended]
            await conn.execute(
                insert(t.agent_sessions).values(
                    id=session_id,
                    gateway_id=gateway_id,
                    site_id=site_id,
                    headend_id=headend_id,
                    task_queue=task_queue,
                    peer=peer,
                    agent_version=agent_version,
                    # the gateway's tenant (its Hello registered it just before)
                    tenant_id=select(t.gateways.c.tenant_id)
                    .where(t.gateways.c.id == gateway_id)
                    .scalar_subquery(),
                )
            )
        return ended_ids

    async def touch(
        self,
        session_id: str,
        report: EdgeBufferReport | None = None,
        rejected: int = 0,
        last_rejection: str | None = None,
    ) -> bool:
        """Update last_seen, and the gateway's edge figures: its buffer as the
        heartbeat ``report``s it, ``rejected`` more refused samples, the last
        one's reason. False when the session was ended elsewhere (e.g.
        superseded through another headend replica)."""
        live = await self.touch_many([Touch(session_id, report, rejected, last_rejection)])
        return session_id in live

    async def touch_many(self, touches: Sequence[Touch]) -> set[str]:
        """``touch`` for many sessions in one transaction of two statements (a
        replica's heartbeats, batched by ``ingest.touches``): the ids of the
        sessions still live. One touch per session."""
        if not touches:
            return set()
        no = EdgeBufferReport(0, 0, 0, 0)
        params = {
            "sid": [x.session_id for x in touches],
            "has": [x.report is not None for x in touches],
            "rejected": [x.rejected for x in touches],
            "why": [clean_text(x.last_rejection or "", 500) for x in touches],
            **{f: [getattr(x.report or no, f) for x in touches] for f in _REPORT_FIELDS},
        }
        async with self._engine.begin() as conn:
            # Gateways' rows before the sessions', in open_session's order: the
            # other order can deadlock with a new Hello of one of these gateways.
            res = await conn.execute(_TOUCH_GATEWAYS, params)
            touched = [r[0] for r in res]
            if not touched:
                return set()
            res = await conn.execute(_TOUCH_SESSIONS, {"sid": touched})
            return {r[0] for r in res}

    async def close_session(self, session_id: str, reason: EndReason) -> None:
        async with self._engine.begin() as conn:
            await conn.execute(
                update(t.agent_sessions)
                .where(
                    and_(t.agent_sessions.c.id == session_id, t.agent_sessions.c.ended_at.is_(None))
                )
                .values(ended_at=func.now(), end_reason=reason.value)
            )

    async def close_headend_sessions(self, headend_id: str, reason: EndReason) -> None:
        """At start-up and shutdown: sessions this replica held are gone."""
        async with self._engine.begin() as conn:
            await conn.execute(
                update(t.agent_sessions)
                .where(
                    and_(
                        t.agent_sessions.c.headend_id == headend_id,
                        t.agent_sessions.c.ended_at.is_(None),
                    )
                )
                .values(ended_at=func.now(), end_reason=reason.value)
            )

    async def last_batch_seq(self, gateway_id: str) -> int:
        async with self._engine.connect() as conn:
            res = await conn.execute(
                select(t.ingest_watermarks.c.last_batch_seq).where(
                    t.ingest_watermarks.c.gateway_id == gateway_id
                )
            )
            return int(res.scalar() or 0)

    async def rebind(
        self,
        asset_id: str,
        gateway_id: str,
        record: Callable[[AsyncConnection, str], Awaitable[object]] | None = None,
    ) -> str:
        """Bind an asset to another gateway of its site (an admin action;
        ``record(conn, old_gateway)`` audits it in the same transaction). A
        gateway that never connected must be enrolled for the asset's site; it
        is then created there, so its first Hello can claim the asset. An
        unknown gateway is NotFound. Returns the old gateway id."""
        async with self._engine.begin() as conn:
            row = (
                await conn.execute(
                    select(t.assets.c.gateway_id, t.assets.c.site_id)
                    .where(t.assets.c.id == asset_id)
                    .with_for_update()
                )
            ).first()
            if row is None:
                raise NotFound(f"asset {asset_id} does not exist", field="asset_id")
            old, site_id = row
            gw_site = (
                await conn.execute(
                    select(t.gateways.c.site_id).where(t.gateways.c.id == gateway_id)
                )
            ).scalar()
            if gw_site is None:
                e = t.gateway_enrollments
                enrolled = (
                    await conn.execute(
                        select(e.c.gateway_id).where(
                            and_(e.c.site_id == site_id, e.c.gateway_id == gateway_id)
                        )
                    )
                ).first()
                if enrolled is None:
                    raise NotFound(
                        f"gateway {gateway_id} does not exist and is not enrolled for site "
                        f"{site_id}",
                        field="gateway_id",
                    )
                await conn.execute(insert(t.gateways).values(id=gateway_id, site_id=site_id))
            elif gw_site != site_id:
                raise Conflict(
                    f"gateway {gateway_id} belongs to site {gw_site}, asset {asset_id} to "
                    f"site {site_id}",
                    field="gateway_id",
                )
            await conn.execute(
                update(t.assets)
                .where(t.assets.c.id == asset_id)
                .values(gateway_id=gateway_id, updated_at=func.now())
            )
            for changed in sorted({str(old), gateway_id}):  # their sessions drop or gain it
                await announce_gateway_changed(conn, changed)
            if record is not None:
                await record(conn, str(old))
            return str(old)


@dataclass(frozen=True, slots=True)
class Touch:
    """One heartbeat's update of its session and gateway (``GatewayStore.touch``)."""

    session_id: str
    report: EdgeBufferReport | None = None
    rejected: int = 0
    last_rejection: str | None = None


_REPORT_FIELDS = tuple(f.name for f in fields(EdgeBufferReport))
# The heartbeats as rows (one array per column), joined to their live
# sessions. A report's counts replace the gateway's; the drop counts are
# cumulative, so "dropping now" (last_drop_at) is when they last grew.
_TOUCH_GATEWAYS = text(
    """
    UPDATE gateways AS g SET
        last_seen = now(),
        dropped_batches = CASE WHEN v.has THEN v.dropped_batches ELSE g.dropped_batches END,
        dropped_samples = CASE WHEN v.has THEN v.dropped_samples ELSE g.dropped_samples END,
        buffered_batches = CASE WHEN v.has THEN v.buffered_batches ELSE g.buffered_batches END,
        buffered_bytes = CASE WHEN v.has THEN v.buffered_bytes ELSE g.buffered_bytes END,
        reported_at = CASE WHEN v.has THEN now() ELSE g.reported_at END,
        last_drop_at = CASE WHEN v.has AND g.dropped_batches < v.dropped_batches
                            THEN now() ELSE g.last_drop_at END,
        rejected_samples = g.rejected_samples + v.rejected,
        last_rejection = CASE WHEN v.rejected > 0 THEN v.why ELSE g.last_rejection END
    FROM unnest(
        CAST(:sid AS text[]), CAST(:has AS boolean[]), CAST(:rejected AS bigint[]),
        CAST(:why AS text[]), CAST(:dropped_batches AS bigint[]),
        CAST(:dropped_samples AS bigint[]), CAST(:buffered_batches AS bigint[]),
        CAST(:buffered_bytes AS bigint[])
    ) AS v(sid, has, rejected, why, dropped_batches, dropped_samples,
           buffered_batches, buffered_bytes)
    JOIN agent_sessions AS s ON s.id = v.sid AND s.ended_at IS NULL
    WHERE g.id = s.gateway_id
    RETURNING v.sid
    """
)
_TOUCH_SESSIONS = text(
    """
    UPDATE agent_sessions SET last_seen = now()
    WHERE id = ANY(CAST(:sid AS text[])) AND ended_at IS NULL
    RETURNING id
    """
)


async def _same_tenant(
    conn: AsyncConnection, tenant: str, gateway_id: str, site_id: str, asset_ids: list[str]
) -> None:
    """A Hello's site, gateway and known assets belong to its enrollment's
    tenant, or it is refused (Conflict): a gateway of one tenant never speaks
    for another's site or assets (docs/security.md, Tenancy)."""
    others = [
        select(t.sites.c.id).where(t.sites.c.id == site_id, t.sites.c.tenant_id != tenant),
        select(t.gateways.c.id).where(
            t.gateways.c.id == gateway_id, t.gateways.c.tenant_id != tenant
        ),
        select(t.assets.c.id).where(t.assets.c.id.in_(asset_ids), t.assets.c.tenant_id != tenant),
    ]
    for q in others:
        if (await conn.execute(q)).first() is not None:
            raise Conflict(
                f"site {site_id}, gateway {gateway_id} or its assets belong to another tenant "
                f"than its enrollment's ({tenant})",
                field="hello.site_id",
            )
