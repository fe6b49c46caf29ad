"""Test helpers: a scripted agent on the real gRPC contract, polling, demo assets."""

from __future__ import annotations

import asyncio
import contextlib
import time
from collections.abc import AsyncIterator, Awaitable, Callable
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import TYPE_CHECKING, Any

import grpc
import httpx

from .waiting import wait_for as wait_for
from .waiting import wait_for_sync as wait_for_sync

if TYPE_CHECKING:
    from pathlib import Path

    from fastapi import FastAPI
    from sqlalchemy.ext.asyncio import AsyncEngine

    from gridpilot.ops.embedded import TemporalDevServer
    from gridpilot.ops.headend import Headend
    from gridpilot.ops.settings import Settings
    from gridpilot.security.audit import AuditLog
    from gridpilot.security.pki import Issued, Pki
    from gridpilot.security.tokens import TokenStore


TEST_MAX_ASSET_KW = 1000.0  # the enrollment bound of test agents (demo assets fit)


class TestPki:
    """A throwaway CA with a headend certificate for 127.0.0.1, and gateway
    client certificates issued on demand."""

    __test__ = False  # not a test class

    def __init__(self, root: Path) -> None:
        from gridpilot.security.pki import Pki

        self.pki: Pki = Pki.init(root)
        self.headend = self.pki.issue_headend(["localhost"], ["127.0.0.1"])
        self._gateways: dict[str, Issued] = {}

    def gateway(self, gateway_id: str) -> Issued:
        if gateway_id not in self._gateways:
            self._gateways[gateway_id] = self.pki.issue_gateway(gateway_id)
        return self._gateways[gateway_id]

    def credentials(
        self,
        gateway_id: str | None = None,
        cert_pem: bytes | None = None,
        key_pem: bytes | None = None,
    ) -> grpc.ChannelCredentials:
        """Client credentials: a gateway's certificate, or the given PEMs (or none)."""
        if gateway_id is not None:
            issued = self.gateway(gateway_id)
            cert_pem, key_pem = issued.cert_file.read_bytes(), issued.key_file.read_bytes()
        return grpc.ssl_channel_credentials(
            self.pki.ca_file.read_bytes(), private_key=key_pem, certificate_chain=cert_pem
        )


@dataclass
class RunningHeadend:
    headend: Headend
    settings: Settings
    api: httpx.AsyncClient  # sends an admin token
    grpc_address: str
    pki: TestPki | None = None
    admin_token: str = ""

    def agent(self, enroll: bool = True, **kw: Any) -> ScriptedAgent:
        """A scripted agent with a client certificate for its gateway id,
        enrolled for its site (bound TEST_MAX_ASSET_KW) before it connects
        unless ``enroll=False``."""
        return ScriptedAgent(
            self.grpc_address, pki=self.pki, enroll=self.enroll if enroll else None, **kw
        )

    async def enroll(
        self, gateway_id: str, site_id: str, max_asset_kw: float | None = TEST_MAX_ASSET_KW
    ) -> None:
        from gridpilot.schema import tenancy
        from gridpilot.security.audit import Actor

        with tenancy.scope(tenancy.SYSTEM):  # the test acts as the operator, for every tenant
            await self.headend.enrollment.enroll(site_id, gateway_id, max_asset_kw, Actor("test"))

    async def token(self, role: str, name: str | None = None) -> str:
        from gridpilot.schema import tenancy
        from gridpilot.security.audit import Actor

        with tenancy.scope(tenancy.SYSTEM):
            _, secret = await self.headend.tokens.create(
                name or f"test-{role}-{time.monotonic_ns()}", role, Actor("test")
            )
        return secret

    def client(self, token: str | None) -> httpx.AsyncClient:
        """An API client with this bearer token (None: no Authorization header)."""
        headers = {"Authorization": f"Bearer {token}"} if token else {}
        return httpx.AsyncClient(base_url=str(self.api.base_url), headers=headers, timeout=10)


@contextlib.asynccontextmanager
async def running_headend(
    database_url: str,
    temporal_address: str,
    task_queue: str,
    pki: TestPki,
    replica: str | None = None,
    **settings_: Any,
) -> AsyncIterator[RunningHeadend]:
    """A whole headend (gRPC + API + worker) on free ports, secure as in
    production: mTLS on gRPC (``.agent()`` has a certificate), gateway
    enrollment signed by the test CA, and bearer tokens on REST (``.api``
    sends an admin token; ``.token(role)``). ``replica``: a name for a
    second headend on the same database. Keyword arguments replace its
    settings."""
    from uuid import uuid4

    from gridpilot.ops.headend import Headend
    from gridpilot.ops.processes import free_port
    from gridpilot.ops.settings import Settings
    from gridpilot.schema import tenancy
    from gridpilot.security.audit import Actor

    settings = Settings(
        _env_file=None,  # type: ignore[call-arg]
        database_url=database_url,
        temporal_address=temporal_address,
        task_queue=task_queue,
        headend_id=f"test-{uuid4().hex[:8]}",
        api_port=free_port(),
        grpc_listen=f"127.0.0.1:{free_port()}",
        ack_timeout_s=5,
        delivery_timeout_s=10,
        grpc_tls_cert_file=pki.headend.cert_file,
        grpc_tls_key_file=pki.headend.key_file,
        grpc_client_ca_file=pki.pki.ca_file,
        pki_dir=pki.pki.root,  # its CA signs enrolling gateways' CSRs
        revocation_check_s=0.5,
        agent_silence_s=3600,  # ScriptedAgent sends no heartbeats; silence tests set it small
    ).model_copy(update=settings_)
    h = Headend(settings)
    task = asyncio.create_task(h.run())
    base = f"http://127.0.0.1:{settings.api_port}"
    async with httpx.AsyncClient(base_url=base, timeout=10) as api:

        async def ready() -> bool:
            if task.done():
                task.result()  # surfaces the start-up error
            with contextlib.suppress(httpx.HTTPError):
                return (await api.get("/readyz")).status_code == 200
            return False

        try:
            await wait_for(ready, timeout=60)
            # A second replica on the same database names its admin token apart.
            name = "test-admin" if replica is None else f"test-admin-{replica}"
            with tenancy.scope(tenancy.SYSTEM):
                admin_token = (await h.tokens.create(name, "admin", Actor("test")))[1]
            api.headers["Authorization"] = f"Bearer {admin_token}"
            yield RunningHeadend(
                h, settings, api, settings.grpc_listen, pki=pki, admin_token=admin_token
            )
        finally:
            h.stop()
            await asyncio.wait_for(task, 30)


@dataclass
class ScriptedAgent:
    """A test peer on a real gRPC stream: sends what the test says, keeps what it gets."""

    address: str
    gateway_id: str = "gw-1"
    site_id: str = "site-1"
    received: list[Any] = field(default_factory=list)
    _queue: asyncio.Queue[Any] = field(default_factory=asyncio.Queue)
    _channel: grpc.aio.Channel | None = None
    _call: Any = None
    _reader: asyncio.Task[None] | None = None
    error: grpc.RpcError | None = None
    pki: TestPki | None = None  # issues this gateway's client certificate
    credentials: grpc.ChannelCredentials | None = None  # or exactly these (TLS)
    site_name: str = ""  # the Hello's site_name (default: the site id, title-cased)
    # Called with (gateway_id, site_id) before the Hello: enrolls the gateway.
    enroll: Callable[[str, str], Awaitable[None]] | None = None

    async def connect(self, assets: list[Any]) -> Any:
        from gridpilot.schema.pb import agent_pb2 as pb
        from gridpilot.schema.pb import agent_pb2_grpc as pb_grpc

        if self.enroll is not None:
            await self.enroll(self.gateway_id, self.site_id)

        credentials = self.credentials
        if credentials is None and self.pki is not None:
            credentials = self.pki.credentials(self.gateway_id)
        self._channel = (
            grpc.aio.insecure_channel(self.address)
            if credentials is None
            else grpc.aio.secure_channel(self.address, credentials)
        )
        stub = pb_grpc.AgentGatewayStub(self._channel)
        await self.send(
            pb.AgentMessage(
                hello=pb.Hello(
                    gateway_id=self.gateway_id,
                    site_id=self.site_id,
                    site_name=self.site_name or self.site_id.title(),
                    agent_version="test",
                    assets=assets,
                )
            )
        )

        async def outgoing() -> AsyncIterator[Any]:
            while True:
                msg = await self._queue.get()
                if msg is None:
                    return
                yield msg

        self._call = stub.Connect(outgoing())
        self._reader = asyncio.create_task(self._read())
        return await wait_for(lambda: self.first("welcome") or self.error, timeout=10)

    async def _read(self) -> None:
        try:
            async for msg in self._call:
                self.received.append(msg)
        except grpc.RpcError as exc:
            self.error = exc

    async def send(self, msg: Any) -> None:
        await self._queue.put(msg)

    def of(self, kind: str) -> list[Any]:
        return [getattr(m, kind) for m in self.received if m.WhichOneof("body") == kind]

    def first(self, kind: str) -> Any:
        found = self.of(kind)
        return found[0] if found else None

    @property
    def ended(self) -> bool:
        return self._reader is not None and self._reader.done()

    async def cut(self) -> None:
        """Drop the connection without ending the stream, as a dead network does."""
        if self._channel is not None:
            await self._channel.close()

    async def close(self) -> None:
        await self._queue.put(None)
        if self._reader is not None:
            self._reader.cancel()
            with contextlib.suppress(asyncio.CancelledError, Exception):
                await self._reader
        if self._channel is not None:
            await self._channel.close()


def now_pb() -> Any:
    from gridpilot.wire.times import ts_to_pb

    return ts_to_pb(datetime.now(UTC))


def demo_assets() -> list[Any]:
    from gridpilot.schema.pb import agent_pb2 as pb

    return [
        pb.AssetInfo(
            asset_id="bess-1",
            name="Battery",
            asset_type=pb.ASSET_TYPE_BESS,
            p_min_kw=-100,
            p_max_kw=100,
            capacity_kwh=200,
        ),
        pb.AssetInfo(
            asset_id="pv-1",
            name="PV",
            asset_type=pb.ASSET_TYPE_PV,
            p_min_kw=0,
            p_max_kw=50,
            default_p_kw=50,
        ),
        pb.AssetInfo(
            asset_id="ev-1",
            name="EV charger",
            asset_type=pb.ASSET_TYPE_EV_CHARGER,
            p_min_kw=-22,
            p_max_kw=0,
        ),
    ]


def agent_ack(sp: Any, state: int, **kw: Any) -> Any:
    """The agent's DispatchAck for a Setpoint it received."""
    from gridpilot.schema.pb import agent_pb2 as pb

    return pb.AgentMessage(
        dispatch_ack=pb.DispatchAck(
            dispatch_id=sp.dispatch_id, asset_id=sp.asset_id, state=state, time=now_pb(), **kw
        )
    )


async def apply_setpoints(agent: ScriptedAgent, setpoints: list[Any]) -> None:
    """The agent accepts and applies each setpoint (the dispatches go active)."""
    from gridpilot.schema.pb import agent_pb2 as pb

    for sp in setpoints:
        await agent.send(agent_ack(sp, pb.ACK_STATE_ACCEPTED))
        await agent.send(agent_ack(sp, pb.ACK_STATE_APPLIED, applied_p_kw=sp.p_kw))


EVENT_STREAMS = {"/api/v1/events"}


async def call(client: httpx.AsyncClient, **request: Any) -> httpx.Response:
    """``client.request``; an event stream never ends, and the in-process
    transport reads a body whole, so a stream that was let through (no 4xx
    within 3 s: authentication and authorization answer at once) is answered
    as the 200 it began with."""
    if str(request.get("url", "")).split("?")[0] not in EVENT_STREAMS:
        return await client.request(**request)
    try:
        async with asyncio.timeout(3):
            return await client.request(**request)
    except TimeoutError:
        return httpx.Response(200, headers={"content-type": "text/event-stream"})


async def agents_connected(api: httpx.AsyncClient, connected: bool) -> bool:
    """Every agent the headend knows is (or is not) connected, and there is one."""
    agents = (await api.get("/api/v1/agents")).json()
    return bool(agents) and all(a["connected"] is connected for a in agents)


async def dispatch_in_state(api: httpx.AsyncClient, dispatch_id: str, state: str) -> bool:
    r = await api.get(f"/api/v1/dispatches/{dispatch_id}")
    return r.status_code == 200 and r.json()["state"] == state


async def dispatch_up_to(
    api: httpx.AsyncClient,
    agent: ScriptedAgent,
    state: str = "active",
    p_kw: float = 20,
    duration_s: int = 600,
) -> tuple[str, Any]:
    """Submit a dispatch for bess-1 and play the agent's acks until the record
    says ``state`` ("acked" or "active"): (its id, the Setpoint the agent got)."""
    from gridpilot.schema.pb import agent_pb2 as pb

    r = await api.post(
        "/api/v1/dispatches", json={"asset_id": "bess-1", "p_kw": p_kw, "duration_s": duration_s}
    )
    assert r.status_code == 201, r.text
    dispatch_id = r.json()["id"]
    sp = await wait_for(lambda: agent.first("setpoint"))
    await agent.send(agent_ack(sp, pb.ACK_STATE_ACCEPTED))
    if state == "active":
        await agent.send(agent_ack(sp, pb.ACK_STATE_APPLIED, applied_p_kw=p_kw))
    await wait_for(lambda: dispatch_in_state(api, dispatch_id, state))
    return dispatch_id, sp


async def create_token(database_url: str, role: str = "admin", name: str | None = None) -> str:
    """An API token straight in the database (as `gridpilot token create` does)."""
    from gridpilot.schema import db, tenancy
    from gridpilot.security.audit import Actor, AuditLog
    from gridpilot.security.tokens import TokenStore

    engine = db.async_engine(database_url)
    try:
        audit = AuditLog(engine)
        name = name or f"test-{role}-{time.monotonic_ns()}"
        with tenancy.scope(tenancy.SYSTEM):
            return (await TokenStore(engine, audit).create(name, role, Actor("test")))[1]
    finally:
        await engine.dispose()


def tls_env(pki: TestPki) -> dict[str, str]:
    """GRIDPILOT_* variables that give a headend process mTLS from this test CA."""
    return {
        "GRIDPILOT_GRPC_TLS_CERT_FILE": str(pki.headend.cert_file),
        "GRIDPILOT_GRPC_TLS_KEY_FILE": str(pki.headend.key_file),
        "GRIDPILOT_GRPC_CLIENT_CA_FILE": str(pki.pki.ca_file),
    }


def db_enroller(
    database_url: str, max_asset_kw: float | None = TEST_MAX_ASSET_KW
) -> Callable[[str, str], Awaitable[None]]:
    """A ScriptedAgent ``enroll`` hook for a headend in another process: enrolls
    the gateway for its site straight in the database."""

    async def enroll(gateway_id: str, site_id: str) -> None:
        from gridpilot.ingest.enrollment import EnrollmentStore
        from gridpilot.schema import db, tenancy
        from gridpilot.security.audit import Actor, AuditLog

        engine = db.async_engine(database_url)
        try:
            store = EnrollmentStore(engine, AuditLog(engine))
            with tenancy.scope(tenancy.SYSTEM):
                await store.enroll(site_id, gateway_id, max_asset_kw, Actor("test"))
        finally:
            await engine.dispose()

    return enroll


def api_app(engine: AsyncEngine, audit: AuditLog, tokens: TokenStore, **auth: Any) -> FastAPI:
    """The REST app on a real database without Temporal (submits answer 503),
    for tests of the HTTP surface; ``auth`` goes to AuthSettings."""
    from gridpilot.api.app import ApiDeps, create_app
    from gridpilot.api.auth import AuthSettings
    from gridpilot.api.dispatch_service import DispatchOptions, DispatchService
    from gridpilot.security.authn import Authenticator

    from .stores import security_deps

    security = security_deps(engine, audit, tokens)
    return create_app(
        ApiDeps(
            engine=engine,
            dispatches=DispatchService(engine, None, DispatchOptions(task_queue="none"), audit),
            security=security,
            auth=AuthSettings(Authenticator(tokens, tenants=security.tenants), audit, **auth),
        )
    )


def mixed_site_assets() -> list[Any]:
    """The workflow tests' site: two batteries and a PV plant, bess-2's fresh
    telemetry saying it can discharge only 20 kW (150 kW splits 81.25 / 20 /
    48.75 kW, what bess-2 cannot take re-spread over the others)."""
    from gridpilot.workflows.models import SplitAsset

    return [
        SplitAsset(asset_id="bess-1", asset_type="bess", p_min_kw=-100.0, p_max_kw=100.0),
        SplitAsset(
            asset_id="bess-2",
            asset_type="bess",
            p_min_kw=-50.0,
            p_max_kw=50.0,
            available_charge_kw=50.0,
            available_discharge_kw=20.0,
        ),
        SplitAsset(asset_id="pv-1", asset_type="pv", p_min_kw=0.0, p_max_kw=60.0),
    ]


@contextlib.asynccontextmanager
async def own_temporal(db_file: Path) -> AsyncIterator[TemporalDevServer]:
    """A Temporal dev server of the test's own (to stop and start again: its
    state is kept in ``db_file``), serving when this yields, stopped after."""
    from gridpilot.ops.embedded import TemporalDevServer
    from gridpilot.ops.processes import free_port
    from gridpilot.workflows.constants import SEARCH_ATTRIBUTES

    temporal = TemporalDevServer(
        port=free_port(),
        ui_port=None,
        db_file=db_file,
        search_attributes={k.name: "Keyword" for k in SEARCH_ATTRIBUTES},
    )
    temporal.start(timeout=60)
    try:
        await temporal.wait_ready(timeout=60)
        yield temporal
    finally:
        temporal.stop()
