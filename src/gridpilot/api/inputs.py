"""What the API accepts at its edge: parameters and bodies that PostgreSQL and
Python can hold, refused with a 422 naming the field before any route runs.

The hazards, each of which was a 500 before: PostgreSQL text cannot hold a NUL
character (``DataError``) nor a lone UTF-16 surrogate (``UnicodeEncodeError``);
a ``bigint`` ends at 2**63 - 1; Python's ``datetime`` ends at year 9999 (an
offset or an added duration past it is an ``OverflowError``); pydantic reads a
number as a Unix time where a date-time is expected; and a float may be 1e308.
"""

from __future__ import annotations

import re
from datetime import UTC, datetime
from typing import Annotated, Any

from fastapi import Request
from fastapi.responses import JSONResponse
from pydantic import (
    AfterValidator,
    AwareDatetime,
    BaseModel,
    BeforeValidator,
    ConfigDict,
    Field,
    field_validator,
)
from starlette.exceptions import HTTPException
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from gridpilot.core.errors import ValidationFailed

from .errors import error_body

INT64_MAX = 2**63 - 1
DEFAULT_MAX_BODY_BYTES = 64 * 1024
# Far beyond any asset or site this product drives (1 GW), far below where
# sums and products of floats stop being exact enough to compare.
MAX_KW = 1_000_000.0
# Every instant the API takes lies in this range: further out is a typo or an
# attack, and Python's datetime overflows near year 9999.
MIN_INSTANT = datetime(1970, 1, 1, tzinfo=UTC)
MAX_INSTANT = datetime(2200, 1, 1, tzinfo=UTC)
# RFC 3339 date-time (a space for the T is tolerated): no Unix times, no "now".
_DATE_TIME = re.compile(r"^\d{4}-\d{2}-\d{2}[Tt ]\d{2}:\d{2}")


def text_problem(value: str) -> str | None:
    """Why PostgreSQL cannot store ``value`` as text, or None."""
    if "\x00" in value:
        return "must not contain a NUL character"
    try:
        value.encode("utf-8")
    except UnicodeEncodeError:
        return "must be valid Unicode (no lone surrogates)"
    return None


async def check_parameters(request: Request) -> None:
    """Dependency of every route: no path or query parameter PostgreSQL cannot
    hold (it runs before the route's own parameters are read)."""
    params = [*request.path_params.items(), *request.query_params.multi_items()]
    for name, value in params:
        problem = text_problem(name) or text_problem(value)
        if problem is not None:
            raise ValidationFailed(f"{name!r}: {problem}", field=name)


def _no_bad_text(value: Any) -> Any:
    """Strings anywhere inside ``value`` (nested lists and objects included)."""
    if isinstance(value, str):
        problem = text_problem(value)
        if problem is not None:
            raise ValueError(problem)
    elif isinstance(value, dict):
        for k, v in value.items():
            _no_bad_text(k)
            _no_bad_text(v)
    elif isinstance(value, list | tuple):
        for v in value:
            _no_bad_text(v)
    return value


class RequestBody(BaseModel):
    """Base of every request body: unknown fields and text PostgreSQL cannot
    hold (NUL, lone surrogates) are refused, naming the field."""

    model_config = ConfigDict(extra="forbid")

    @field_validator("*", mode="before")
    @classmethod
    def _storable_text(cls, value: Any) -> Any:
        return _no_bad_text(value)


def _date_time_text(value: Any) -> Any:
    if isinstance(value, datetime):
        return value
    if not isinstance(value, str) or not _DATE_TIME.match(value):
        raise ValueError("must be an RFC 3339 date-time with a time zone, e.g. 2030-01-01T00:00Z")
    return value


def _in_range(value: datetime) -> datetime:
    if not MIN_INSTANT <= value < MAX_INSTANT:
        raise ValueError(f"must be between {MIN_INSTANT:%Y-%m-%d} and {MAX_INSTANT:%Y-%m-%d} (UTC)")
    return value


# An aware date-time given as RFC 3339 text, within [MIN_INSTANT, MAX_INSTANT).
Instant = Annotated[AwareDatetime, BeforeValidator(_date_time_text), AfterValidator(_in_range)]
# Active or reactive power, kW / kvar: a finite number within +-MAX_KW.
Kw = Annotated[float, Field(strict=True, allow_inf_nan=False, ge=-MAX_KW, le=MAX_KW)]
# A database id (bigint).
Int64 = Annotated[int, Field(ge=0, le=INT64_MAX)]


class BodyLimit:
    """ASGI middleware: a request body over ``max_bytes`` is a 413, whether it
    announces its length (refused before it is read) or comes chunked (refused
    when the count passes the limit, before the route sees it)."""

    def __init__(self, app: ASGIApp, max_bytes: int) -> None:
        self.app = app
        self.max_bytes = max_bytes

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        declared = dict(scope["headers"]).get(b"content-length")
        if declared is not None and (not declared.isdigit() or int(declared) > self.max_bytes):
            status = 413 if declared.isdigit() else 400
            response = JSONResponse(
                status_code=status,
                content=error_body(*self._refusal(status)),
                headers={"Connection": "close"},
            )
            await response(scope, receive, send)
            return
        seen = 0

        async def counted() -> Message:
            nonlocal seen
            message = await receive()
            if message["type"] == "http.request":
                seen += len(message.get("body", b""))
                if seen > self.max_bytes:
                    # FastAPI re-raises an HTTPException from reading the body.
                    raise HTTPException(413, self._refusal(413)[1])
            return message

        await self.app(scope, counted, send)

    def _refusal(self, status: int) -> tuple[str, str]:
        if status == 400:
            return "bad_request", "Content-Length is not a number"
        return "payload_too_large", f"the request body is over {self.max_bytes} bytes"
