"""The OpenAPI document as the API behaves.

Derived, not hand-written, so a new route gets it by having a rule in
:data:`gridpilot.api.auth.RULES`:

- the bearer security scheme (``/docs`` shows an Authorize button), and on
  each operation whether it needs a token at all (public routes say
  ``security: []``) and which permission and roles;
- every error status the operation answers, each with the error model
  (:class:`ErrorView`): 401 and 503 (the token check reads the database)
  for any route that needs a credential (and 429: its token's rate limit),
  403 where a role is needed, 404
  where a path names an object, 422 where there is any input, and what
  :data:`EXTRA` (or the route's own ``responses=``) adds, such as 409.
"""

from __future__ import annotations

import json
import re
from typing import Any

from fastapi import FastAPI
from fastapi.openapi.utils import get_openapi
from pydantic import BaseModel, Field

from gridpilot.security.principal import GRANTS, Permission

from .auth import rule_for

BEARER = "bearer"
REF = "#/components/schemas/{model}"
ERROR_CONTENT = {"application/json": {"schema": {"$ref": REF.format(model="ErrorView")}}}


class FieldErrorView(BaseModel):
    field: str
    message: str
    type: str


class ErrorView(BaseModel):
    """Every error answer: a stable ``code`` and a human ``message``."""

    code: str = Field(description="stable, e.g. not_found, validation_failed, conflict")
    message: str
    field: str | None = Field(None, description="the input at fault, when there is one")
    errors: list[FieldErrorView] | None = Field(
        None, description="every invalid input (validation_failed only)"
    )
    limit: str | None = Field(None, description="the quota exceeded (quota_exceeded only)")
    retry_after_s: float | None = Field(
        None, description="seconds until the rate limit admits the request (quota_exceeded)"
    )


GENERIC = {
    401: "No valid credential: the bearer token is missing, unknown, revoked or expired, "
    "or its tenant is suspended.",
    403: "The credential is valid but its role may not do this.",
    404: "An object the path names does not exist.",
    409: "The request conflicts with the current state.",
    422: "The input is invalid; `field` names it.",
    429: "`quota_exceeded`: over a rate limit (`limit` names it, e.g. `api_requests_per_s`); "
    "retry after `Retry-After` seconds.",
    503: "A dependency (database, Temporal) is unavailable; retry after `Retry-After` seconds.",
}

_NO_CA = "`enrollment_not_configured`: this headend has no GRIDPILOT_PKI_DIR."
_ENROLL_429 = (
    "`quota_exceeded`: over `enroll_requests_per_min` from this address; retry after "
    "`Retry-After` seconds."
)
GENERIC_DB = "The database is unavailable; retry after `Retry-After` seconds."

# Statuses a route answers beyond what its rule and inputs imply (above). A
# route may also declare them itself with ``responses=``.
EXTRA: dict[tuple[str, str], dict[int, str]] = {
    ("POST", "/api/v1/dispatches"): {
        409: "The Idempotency-Key was used for another request, or a dispatch of "
        "higher priority holds the asset.",
        429: "`quota_exceeded`: over `api_requests_per_s` (this token) or "
        "`dispatch_submits_per_min` (this tenant); retry after `Retry-After` seconds.",
    },
    ("POST", "/api/v1/dispatches/{dispatch_id}/cancel"): {
        409: "The dispatch was written on site by a local operator; end it there.",
    },
    ("POST", "/api/v1/tokens"): {
        404: "`tenant_id` names another tenant than the caller's (only a platform admin may).",
        409: "A live token has this name.",
    },
    ("POST", "/api/v1/tenants"): {409: "A tenant has this id."},
    ("POST", "/api/v1/tokens/{token_id}/revoke"): {
        409: "This is the last live admin token: create another admin token first.",
    },
    ("PUT", "/api/v1/assets/{asset_id}/gateway"): {
        409: "The gateway belongs to another site.",
    },
    ("GET", "/api/v1/audit/export"): {
        404: "`not_found`: no such dispatch; or `evidence_not_configured`: this API has no "
        "signing key.",
    },
    ("GET", "/api/v1/audit/export/key"): {
        404: "`evidence_not_configured`: this API has no signing key.",
    },
    # gateway onboarding (api/onboarding.py): 404 on a headend without a CA
    ("GET", "/api/v1/enrollment-tokens"): {404: _NO_CA},
    ("POST", "/api/v1/enrollment-tokens"): {
        404: f"{_NO_CA} Or `site_id` is another tenant's site.",
    },
    ("POST", "/api/v1/enroll/describe"): {
        429: _ENROLL_429,
        403: "`token_unknown` or `token_expired`.",
        404: _NO_CA,
        409: "`token_used`: the token was spent.",
        503: GENERIC_DB,
    },
    ("POST", "/api/v1/enroll"): {
        429: _ENROLL_429,
        403: "`token_unknown` or `token_expired`.",
        404: _NO_CA,
        409: "`token_used`: the token was spent (also by a concurrent request).",
        503: GENERIC_DB,
    },
    ("POST", "/api/v1/enroll/renew"): {
        429: _ENROLL_429,
        403: "`certificate_refused` (not of this CA, revoked, or the gateway is enrolled "
        "for no site) or `certificate_expired`.",
        404: _NO_CA,
        503: GENERIC_DB,
    },
}
_METHODS = ("get", "put", "post", "delete", "patch", "head", "options")


def install(app: FastAPI) -> None:
    """Replace ``app.openapi`` with :func:`build` (computed once)."""

    def openapi() -> dict[str, Any]:
        if app.openapi_schema is None:
            app.openapi_schema = build(app)
        return app.openapi_schema

    app.openapi = openapi  # type: ignore[method-assign]


def build(app: FastAPI) -> dict[str, Any]:
    doc = get_openapi(
        title=app.title,
        version=app.version,
        description=app.description,
        routes=app.routes,
        tags=app.openapi_tags,
    )
    schemas = doc.setdefault("components", {}).setdefault("schemas", {})
    error = ErrorView.model_json_schema(ref_template=REF)
    schemas.update(error.pop("$defs", {}))
    schemas["ErrorView"] = error
    doc["components"]["securitySchemes"] = {
        BEARER: {
            "type": "http",
            "scheme": "bearer",
            "description": "An API token (`gridpilot token create`, or `POST /api/v1/tokens`) "
            "or, where OIDC is set up, a JWT from the identity provider.",
        }
    }
    deps = getattr(app.state, "deps", None)
    metrics_public = bool(deps is not None and deps.auth.metrics_public)
    for path, item in doc.get("paths", {}).items():
        for method, op in item.items():
            if method in _METHODS:
                _describe(op, method.upper(), path, rule_for(method.upper(), path, metrics_public))
    _drop_unused(schemas, doc)
    return doc


def _describe(op: dict[str, Any], method: str, path: str, rule: Permission | None) -> None:
    statuses: dict[int, str] = {}
    if rule is Permission.PUBLIC:
        op["security"] = []
    else:
        op["security"] = [{BEARER: []}]
        statuses |= {401: GENERIC[401], 429: GENERIC[429], 503: GENERIC[503]}
        if rule is not Permission.AUTHENTICATED:
            statuses[403] = _needs(rule)
    params = op.get("parameters", [])
    if any(p.get("in") == "path" for p in params):
        statuses[404] = GENERIC[404]
    if params or "requestBody" in op:
        statuses[422] = GENERIC[422]
    statuses |= EXTRA.get((method, path), {})
    responses = op.setdefault("responses", {})
    for status, description in sorted(statuses.items()):
        given = responses.setdefault(str(status), {"description": description})
        if status == 422:  # ours replaces FastAPI's validation model: it is what is sent
            given["content"] = ERROR_CONTENT
        if given.get("description") in ("Validation Error", "", None):
            given["description"] = description
    for status, given in responses.items():
        if status[0] in "45" and "content" not in given:
            given["content"] = ERROR_CONTENT


def _needs(rule: Permission | None) -> str:
    if rule is None:  # no rule: refused for everyone (fail closed)
        return "This route has no access rule and is refused."
    roles = ", ".join(sorted(r.value for r, perms in GRANTS.items() if rule in perms))
    return f"Needs the `{rule.value}` permission (roles: {roles})."


def _drop_unused(schemas: dict[str, Any], doc: dict[str, Any]) -> None:
    """FastAPI's own validation models, once nothing refers to them."""
    for name in ("HTTPValidationError", "ValidationError"):
        if name in schemas:
            text = json.dumps({k: v for k, v in doc.items() if k != "components"})
            text += json.dumps({k: v for k, v in schemas.items() if k != name})
            if not re.search(rf'"#/components/schemas/{name}"', text):
                del schemas[name]
