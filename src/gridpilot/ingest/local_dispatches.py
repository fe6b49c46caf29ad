"""A local dispatch report (proto LocalDispatch) checked and turned into a
dispatch record: the agent applied it on site; the headend records it."""

from __future__ import annotations

import math
from collections.abc import Set
from datetime import timedelta

from gridpilot.core.dispatch import LOCAL_DISPATCH_PREFIX
from gridpilot.core.errors import DomainError
from gridpilot.wire.messages import LocalDispatch
from gridpilot.wire.text import clean_text
from gridpilot.wire.times import ts_from_pb, ts_problem
from gridpilot.workflows.models import DispatchInput

MAX_ID_LEN = 100
MAX_LEASE = timedelta(days=7)


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
