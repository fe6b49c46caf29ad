"""The statement that records one dispatch transition: the transition's row and
the dispatch row's move to its state, as one statement, so a dispatch store
transaction can write several (``DispatchStore.record_transitions``) or write
the first one with the dispatch row (``DispatchStore.record``)."""

from __future__ import annotations

from typing import Any

from sqlalchemy import Update, exists, func, select, update
from sqlalchemy.dialects.postgresql import insert

from gridpilot.schema import tables as t
from gridpilot.schema.tables import DEFAULT_TENANT
from gridpilot.workflows.models import TransitionRecord


def dispatch_tenant(dispatch_id: str) -> Any:
    """A dispatch's transitions and late acks belong to its tenant."""
    d = t.dispatches
    of = select(d.c.tenant_id).where(d.c.id == dispatch_id).scalar_subquery()
    return func.coalesce(of, DEFAULT_TENANT)


def transition_statement(rec: TransitionRecord) -> Update:
    """Append a transition and move the row's state (idempotent: each state is
    entered once per dispatch, so a retried activity's insert does nothing, and
    the row is then not moved back)."""
    inserted = (
        insert(t.dispatch_transitions)
        .values(
            dispatch_id=rec.dispatch_id,
            seq=rec.seq,
            from_state=rec.from_state.value if rec.from_state else None,
            to_state=rec.to_state.value,
            at=rec.at,
            reason=rec.reason.value if rec.reason else None,
            detail=rec.detail,
            actor=rec.actor,
            tenant_id=dispatch_tenant(rec.dispatch_id),
        )
        .on_conflict_do_nothing()
        .returning(t.dispatch_transitions.c.seq)
        .cte("inserted")
    )
    values: dict[str, object] = {
        "state": rec.to_state.value,
        "reason": rec.reason.value if rec.reason else None,
        "detail": rec.detail,
        "updated_at": func.now(),
    }
    if rec.applied_p_kw is not None:
        values["applied_p_kw"] = rec.applied_p_kw
    return (
        update(t.dispatches)
        .where(t.dispatches.c.id == rec.dispatch_id, exists(select(inserted.c.seq)))
        .values(**values)
    )
