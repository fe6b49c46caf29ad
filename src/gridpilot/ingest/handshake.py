"""The start of an AgentGateway stream: who is calling, what its Hello may
claim, and the session it opens.

The gateway is the one its client certificate names (``guard``); its Hello
must come first, name that gateway, a site it is enrolled for
(``enrollment``) and assets no other gateway holds (``registry``). Each
refusal ends the call with its gRPC status and is audited; what passes
registers the site and its assets and opens the session (superseding the
gateway's older one).
"""

from __future__ import annotations

import asyncio
import uuid
from collections.abc import AsyncIterator

import grpc
import structlog
from google.protobuf.message import DecodeError

from gridpilot.core.errors import Conflict, ValidationFailed
from gridpilot.core.quotas import Quotas
from gridpilot.security.identity import ID_PATTERN, GatewayIdentity
from gridpilot.wire import session as wire_session
from gridpilot.wire.messages import AgentMessage, Hello

from .enrollment import OPEN, Admission, EnrollmentStore
from .guard import GatewayAuthority, Refusal, refuse_gateway
from .quotas import check_registration
from .registry import GatewayStore
from .sessions import AgentSession, SessionRegistry

log = structlog.get_logger(__name__)

HELLO_TIMEOUT_S = 10.0


class Handshake:
    def __init__(
        self,
        store: GatewayStore,
        sessions: SessionRegistry,
        headend_id: str,
        task_queue: str,
        authority: GatewayAuthority | None = None,
        enrollment: EnrollmentStore | None = None,
        quotas: Quotas | None = None,
    ) -> None:
        self._quotas = quotas
        self._store = store
        self._sessions = sessions
        self._headend_id = headend_id
        self._task_queue = task_queue  # where this replica's deliveries run
        self._authority = authority
        self._enrollment = enrollment

    async def open(
        self,
        request_iterator: AsyncIterator[AgentMessage],
        context: grpc.aio.ServicerContext,
    ) -> AgentSession:
        """The session of an admitted agent, attached to this headend; a
        refused one ends the call (``context.abort``)."""
        ident = await self._identify(context)
        hello = await self._hello(request_iterator, context)
        if ident is not None and hello.gateway_id != ident.gateway_id:
            # Identity comes from the certificate only; a Hello naming another
            # gateway is an impersonation attempt.
            message = (
                f"hello.gateway_id {hello.gateway_id!r} is not this certificate's gateway "
                f"{ident.gateway_id!r}"
            )
            await refuse_gateway(
                self._authority,
                ident.gateway_id,
                "gateway.id_mismatch",
                hello.gateway_id,
                message,
                ident.fingerprint,
            )
            await context.abort(grpc.StatusCode.PERMISSION_DENIED, message)
        admission = await self._admit(ident, hello, context)
        over = await check_registration(
            self._quotas,
            self._store.engine,
            admission.tenant_id,
            hello.gateway_id,
            [a.asset_id for a in hello.assets],
        )
        if over is not None:
            log.warning("hello_quota_exceeded", gateway=hello.gateway_id, limit=over.limit.value)
            await context.abort(grpc.StatusCode.RESOURCE_EXHAUSTED, over.message)
        asset_ids = await self._register(hello, admission, context)
        session = AgentSession(
            session_id=str(uuid.uuid4()),
            gateway_id=hello.gateway_id,
            site_id=hello.site_id,
            peer=context.peer() or "",
            asset_ids=asset_ids,
            fingerprint=ident.fingerprint if ident is not None else None,
            enrolled_only=admission.by_admin_only,
            tenant_id=admission.tenant_id,
        )
        async with self._sessions.opening(session.gateway_id):
            ended = await self._store.open_session(
                session.session_id,
                session.gateway_id,
                session.site_id,
                self._headend_id,
                self._task_queue,
                session.peer,
                hello.agent_version,
            )
            self._sessions.attach(session)
        log.info(
            "agent_connected",
            gateway=session.gateway_id,
            site=session.site_id,
            session=session.session_id,
            peer=session.peer,
            assets=len(asset_ids),
            superseded=ended,
        )
        return session

    async def _hello(
        self,
        request_iterator: AsyncIterator[AgentMessage],
        context: grpc.aio.ServicerContext,
    ) -> Hello:
        """The first message, which must be a Hello naming a gateway and a site
        in text the database can store."""
        try:
            first = await asyncio.wait_for(anext(request_iterator), HELLO_TIMEOUT_S)
        except (TimeoutError, StopAsyncIteration):
            await context.abort(grpc.StatusCode.INVALID_ARGUMENT, "hello: expected Hello first")
            raise AssertionError("unreachable") from None
        except DecodeError:
            await context.abort(
                grpc.StatusCode.INVALID_ARGUMENT,
                "hello: the first message is not a valid gridpilot.v1.AgentMessage",
            )
            raise AssertionError("unreachable") from None
        if first.WhichOneof("body") != "hello":
            await context.abort(grpc.StatusCode.INVALID_ARGUMENT, "hello: expected Hello first")
        hello = first.hello
        for name in ("gateway_id", "site_id"):
            if not getattr(hello, name):
                await context.abort(grpc.StatusCode.INVALID_ARGUMENT, f"hello.{name} is empty")
        try:
            # NUL or overlong: a clean refusal, not a database error
            wire_session.check_hello_text(hello)
        except ValidationFailed as exc:
            await context.abort(grpc.StatusCode.INVALID_ARGUMENT, exc.message)
        return hello

    async def _admit(
        self, ident: GatewayIdentity | None, hello: Hello, context: grpc.aio.ServicerContext
    ) -> Admission:
        """A site belongs to the gateways enrolled for it or whose certificate
        names it; a Hello for any other site is refused (and audited). In
        plain-text dev mode there is no certificate and no check."""
        if ident is None or self._enrollment is None:
            return OPEN
        if not ID_PATTERN.match(hello.site_id):
            # Enrollments only ever name such ids; this also keeps the
            # refusal's audit row small.
            await context.abort(
                grpc.StatusCode.INVALID_ARGUMENT,
                "hello.site_id is not a site id (1-64 letters, digits, '.', '_' or '-')",
            )
        admission = await self._enrollment.admission(hello.gateway_id, hello.site_id, ident.site_id)
        if not admission.enrolled:
            message = f"gateway {hello.gateway_id!r} is not enrolled for site {hello.site_id!r}"
            if ident.site_id is not None:
                message += f" (its certificate names site {ident.site_id!r})"
            else:
                message += (
                    f"; an admin enrolls it: gridpilot gateway enroll {hello.gateway_id} "
                    f"--site {hello.site_id}"
                )
            await refuse_gateway(
                self._authority, hello.gateway_id, "gateway.site_refused", hello.site_id, message
            )
            await context.abort(grpc.StatusCode.PERMISSION_DENIED, message)
        if admission.tenant_refusal is not None:
            await refuse_gateway(
                self._authority,
                hello.gateway_id,
                "gateway.tenant_suspended",
                hello.site_id,
                admission.tenant_refusal,
            )
            await context.abort(grpc.StatusCode.PERMISSION_DENIED, admission.tenant_refusal)
        return admission

    async def _register(
        self, hello: Hello, admission: Admission, context: grpc.aio.ServicerContext
    ) -> frozenset[str]:
        """Register the site, the gateway and its assets; the ids of the
        assets. An asset bound to another gateway refuses the Hello; one beyond
        the enrollment's bound is kept, held for an admin (and audited)."""
        try:
            assets = [
                wire_session.asset_from_pb(a, hello.site_id, i) for i, a in enumerate(hello.assets)
            ]
            ids = [a.asset_id for a in assets]
            if len(set(ids)) != len(ids):
                raise ValidationFailed("hello.assets has duplicate asset_id values")
            held = await self._store.register(
                hello.gateway_id,
                hello.site_id,
                hello.site_name or hello.site_id,
                hello.agent_version,
                assets,
                admission,
            )
        except ValidationFailed as exc:
            await context.abort(grpc.StatusCode.INVALID_ARGUMENT, exc.message)
        except Conflict as exc:
            await refuse_gateway(
                self._authority,
                hello.gateway_id,
                "gateway.asset_claim_refused",
                ",".join(a.asset_id for a in hello.assets),
                exc.message,
            )
            await context.abort(grpc.StatusCode.PERMISSION_DENIED, exc.message)
        if held:
            await refuse_gateway(
                self._authority,
                hello.gateway_id,
                "asset.held",
                ",".join(held),
                "held for an admin's approval (POST /api/v1/assets/{id}/approve): "
                "beyond the gateway's max_asset_kw for this site, or none is set",
            )
        return frozenset(ids)

    async def _identify(self, context: grpc.aio.ServicerContext) -> GatewayIdentity | None:
        """The gateway named by the client certificate (None in plain-text dev mode)."""
        if self._authority is None:
            return None
        found = await self._authority.identify(context.auth_context(), context.peer() or "")
        if isinstance(found, Refusal):
            await context.abort(found.code, found.message)
            raise AssertionError("unreachable")
        return found
