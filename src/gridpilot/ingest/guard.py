"""Who may speak on the AgentGateway: the identity check at connect, and a
watch over live streams.

grpcio checks certificates only during the TLS handshake; a stream that is
already open keeps working after its certificate is revoked. The
:class:`SessionGuard` therefore re-checks a gateway's live sessions when a
change to it is announced (``schema.events``: PostgreSQL NOTIFY, heard by
every replica; one listening connection per process, not a query per
stream), and all of them every ``revocation_check_s`` in case an
announcement was missed (the listener was reconnecting): a revoked
certificate closes the stream, so does a withdrawn site enrollment, and an
asset re-bound to another gateway leaves this session's set.
"""

from __future__ import annotations

import asyncio
from collections.abc import Mapping
from dataclasses import dataclass

import grpc
import psycopg
import structlog
from cryptography import x509
from psycopg import sql
from sqlalchemy import select
from sqlalchemy.ext.asyncio import AsyncConnection, AsyncEngine

from gridpilot.core.sessions import EndReason
from gridpilot.schema import tables as t
from gridpilot.schema.db import DATABASE_OR_NETWORK_DOWN
from gridpilot.schema.events import GATEWAY_CHANGED
from gridpilot.security.audit import Actor, AuditEvent, AuditLog
from gridpilot.security.certs import CertificateRegistry
from gridpilot.security.identity import (
    GatewayIdentity,
    IdentityError,
    fingerprint,
    identity_from_auth_context,
)

from .refusals import Cause, RefusalLimiter
from .sessions import AgentSession, SessionRegistry

log = structlog.get_logger(__name__)


@dataclass(frozen=True)
class Refusal:
    code: grpc.StatusCode
    message: str


class GatewayAuthority:
    """Identity from the TLS auth context only; None when the AgentGateway runs
    plain-text (insecure dev mode), where Hello is taken at its word."""

    def __init__(
        self,
        certs: CertificateRegistry,
        audit: AuditLog,
        trust_domain: str | None,
        limiter: RefusalLimiter | None = None,
    ) -> None:
        self.certs = certs
        self.audit = audit
        self.trust_domain = trust_domain
        self._limiter = limiter or RefusalLimiter()

    @property
    def mtls(self) -> bool:
        return self.trust_domain is not None

    async def identify(
        self, auth_context: Mapping[str, list[bytes]], peer: str
    ) -> GatewayIdentity | Refusal | None:
        if self.trust_domain is None:
            return None
        try:
            ident = identity_from_auth_context(dict(auth_context), self.trust_domain)
        except IdentityError as exc:
            host = peer.rsplit(":", 1)[0]  # without the port: retries are one actor
            await self.refuse(
                Actor(f"peer:{host}", method="mtls"),
                "gateway.identity_refused",
                "",
                str(exc),
                fingerprint=peer_fingerprint(auth_context),
                peer=peer,
            )
            return Refusal(grpc.StatusCode.UNAUTHENTICATED, f"client certificate refused: {exc}")
        if not await self.certs.admit(ident):
            await self.refuse(
                gateway_actor(ident.gateway_id),
                "gateway.revoked_refused",
                ident.gateway_id,
                "certificate is revoked",
                fingerprint=ident.fingerprint,
            )
            return Refusal(grpc.StatusCode.UNAUTHENTICATED, "client certificate is revoked")
        return ident

    async def refuse(
        self,
        actor: Actor,
        action: str,
        target: str,
        reason: str,
        fingerprint: str = "",
        **detail: object,
    ) -> None:
        """Log every refusal; audit it once per distinct cause a minute
        (ingest.refusals): retries repeat it, another certificate or reason
        does not."""
        log.warning(action, actor=actor.name, target=target, reason=reason)
        if not self._limiter.admit(Cause(action, actor.name, target, fingerprint, reason)):
            return
        if fingerprint:
            detail["fingerprint"] = fingerprint
        try:
            await self.audit.append(
                AuditEvent(actor, action, target, "refused", {"reason": reason, **detail})
            )
        except Exception as exc:  # the refusal stands even if it cannot be recorded
            log.error("audit_write_failed", action=action, error=str(exc))


def gateway_actor(gateway_id: str) -> Actor:
    return Actor(f"gateway:{gateway_id}", "gateway", "mtls")


async def refuse_gateway(
    authority: GatewayAuthority | None,
    gateway_id: str,
    action: str,
    target: str,
    reason: str,
    fingerprint: str = "",
) -> None:
    """A refused Hello or message of a connected gateway: audited through the
    authority (once per cause); in plain-text dev mode, which has none, only
    logged."""
    if authority is not None:
        await authority.refuse(gateway_actor(gateway_id), action, target, reason, fingerprint)
    else:
        log.warning(action, gateway=gateway_id, target=target, reason=reason)


def peer_fingerprint(auth_context: Mapping[str, list[bytes]]) -> str:
    """SHA-256 of the peer's client certificate ("" when it sent none or it
    cannot be read): what tells one refused certificate from another."""
    pems = auth_context.get("x509_pem_cert") or []
    try:
        return fingerprint(x509.load_pem_x509_certificate(pems[0])) if pems else ""
    except ValueError:
        return ""


class SessionGuard:
    def __init__(
        self,
        engine: AsyncEngine,
        sessions: SessionRegistry,
        certs: CertificateRegistry,
        interval_s: float,
    ) -> None:
        self._engine = engine
        self._sessions = sessions
        self._certs = certs
        self._interval = interval_s
        self.listening = asyncio.Event()  # set while announcements are heard

    async def run(self) -> None:
        """The backstop: every live session, every interval."""
        while True:
            await asyncio.sleep(self._interval)
            try:
                await self.check()
            except Exception as exc:
                log.warning("session_guard_check_failed", error=str(exc))

    async def listen(self, database_url: str) -> None:
        """Check a gateway's sessions as soon as a change to it is announced.
        A lost listening connection is made again (backoff to 30 s), then all
        sessions are checked, for what was announced meanwhile."""
        failures = 0
        while True:
            try:
                conn = await psycopg.AsyncConnection.connect(
                    database_url, autocommit=True, connect_timeout=5
                )
                async with conn:
                    await conn.execute(sql.SQL("LISTEN {}").format(sql.Identifier(GATEWAY_CHANGED)))
                    if failures:
                        log.info("session_guard_listening_again", after_failures=failures)
                        await self.check()
                    failures = 0
                    self.listening.set()
                    async for note in conn.notifies():
                        await self._check_announced(note.payload)
            except Exception as exc:  # the database, or a bug: never ends the headend
                self.listening.clear()
                failures += 1
                if failures == 1:
                    expected = isinstance(exc, DATABASE_OR_NETWORK_DOWN)
                    (log.warning if expected else log.exception)(
                        "session_guard_not_listening", error=str(exc).strip()[:200]
                    )
                await asyncio.sleep(min(30.0, 0.5 * 2 ** min(failures, 6)))

    async def _check_announced(self, gateway_id: str) -> None:
        try:
            await self.check({gateway_id})
        except Exception as exc:  # the backstop poll tries again
            log.warning("session_guard_check_failed", gateway=gateway_id, error=str(exc))

    async def check(self, gateways: set[str] | None = None) -> None:
        """Check the live sessions (of ``gateways`` only, if given)."""
        live = [s for s in self._sessions.all() if gateways is None or s.gateway_id in gateways]
        if not live:
            return
        revoked = await self._certs.revoked_among(s.fingerprint for s in live if s.fingerprint)
        for s in live:
            if s.fingerprint in revoked:
                log.warning("agent_certificate_revoked", gateway=s.gateway_id, session=s.session_id)
                s.close(EndReason.REVOKED)
        bound: dict[str, set[str]] = {s.gateway_id: set() for s in live}
        async with self._engine.connect() as conn:
            await self._check_enrolled(conn, [s for s in live if s.enrolled_only])
            await self._check_tenants(conn, live)
            rows = await conn.execute(
                select(t.assets.c.id, t.assets.c.gateway_id).where(
                    t.assets.c.gateway_id.in_(list(bound))
                )
            )
            for asset_id, gateway_id in rows:
                bound[gateway_id].add(asset_id)
        for s in live:
            now_bound = frozenset(s.hello_asset_ids & bound[s.gateway_id])
            if now_bound != s.asset_ids:
                log.info(
                    "agent_assets_rebound",
                    gateway=s.gateway_id,
                    removed=sorted(s.asset_ids - now_bound),
                )
                s.asset_ids = now_bound

    async def _check_tenants(self, conn: AsyncConnection, live: list[AgentSession]) -> None:
        """End the sessions of gateways whose tenant was suspended since."""
        g, ten = t.gateways, t.tenants
        rows = await conn.execute(
            select(g.c.id).where(
                g.c.id.in_({s.gateway_id for s in live}),
                g.c.tenant_id.in_(select(ten.c.id).where(ten.c.suspended_at.is_not(None))),
            )
        )
        suspended = {r.id for r in rows}
        for s in live:
            if s.gateway_id in suspended:
                log.warning("agent_tenant_suspended", gateway=s.gateway_id, site=s.site_id)
                s.close(EndReason.TENANT_SUSPENDED)

    async def _check_enrolled(self, conn: AsyncConnection, watched: list[AgentSession]) -> None:
        """End the sessions whose site rested on an enrollment an admin has
        since withdrawn (the withdrawal itself is audited)."""
        if not watched:
            return
        e = t.gateway_enrollments
        rows = await conn.execute(
            select(e.c.site_id, e.c.gateway_id).where(
                e.c.gateway_id.in_({s.gateway_id for s in watched})
            )
        )
        enrolled = {(r.site_id, r.gateway_id) for r in rows}
        for s in watched:
            if (s.site_id, s.gateway_id) not in enrolled:
                log.warning("agent_unenrolled", gateway=s.gateway_id, site=s.site_id)
                s.close(EndReason.UNENROLLED)
