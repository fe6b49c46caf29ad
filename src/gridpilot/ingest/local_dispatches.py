"""A local dispatch report (proto LocalDispatch) checked and turned into a
dispatch record: the agent applied it on site; the headend records it
(:class:`LocalDispatchIntake`) and confirms it with ``LocalDispatchRecorded``,
after which the agent stops sending the report on each new session."""

from __future__ import annotations

import math
from collections.abc import Awaitable, Callable, Set
from datetime import timedelta

import structlog

from gridpilot.core.dispatch import LOCAL_DISPATCH_PREFIX
from gridpilot.core.errors import DomainError
from gridpilot.security.audit import Actor
from gridpilot.wire import dispatch as wire_dispatch
from gridpilot.wire.messages import LocalDispatch
from gridpilot.wire.text import clean_text
from gridpilot.wire.times import ts_from_pb, ts_problem
from gridpilot.workflows.models import DispatchInput

from .guard import GatewayAuthority, gateway_actor, refuse_gateway
from .sessions import AgentSession

log = structlog.get_logger(__name__)

MAX_ID_LEN = 100
MAX_LEASE = timedelta(days=7)
# Records a local dispatch (row + workflow); raises when the DB or Temporal is down.
LocalSink = Callable[[DispatchInput, Actor], Awaitable[None]]


class LocalDispatchRefused(DomainError):
    code = "local_dispatch_refused"


def local_dispatch_input(
    raw: LocalDispatch, gateway_id: str, site_id: str, asset_ids: Set[str]
) -> DispatchInput:
    """The dispatch to record; raises LocalDispatchRefused naming the field."""

    def refuse(field: str, why: str) -> LocalDispatchRefused:
        return LocalDispatchRefused(f"local_dispatch.{field}: {why}", field=field)

    if (
        not raw.dispatch_id.startswith(LOCAL_DISPATCH_PREFIX)
        or len(raw.dispatch_id) > MAX_ID_LEN
        or "\x00" in raw.dispatch_id
    ):
        raise refuse(
            "dispatch_id",
            f"must start with {LOCAL_DISPATCH_PREFIX!r}, at most {MAX_ID_LEN} chars, no NUL",
        )
    if raw.asset_id not in asset_ids:
        raise refuse("asset_id", f"{raw.asset_id!r} is not one of this gateway's assets")
    if not math.isfinite(raw.p_kw):
        raise refuse("p_kw", "must be a finite number")
    if not raw.HasField("start") or not raw.HasField("end"):
        raise refuse("end" if raw.HasField("start") else "start", "is required")
    for name in ("start", "end"):
        if why := ts_problem(getattr(raw, name)):
            raise refuse(name, why)
    start = ts_from_pb(raw.start)
    end = ts_from_pb(raw.end)
    if not timedelta(0) < end - start <= MAX_LEASE:
        raise refuse("end", f"must be after start, by at most {MAX_LEASE.days} days")
    actor = clean_text(raw.actor.strip(), 200) or "local"
    return DispatchInput(
        dispatch_id=raw.dispatch_id,
        kind="asset",
        p_kw=raw.p_kw,
        duration_s=math.ceil((end - start).total_seconds()),
        start_at=start,
        end_at=end,
        deliver_by=start,
        asset_id=raw.asset_id,
        site_id=site_id,
        submitted_by=f"{actor}@{gateway_id}",
        source="local",
    )


class LocalDispatchIntake:
    def __init__(
        self, sink: LocalSink | None = None, authority: GatewayAuthority | None = None
    ) -> None:
        self._sink = sink
        self._authority = authority

    async def take(self, session: AgentSession, raw: LocalDispatch) -> bool:
        """Record a dispatch made on site, then confirm it to the agent. False
        when it could not be recorded now (database or Temporal down): the
        stream is then ended before the acks behind it, and the agent sends
        the report again on its next session."""
        try:
            inp = local_dispatch_input(raw, session.gateway_id, session.site_id, session.asset_ids)
        except LocalDispatchRefused as exc:
            target = clean_text(raw.dispatch_id, 200)  # the audit row must be storable
            await refuse_gateway(
                self._authority, session.gateway_id, "dispatch.local_refused", target, exc.message
            )
            _confirm(session, raw.dispatch_id, refused=exc.message)
            return True
        if self._sink is None:
            log.warning("local_dispatch_not_recorded", gateway=session.gateway_id)
            return True
        try:
            await self._sink(inp, gateway_actor(session.gateway_id))
        except Exception as exc:
            log.warning(
                "local_dispatch_unrecorded",
                gateway=session.gateway_id,
                dispatch_id=inp.dispatch_id,
                error=str(exc),
            )
            return False
        log.info(
            "local_dispatch_recorded",
            gateway=session.gateway_id,
            dispatch_id=inp.dispatch_id,
            asset_id=inp.asset_id,
            p_kw=inp.p_kw,
            by=inp.submitted_by,
        )
        _confirm(session, inp.dispatch_id)
        return True


def _confirm(session: AgentSession, dispatch_id: str, refused: str = "") -> None:
    """Tell the agent to stop re-sending this local dispatch report."""
    session.send_nowait(wire_dispatch.local_dispatch_recorded(dispatch_id, refused))
