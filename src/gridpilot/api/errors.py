"""Every error leaves the API as JSON ``{code, message, field?}``."""

from __future__ import annotations

import math
from typing import Any

from fastapi import FastAPI, Request
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse
from starlette.exceptions import HTTPException as StarletteHTTPException
from starlette.routing import Match

from gridpilot.core.errors import Conflict, DomainError, NotFound, OutOfLimits
from gridpilot.core.quotas import QuotaExceeded
from gridpilot.schema.db import DATABASE_UNAVAILABLE


class Unavailable(Exception):
    """A dependency (database, Temporal) is down; the client may retry."""

    def __init__(self, what: str, message: str) -> None:
        super().__init__(message)
        self.what = what
        self.message = message


def error_body(code: str, message: str, field: str | None = None, **extra: Any) -> dict[str, Any]:
    body: dict[str, Any] = {"code": code, "message": message}
    if field:
        body["field"] = field
    body.update(extra)
    return body


def quota_response(exc: QuotaExceeded) -> JSONResponse:
    """429: the limit by name, and when to retry (a count limit: no Retry-After)."""
    headers = {}
    extra: dict[str, Any] = {"limit": exc.limit.value}
    if exc.retry_after_s is not None:
        headers["Retry-After"] = str(max(1, math.ceil(exc.retry_after_s)))
        extra["retry_after_s"] = round(exc.retry_after_s, 3)
    return JSONResponse(
        status_code=429, headers=headers, content=error_body(exc.code, exc.message, **extra)
    )


STATUS = {NotFound: 404, Conflict: 409, OutOfLimits: 422}


HTTP_METHODS = ("DELETE", "GET", "HEAD", "OPTIONS", "PATCH", "POST", "PUT")


def allowed_methods(request: Request) -> list[str]:
    """The methods some route answers at this request's path (asked of the
    routes themselves, so included routers count too)."""
    found = []
    for method in HTTP_METHODS:
        scope = {**request.scope, "method": method}
        if any(route.matches(scope)[0] is Match.FULL for route in request.app.routes):
            found.append(method)
    return found


def _field(loc: tuple[Any, ...]) -> str:
    parts = [str(p) for p in loc if p not in ("body", "query", "path", "header")]
    return ".".join(parts) or "body"


def install(app: FastAPI) -> None:
    @app.exception_handler(RequestValidationError)
    async def _validation(_: Request, exc: RequestValidationError) -> JSONResponse:
        errors = [
            {"field": _field(tuple(e["loc"])), "message": e["msg"], "type": e["type"]}
            for e in exc.errors()
        ]
        first = errors[0] if errors else {"field": "body", "message": "invalid request"}
        return JSONResponse(
            status_code=422,
            content=error_body(
                "validation_failed",
                f"{first['field']}: {first['message']}",
                str(first["field"]),
                errors=errors,
            ),
        )

    @app.exception_handler(DomainError)
    async def _domain(_: Request, exc: DomainError) -> JSONResponse:
        # An error may carry its own status (e.g. an enrollment token's 401/409).
        status = getattr(exc, "status", None) or next(
            (s for cls, s in STATUS.items() if isinstance(exc, cls)), 422
        )
        return JSONResponse(
            status_code=status, content=error_body(exc.code, exc.message, exc.field)
        )

    @app.exception_handler(QuotaExceeded)
    async def _quota(_: Request, exc: QuotaExceeded) -> JSONResponse:
        return quota_response(exc)

    @app.exception_handler(Unavailable)
    async def _unavailable(_: Request, exc: Unavailable) -> JSONResponse:
        return JSONResponse(
            status_code=503,
            headers={"Retry-After": "5"},
            content=error_body(f"{exc.what}_unavailable", exc.message),
        )

    async def _db_down(_: Request, exc: Exception) -> JSONResponse:
        return JSONResponse(
            status_code=503,
            headers={"Retry-After": "5"},
            content=error_body(
                "database_unavailable", "the database is not reachable; retry shortly"
            ),
        )

    for db_down in DATABASE_UNAVAILABLE:
        app.add_exception_handler(db_down, _db_down)

    @app.exception_handler(StarletteHTTPException)
    async def _http(request: Request, exc: StarletteHTTPException) -> JSONResponse:
        code = {
            401: "unauthenticated",
            403: "forbidden",
            404: "not_found",
            405: "method_not_allowed",
            413: "payload_too_large",
        }.get(exc.status_code, "http_error")
        headers = dict(exc.headers or {})
        message = str(exc.detail)
        if exc.status_code == 405:
            # Every method the path has (Starlette names only the first route's).
            allowed = allowed_methods(request)
            headers["Allow"] = ", ".join(allowed)
            message = f"{request.method} is not allowed here; use {' or '.join(allowed)}"
        return JSONResponse(
            status_code=exc.status_code, content=error_body(code, message), headers=headers
        )

    @app.exception_handler(Exception)
    async def _unexpected(request: Request, exc: Exception) -> JSONResponse:
        # Errors raised in a middleware (e.g. the token lookup of auth) skip
        # the handlers above and land here: a database outage is still a 503.
        if isinstance(exc, DATABASE_UNAVAILABLE):
            return await _db_down(request, exc)
        return JSONResponse(
            status_code=500,
            content=error_body("internal_error", f"unexpected error ({type(exc).__name__})"),
        )
