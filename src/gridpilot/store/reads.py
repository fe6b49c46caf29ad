"""Reads of dispatches and of what a dispatch is decided on (an asset, a
site's split inputs), for the REST API and the activities."""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass, replace
from datetime import UTC, datetime, timedelta
from typing import Any

from sqlalchemy import and_, or_, select, true, tuple_
from sqlalchemy.ext.asyncio import AsyncConnection, AsyncEngine

from gridpilot.core.dispatch import DispatchKind
from gridpilot.core.lifecycle import TERMINAL_VALUES, DispatchState
from gridpilot.schema import tables as t
from gridpilot.schema.tenancy import visible
from gridpilot.workflows.models import SplitAsset, SplitInputs

# Telemetry older than this does not limit a split (it may be stale).
FRESH_TELEMETRY = timedelta(seconds=60)
MAX_EVIDENCE_SAMPLES = 10_000


@dataclass(frozen=True)
class DispatchFilter:
    """Which dispatches a list shows. ``tree``: a site dispatch and its
    children are one family, matched when any member matches, counted once
    against ``limit`` and never split across pages. ``before``: the id of the
    last dispatch (the last family's parent, with ``tree``) of the previous page."""

    state: DispatchState | None = None
    asset_id: str | None = None
    site_id: str | None = None
    since: datetime | None = None
    source: str | None = None
    limit: int = 100
    until: datetime | None = None
    before: str | None = None
    tree: bool = False
    parent_id: str | None = None


class UnknownCursor(LookupError):
    """``before`` names no dispatch."""


async def load_split_inputs(engine: AsyncEngine, site_id: str, now: datetime) -> SplitInputs:
    """A site's assets with what fresh telemetry says they can do now. The
    preview endpoint, the submit and the site workflow all read it here."""
    a, latest = t.assets, t.telemetry_latest
    async with engine.connect() as conn:
        rows = await conn.execute(
            select(
                a.c.id,
                a.c.asset_type,
                a.c.p_min_kw,
                a.c.p_max_kw,
                latest.c.ts,
                latest.c.available_charge_kw,
                latest.c.available_discharge_kw,
            )
            .select_from(a.outerjoin(latest, latest.c.asset_id == a.c.id))
            # held assets (waiting for an admin's approval) are never split over
            .where(a.c.site_id == site_id, a.c.held_reason.is_(None), visible(a))
            .order_by(a.c.id)
        )
        assets = []
        for r in rows:
            fresh = r.ts is not None and now - r.ts <= FRESH_TELEMETRY
            assets.append(
                SplitAsset(
                    asset_id=r.id,
                    asset_type=r.asset_type,
                    p_min_kw=r.p_min_kw,
                    p_max_kw=r.p_max_kw,
                    available_charge_kw=r.available_charge_kw if fresh else None,
                    available_discharge_kw=r.available_discharge_kw if fresh else None,
                )
            )
    return SplitInputs(site_id=site_id, assets=assets)


async def asset_row(engine: AsyncEngine, asset_id: str) -> Mapping[str, Any] | None:
    async with engine.connect() as conn:
        row = (
            (
                await conn.execute(
                    select(t.assets).where(t.assets.c.id == asset_id, visible(t.assets))
                )
            )
            .mappings()
            .first()
        )
    return None if row is None else dict(row)


def _matches(d: Any, f: DispatchFilter) -> list[Any]:
    where = [visible(d)]
    if f.since is not None:
        where.append(d.c.created_at >= f.since)
    if f.until is not None:
        where.append(d.c.created_at < f.until)
    if f.state:
        where.append(d.c.state == f.state.value)
    if f.asset_id:
        where.append(d.c.asset_id == f.asset_id)
    if f.site_id:
        where.append(d.c.site_id == f.site_id)
    if f.source:
        where.append(d.c.source == f.source)
    if f.parent_id:
        where.append(d.c.parent_id == f.parent_id)
    return where


async def list_dispatches(engine: AsyncEngine, f: DispatchFilter) -> list[dict[str, Any]]:
    """Newest first (by creation, then id); with ``tree``, each family's parent
    then its children in id order. Raises UnknownCursor for a bad ``before``."""
    d = t.dispatches
    newest_first = (d.c.created_at.desc(), d.c.id.desc())
    q = select(d).order_by(*newest_first).limit(f.limit)
    if f.tree:
        kin = d.alias("kin")
        member = select(kin.c.id).where(kin.c.parent_id == d.c.id, *_matches(kin, f))
        q = q.where(d.c.parent_id.is_(None), or_(and_(true(), *_matches(d, f)), member.exists()))
    else:
        q = q.where(*_matches(d, f))
    async with engine.connect() as conn:
        if f.before is not None:
            cursor = (
                await conn.execute(
                    select(d.c.created_at, d.c.id).where(d.c.id == f.before, visible(d))
                )
            ).first()
            if cursor is None:
                raise UnknownCursor(f.before)
            q = q.where(tuple_(d.c.created_at, d.c.id) < tuple_(cursor.created_at, cursor.id))
        rows = [dict(r) for r in (await conn.execute(q)).mappings().all()]
        if not f.tree or not rows:
            return rows
        children = await conn.execute(
            select(d).where(d.c.parent_id.in_([r["id"] for r in rows])).order_by(d.c.id)
        )
        by_parent: dict[str, list[dict[str, Any]]] = {}
        for c in children.mappings().all():
            by_parent.setdefault(c["parent_id"], []).append(dict(c))
    return [x for r in rows for x in (r, *by_parent.get(r["id"], []))]


async def dispatch_page(
    engine: AsyncEngine, f: DispatchFilter
) -> tuple[list[dict[str, Any]], str | None]:
    """One page of :func:`list_dispatches` and the ``before`` of the next
    page (None: this is the last)."""
    rows = await list_dispatches(engine, replace(f, limit=f.limit + 1))
    heads = [r for r in rows if not f.tree or r["parent_id"] is None]
    if len(heads) <= f.limit:
        return rows, None
    return rows[: rows.index(heads[f.limit])], heads[f.limit - 1]["id"]


async def dispatch_detail(engine: AsyncEngine, dispatch_id: str) -> dict[str, Any] | None:
    """The row with its transitions, children, late acks and the telemetry
    evidence of its active window; None for an unknown dispatch."""
    d, tr = t.dispatches, t.dispatch_transitions
    async with engine.connect() as conn:
        row = (
            (await conn.execute(select(d).where(d.c.id == dispatch_id, visible(d))))
            .mappings()
            .first()
        )
        if row is None:
            return None
        transitions = [
            dict(x)
            for x in (
                await conn.execute(
                    select(tr).where(tr.c.dispatch_id == dispatch_id).order_by(tr.c.seq)
                )
            ).mappings()
        ]
        children = (
            await conn.execute(select(d.c.id).where(d.c.parent_id == dispatch_id).order_by(d.c.id))
        ).scalars()
        late = t.dispatch_late_acks
        late_acks = (
            await conn.execute(
                select(
                    late.c.state,
                    late.c.at,
                    late.c.reason,
                    late.c.detail,
                    late.c.gateway_id,
                    late.c.received_at,
                )
                .where(late.c.dispatch_id == dispatch_id)
                .order_by(late.c.received_at, late.c.at)
            )
        ).mappings()
        return {
            **row,
            "children": list(children),
            "transitions": transitions,
            "evidence": await telemetry_evidence(conn, dict(row), transitions),
            "late_acks": [dict(x) for x in late_acks],
        }


def active_window(
    row: Mapping[str, Any], transitions: Sequence[Mapping[str, Any]], now: datetime
) -> tuple[datetime, datetime] | None:
    """From ``active`` to the end (its end state, else now), at most to end_at;
    None for a site dispatch or one never active."""
    active = next((x for x in transitions if x["to_state"] == DispatchState.ACTIVE), None)
    if row["kind"] != DispatchKind.ASSET or active is None:
        return None
    ended = next((x["at"] for x in transitions if x["to_state"] in TERMINAL_VALUES), None)
    return active["at"], min(ended or now, row["end_at"])


def evidence(
    row: Mapping[str, Any],
    window: tuple[datetime, datetime],
    samples: Sequence[tuple[datetime, float]],
) -> dict[str, Any]:
    """Measured p_kw (``samples``: ts, p_kw in time order) against the setpoint."""
    start, end = window
    setpoint = row["applied_p_kw"] if row["applied_p_kw"] is not None else row["p_kw"]
    tolerance = max(0.02 * abs(setpoint), 0.5)
    deviations = [abs(p - setpoint) for _, p in samples]
    reached = next((ts for ts, p in samples if abs(p - setpoint) <= tolerance), None)
    return {
        "window_start": start,
        "window_end": end,
        "samples": len(samples),
        "setpoint_kw": setpoint,
        "mean_p_kw": sum(p for _, p in samples) / len(samples) if samples else None,
        "mean_abs_deviation_kw": sum(deviations) / len(deviations) if samples else None,
        "max_abs_deviation_kw": max(deviations) if samples else None,
        "time_to_target_s": (reached - start).total_seconds() if reached else None,
        "tolerance_kw": tolerance,
    }


async def telemetry_evidence(
    conn: AsyncConnection, row: Mapping[str, Any], transitions: Sequence[Mapping[str, Any]]
) -> dict[str, Any] | None:
    window = active_window(row, transitions, datetime.now(UTC))
    if window is None:
        return None
    tel = t.telemetry
    rows = (
        await conn.execute(
            select(tel.c.ts, tel.c.p_kw)
            .where(
                tel.c.asset_id == row["asset_id"],
                tel.c.ts >= window[0],
                tel.c.ts <= window[1],
                tel.c.p_kw.is_not(None),
            )
            .order_by(tel.c.ts)
            .limit(MAX_EVIDENCE_SAMPLES)
        )
    ).all()
    return evidence(row, window, [(r.ts, r.p_kw) for r in rows])
