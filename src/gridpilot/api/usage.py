"""``GET /api/v1/usage``: the caller's tenant's metered usage per hour
(``store/usage.py``), as JSON, JSON lines or CSV."""

from __future__ import annotations

import csv
import io
import json
from datetime import UTC, datetime, timedelta
from typing import Annotated, Any, Literal

from fastapi import APIRouter, Query, Request, Response
from pydantic import BaseModel, Field

from gridpilot.core.errors import ValidationFailed
from gridpilot.core.usage import ALL_METRICS
from gridpilot.store import usage as store

from .inputs import Instant
from .tenant import caller_tenant

router = APIRouter(prefix="/api/v1", tags=["usage"])

MAX_SPAN = timedelta(days=93)
COLUMNS = ("tenant_id", "hour", *ALL_METRICS)


class UsageView(BaseModel):
    tenant_id: str
    hour: datetime = Field(description="the UTC hour [hour, hour + 1 h) the row covers")
    samples_ingested: int = Field(description="telemetry samples accepted (committed, acked)")
    bytes_stored: int = Field(description="bytes of telemetry rows written for them")
    api_calls: int = Field(description="authenticated REST requests")
    active_assets: int = Field(description="distinct assets with accepted telemetry")
    dispatches_complete: int
    dispatches_expired: int
    dispatches_failed: int
    dispatches_cancelled: int


@router.get(
    "/usage",
    response_model=list[UsageView],
    responses={200: {"content": {"application/x-ndjson": {}, "text/csv": {}}}},
)
async def usage(
    request: Request,
    start: Annotated[
        Instant | None, Query(alias="from", description="from this hour (default: 24 h ago)")
    ] = None,
    end: Annotated[
        Instant | None, Query(alias="to", description="before this (default: now)")
    ] = None,
    format: Literal["json", "jsonl", "csv"] = "json",
) -> Any:
    """Usage of the caller's tenant per UTC hour, oldest first; hours without
    any usage are left out. Each replica adds what it counted every
    GRIDPILOT_USAGE_FLUSH_S (60 s), so the current hour lags that much."""
    until = end or datetime.now(UTC)
    since = start or until - timedelta(hours=24)
    if until <= since:
        raise ValidationFailed("'to' must be after 'from'", field="to")
    if until - since > MAX_SPAN:
        raise ValidationFailed(f"at most {MAX_SPAN.days} days at a time", field="from")
    rows = await store.read(request.app.state.engine, caller_tenant(request), since, until)
    if format == "json":
        return rows
    views = [UsageView.model_validate(r).model_dump(mode="json") for r in rows]
    if format == "jsonl":
        body = "".join(json.dumps(v, sort_keys=True) + "\n" for v in views)
        return Response(body, media_type="application/x-ndjson")
    buf = io.StringIO()
    writer = csv.DictWriter(buf, fieldnames=COLUMNS, lineterminator="\n")
    writer.writeheader()
    writer.writerows(views)
    return Response(
        buf.getvalue(),
        media_type="text/csv",
        headers={"Content-Disposition": 'attachment; filename="gridpilot-usage.csv"'},
    )
