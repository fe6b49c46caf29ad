"""Authentication, authorization and the request log, for every HTTP request.

One table (:data:`RULES`) says which permission each route needs. The
middleware matches the request against that table before any endpoint code
runs: it authenticates (401) and authorizes (403). A route the table does not
know needs a valid credential in the middleware and is then refused by
:func:`require_rule`, a dependency of every API route (fail closed);
``tests/integration/api/test_auth.py`` checks that every route has a rule.
Each request is logged as one line with the principal, role, method, path,
the status actually sent and duration, never with the credential. A database
outage (the token check, or a route) is answered 503 here and logged in that
same line, without a traceback per request. Refusals that matter are
audited with their route: a 403, and a 401 for a token-shaped credential (an
API token or a JWT that did not authenticate); each distinct cause once per
window (:class:`~gridpilot.security.refusals.RefusalLimiter`).
"""

from __future__ import annotations

import json
import re
import time
import uuid
from dataclasses import dataclass, field
from typing import Any

import structlog
from fastapi import HTTPException, Request
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from gridpilot.schema import tenancy
from gridpilot.schema.db import DATABASE_UNAVAILABLE
from gridpilot.security.audit import Actor, AuditEvent, AuditLog
from gridpilot.security.authn import Authenticator
from gridpilot.security.principal import ANONYMOUS, AuthError, Permission, Principal
from gridpilot.security.refusals import RefusalLimiter, credential_hint

log = structlog.get_logger("gridpilot.api.access")

P = Permission
RULES: dict[tuple[str, str], Permission] = {
    ("GET", "/healthz"): P.PUBLIC,
    ("GET", "/readyz"): P.PUBLIC,
    ("GET", "/metrics"): P.READ,  # P.PUBLIC with GRIDPILOT_METRICS_PUBLIC=true
    # The console page and the API's description hold no data; the console
    # asks for a token before it calls the API.
    ("GET", "/"): P.PUBLIC,
    ("GET", "/console/dispatches"): P.PUBLIC,
    ("GET", "/console/dispatches/{dispatch_id}"): P.PUBLIC,
    ("GET", "/console/agents"): P.PUBLIC,
    ("GET", "/console/sites/{site_id}"): P.PUBLIC,
    ("GET", "/console/assets/{asset_id}"): P.PUBLIC,
    ("GET", "/console/audit"): P.PUBLIC,
    ("GET", "/console/static/{name}"): P.PUBLIC,
    ("GET", "/favicon.ico"): P.PUBLIC,
    ("GET", "/openapi.json"): P.PUBLIC,
    ("GET", "/docs"): P.PUBLIC,
    ("GET", "/docs/assets/{name}"): P.PUBLIC,
    ("GET", "/api/v1/me"): P.AUTHENTICATED,
    ("GET", "/api/v1/agents"): P.READ,
    ("GET", "/api/v1/agents/sessions"): P.READ,
    ("GET", "/api/v1/agents/{gateway_id}/sessions"): P.READ,
    ("GET", "/api/v1/sites"): P.READ,
    ("GET", "/api/v1/assets"): P.READ,
    ("GET", "/api/v1/assets/{asset_id}"): P.READ,
    ("GET", "/api/v1/assets/{asset_id}/telemetry/latest"): P.READ,
    ("GET", "/api/v1/telemetry"): P.READ,
    ("GET", "/api/v1/telemetry/latest"): P.READ,
    ("GET", "/api/v1/events"): P.READ,
    ("GET", "/api/v1/dispatches"): P.READ,
    ("GET", "/api/v1/dispatches/{dispatch_id}"): P.READ,
    ("POST", "/api/v1/dispatches"): P.DISPATCH,
    ("POST", "/api/v1/dispatches/preview"): P.DISPATCH,
    ("POST", "/api/v1/dispatches/{dispatch_id}/cancel"): P.DISPATCH,
    ("GET", "/api/v1/audit"): P.AUDIT,
    ("GET", "/api/v1/audit/export"): P.AUDIT,
    ("GET", "/api/v1/audit/export/key"): P.AUDIT,
    ("GET", "/api/v1/usage"): P.READ,  # the caller's tenant's metered usage
    ("GET", "/api/v1/retention"): P.AUDIT,
    ("PUT", "/api/v1/retention"): P.ADMIN,
    ("GET", "/api/v1/tokens"): P.ADMIN,
    ("POST", "/api/v1/tokens"): P.ADMIN,
    ("POST", "/api/v1/tokens/{token_id}/revoke"): P.ADMIN,
    ("GET", "/api/v1/gateways/{gateway_id}/certificates"): P.ADMIN,
    ("POST", "/api/v1/gateways/{gateway_id}/revoke"): P.ADMIN,
    ("PUT", "/api/v1/assets/{asset_id}/gateway"): P.ADMIN,
    # site enrollment (api/enrollment.py)
    ("GET", "/api/v1/gateways"): P.ADMIN,
    ("GET", "/api/v1/sites/{site_id}/gateways"): P.ADMIN,
    ("POST", "/api/v1/sites/{site_id}/gateways"): P.ADMIN,
    ("DELETE", "/api/v1/sites/{site_id}/gateways/{gateway_id}"): P.ADMIN,
    ("GET", "/api/v1/sites/{site_id}/held-assets"): P.ADMIN,
    ("POST", "/api/v1/assets/{asset_id}/approve"): P.ADMIN,
    # gateway onboarding (api/onboarding.py): an admin issues one-time tokens;
    # a gateway spends one (or shows its current certificate's key) instead
    # of a bearer token, so these three are public to the middleware.
    ("GET", "/api/v1/enrollment-tokens"): P.ADMIN,
    ("POST", "/api/v1/enrollment-tokens"): P.ADMIN,
    ("POST", "/api/v1/enroll/describe"): P.PUBLIC,
    ("POST", "/api/v1/enroll"): P.PUBLIC,
    ("POST", "/api/v1/enroll/renew"): P.PUBLIC,
    # tenants (api/tenants.py): the platform admin's
    ("GET", "/api/v1/tenants"): P.TENANTS,
    ("POST", "/api/v1/tenants"): P.TENANTS,
    ("POST", "/api/v1/tenants/{tenant_id}/suspend"): P.TENANTS,
    ("POST", "/api/v1/tenants/{tenant_id}/resume"): P.TENANTS,
}
# What a request that matches no route (404/405) needs: any credential, so an
# anonymous caller cannot map the API.
UNMATCHED = P.AUTHENTICATED
_REQUEST_ID = re.compile(r"^[A-Za-z0-9._:-]{1,64}$")


def _pattern(template: str) -> re.Pattern[str]:
    parts = re.split(r"(\{[^}]+\})", template)
    return re.compile(
        "^" + "".join("[^/]+" if p.startswith("{") else re.escape(p) for p in parts) + "$"
    )


_COMPILED = [(method, template, _pattern(template)) for method, template in RULES]


def rule_for(method: str, template: str, metrics_public: bool = False) -> Permission | None:
    """The permission a route needs (None: the route has no rule)."""
    if template == "/metrics" and metrics_public:
        return P.PUBLIC
    return RULES.get(("GET" if method == "HEAD" else method, template))


def match_rule(method: str, path: str) -> str | None:
    """The RULES template this request is for, if any."""
    method = "GET" if method == "HEAD" else method
    for m, template, pattern in _COMPILED:
        if m == method and pattern.match(path):
            return template
    return None


async def require_rule(request: Request) -> None:
    """Dependency of every API route: the route must have a rule, and the
    principal the middleware authenticated must hold its permission."""
    route = request.scope.get("route")
    template = str(getattr(route, "path", ""))
    settings: AuthSettings = request.app.state.deps.auth
    rule = rule_for(request.method, template, settings.metrics_public)
    if rule is None:
        log.error("route_without_auth_rule", method=request.method, path=template)
        raise HTTPException(403, "this route has no access rule")
    if not principal_of(request.state).can(rule):
        raise HTTPException(403, f"needs {rule.value}")


@dataclass
class AuthSettings:
    authenticator: Authenticator
    audit: AuditLog
    metrics_public: bool = False
    refusals: RefusalLimiter = field(default_factory=RefusalLimiter)


class AuthMiddleware:
    def __init__(self, app: ASGIApp, settings: AuthSettings) -> None:
        self.app = app
        self._cfg = settings

    def _rule(self, scope: Scope) -> tuple[str, Permission | None]:
        template = match_rule(scope["method"], scope["path"])
        if template is None:
            return "", UNMATCHED
        return template, rule_for(scope["method"], template, self._cfg.metrics_public)

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        started = time.perf_counter()
        headers = {k.decode("latin-1").lower(): v.decode("latin-1") for k, v in scope["headers"]}
        given_id = headers.get("x-request-id", "")
        request_id = given_id if _REQUEST_ID.match(given_id) else uuid.uuid4().hex
        state = scope.setdefault("state", {})
        state["request_id"] = request_id
        principal: Principal = ANONYMOUS
        status = 500  # what ServerErrorMiddleware sends if an exception gets out
        answered = False
        error: dict[str, str] = {}

        async def send_with_id(message: Message) -> None:
            nonlocal status, answered
            if message["type"] == "http.response.start":
                status, answered = message["status"], True
                message.setdefault("headers", [])
                message["headers"] = [
                    *message["headers"],
                    (b"x-request-id", request_id.encode()),
                ]
            await send(message)

        template, rule = self._rule(scope)
        try:
            if rule is not P.PUBLIC:
                try:
                    principal = await self._cfg.authenticator.authenticate(
                        headers.get("authorization")
                    )
                except AuthError as exc:
                    await self._unauthenticated(headers, scope["method"], template, exc, request_id)
                    await _reply(send_with_id, 401, "unauthenticated", str(exc), bearer=True)
                    return
                if rule is not None and not principal.can(rule):
                    await self._denied(principal, scope["method"], template, rule, request_id)
                    await _reply(
                        send_with_id,
                        403,
                        "forbidden",
                        f"role {principal.role_label or '(none)'} may not do this "
                        f"(needs {rule.value})",
                    )
                    return
            state["principal"] = principal
            # The rest of the request works in the principal's tenant: the
            # database shows it that tenant's rows only (schema/tenancy.py).
            # No principal (a public route): the scope this server runs in.
            if principal.authenticated:
                with tenancy.scope(principal.scope):
                    await self.app(scope, receive, send_with_id)
            else:
                await self.app(scope, receive, send_with_id)
        except DATABASE_UNAVAILABLE as exc:
            if answered:
                raise  # mid-answer: nothing else can be sent
            error["error"] = f"database_unavailable: {type(exc).__name__}"
            await _reply(
                send_with_id,
                503,
                "database_unavailable",
                "the database is not reachable; retry shortly",
                retry_after=True,
            )
        finally:
            (log.warning if error else log.info)(
                "http_request",
                principal=principal.name,
                role=principal.role_label,
                tenant=principal.tenant_id if principal.authenticated else "",
                auth=principal.method,
                method=scope["method"],
                path=scope["path"],
                route=template,
                status=status,
                duration_ms=round((time.perf_counter() - started) * 1000, 1),
                request_id=request_id,
                **error,
            )

    async def _denied(
        self, principal: Principal, method: str, route: str, rule: Permission, request_id: str
    ) -> None:
        await self._refused(
            principal.actor(request_id),
            "http.forbidden",
            method,
            route,
            403,
            {"needs": rule.value},
        )

    async def _unauthenticated(
        self, headers: dict[str, str], method: str, route: str, exc: AuthError, request_id: str
    ) -> None:
        hint = credential_hint(headers.get("authorization"))
        if hint is None:
            return  # no credential, or none shaped like one: the request log has it
        who = Actor(hint, method="bearer", request_id=request_id)
        await self._refused(who, "http.unauthenticated", method, route, 401, {"reason": str(exc)})

    async def _refused(
        self,
        who: Actor,
        action: str,
        method: str,
        route: str,
        status: int,
        detail: dict[str, Any],
    ) -> None:
        target = f"{method} {route or '(no such route)'}"
        skipped = self._cfg.refusals.admit((who.name, target, status))
        if skipped is None:
            return  # this cause is already in the audit log for this window
        try:
            await self._cfg.audit.append(
                AuditEvent(
                    who,
                    action,
                    target,
                    "refused",
                    {**detail, "status": status, "unrecorded_before": skipped},
                )
            )
        except Exception as exc:
            log.error("audit_write_failed", action=action, error=str(exc))


async def _reply(
    send: Send,
    status: int,
    code: str,
    message: str,
    bearer: bool = False,
    retry_after: bool = False,
) -> None:
    body = json.dumps({"code": code, "message": message}).encode()
    headers: list[tuple[bytes, bytes]] = [
        (b"content-type", b"application/json"),
        (b"content-length", str(len(body)).encode()),
    ]
    if bearer:
        headers.append((b"www-authenticate", b'Bearer realm="gridpilot"'))
    if retry_after:
        headers.append((b"retry-after", b"5"))
    await send({"type": "http.response.start", "status": status, "headers": headers})
    await send({"type": "http.response.body", "body": body})


def principal_of(state: Any) -> Principal:
    found = getattr(state, "principal", None)
    return found if isinstance(found, Principal) else ANONYMOUS


def tenant_of(request: Request) -> str | None:
    """The tenant whose objects this request may see (None: every tenant's,
    a platform admin). Every query a route makes filters by it; the
    database's row-level security is the second wall (schema/tenancy.py)."""
    principal = principal_of(request.state)
    return None if principal.platform else principal.tenant_id
