"""What the dispatch benchmarks share: a headend stack started in a temp dir
(embedded PostgreSQL, the Temporal dev server, a headend child process with
mutual TLS), bench gateways enrolled for their sites, an admin token, and a
scripted agent that answers setpoints as a well-behaved edge agent does.

Not a benchmark itself (its name starts with ``_``): ``dispatch.py`` and
``fanout.py`` import it.
"""

from __future__ import annotations

import asyncio
import contextlib
import os
import shutil
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path

import grpc
import httpx
import psycopg

from gridpilot.ingest.enrollment import EnrollmentStore
from gridpilot.ops.embedded import EmbeddedPostgres, TemporalDevServer
from gridpilot.ops.processes import free_port, log_tail
from gridpilot.schema import db
from gridpilot.schema.pb import agent_pb2 as pb
from gridpilot.security.audit import Actor, AuditLog
from gridpilot.security.pki import Pki
from gridpilot.security.tokens import TokenStore
from gridpilot.workflows.constants import SEARCH_ATTRIBUTES

CONNECT = "/gridpilot.v1.AgentGateway/Connect"
HEARTBEAT_S = 5.0


def pct(values: list[float], p: float) -> float:
    values = sorted(values)
    return values[min(len(values) - 1, int(p / 100 * len(values)))] if values else float("nan")


def cpu_seconds(pid: int, children: bool = True) -> float:
    """User + system CPU of a process (and of its children it has reaped)."""
    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    ticks = sum(int(x) for x in fields[11 : 15 if children else 13])
    return ticks / os.sysconf("SC_CLK_TCK")


@dataclass
class Stack:
    work: Path
    pg: EmbeddedPostgres
    temporal: TemporalDevServer
    database_url: str
    api: str
    grpc_address: str
    pki: Pki
    headend: subprocess.Popen[bytes]
    token: str = ""

    def client(self) -> httpx.AsyncClient:
        return httpx.AsyncClient(
            base_url=self.api, headers={"authorization": f"Bearer {self.token}"}, timeout=60
        )

    def credentials(self, gateway_id: str) -> grpc.ChannelCredentials:
        issued = self.pki.issue_gateway(gateway_id)
        return grpc.ssl_channel_credentials(
            self.pki.ca_file.read_bytes(),
            private_key=issued.key_file.read_bytes(),
            certificate_chain=issued.cert_file.read_bytes(),
        )

    def headend_log(self) -> str:
        return log_tail(self.work / "headend.log")


async def _prepare(url: str, sites: dict[str, str]) -> str:
    """Each gateway enrolled for its site (assets up to 1 MW taken without an
    approval), as an admin would; an admin token."""
    engine = db.async_engine(url)
    try:
        audit = AuditLog(engine)
        store = EnrollmentStore(engine, audit)
        for gateway_id, site_id in sites.items():
            await store.enroll(site_id, gateway_id, 1000.0, Actor("bench"))
        return (await TokenStore(engine, audit).create("bench", "admin", Actor("bench")))[1]
    finally:
        await engine.dispose()


@contextlib.contextmanager
def stack(
    prefix: str,
    sites: dict[str, str],
    *,
    database: str | None = None,
    databases: tuple[str, ...] = (),
    timescaledb: bool = False,
    **env: str,
) -> Iterator[Stack]:
    """The whole headend side, torn down on exit; ``sites`` maps gateway -> site.
    The headend uses ``database`` (created; default the server's own), and
    ``databases`` are created beside it (e.g. for a baseline)."""
    work = Path(tempfile.mkdtemp(prefix=f"gridpilot-{prefix}-"))
    pg = EmbeddedPostgres(work / "pg", free_port(), timescaledb=timescaledb)
    temporal = TemporalDevServer(
        port=free_port(),
        ui_port=None,
        search_attributes={k.name: "Keyword" for k in SEARCH_ATTRIBUTES},
    )
    headend: subprocess.Popen[bytes] | None = None
    try:
        pg.start(timeout=60)
        temporal.start(timeout=60)
        with psycopg.connect(pg.url(), autocommit=True) as conn:
            for name in (database, *databases) if database else databases:
                conn.execute(f"CREATE DATABASE {name}")
        pki = Pki.init(work / "pki")
        server = pki.issue_headend(["localhost"], ["127.0.0.1"])
        api_port, grpc_port = free_port(), free_port()
        url = pg.url(database) if database else pg.url()
        log = open(work / "headend.log", "wb")
        headend = subprocess.Popen(
            [sys.executable, "-m", "gridpilot", "headend"],
            env={
                **os.environ,
                "GRIDPILOT_DATABASE_URL": url,
                "GRIDPILOT_TEMPORAL_ADDRESS": temporal.address,
                "GRIDPILOT_API_PORT": str(api_port),
                "GRIDPILOT_GRPC_LISTEN": f"127.0.0.1:{grpc_port}",
                "GRIDPILOT_HEADEND_ID": prefix,
                "GRIDPILOT_LOG_LEVEL": "warning",
                "GRIDPILOT_GRPC_TLS_CERT_FILE": str(server.cert_file),
                "GRIDPILOT_GRPC_TLS_KEY_FILE": str(server.key_file),
                "GRIDPILOT_GRPC_CLIENT_CA_FILE": str(pki.ca_file),
                **env,
            },
            stdout=log,
            stderr=log,
        )
        api = f"http://127.0.0.1:{api_port}"
        deadline = time.monotonic() + 120
        while True:
            if headend.poll() is not None or time.monotonic() > deadline:
                raise SystemExit(f"headend did not start:\n{log_tail(work / 'headend.log')}")
            with contextlib.suppress(httpx.HTTPError):
                if httpx.get(f"{api}/readyz").status_code == 200:
                    break
            time.sleep(0.3)
        s = Stack(work, pg, temporal, url, api, f"127.0.0.1:{grpc_port}", pki, headend)
        s.token = asyncio.run(_prepare(url, sites))
        yield s
    finally:
        if headend is not None and headend.poll() is None:
            headend.terminate()
            try:
                headend.wait(30)
            except subprocess.TimeoutExpired:
                headend.kill()
        temporal.stop()
        pg.stop()
        shutil.rmtree(work, ignore_errors=True)


def bess(asset_id: str) -> pb.AssetInfo:
    return pb.AssetInfo(
        asset_id=asset_id, asset_type=pb.ASSET_TYPE_BESS, p_min_kw=-250, p_max_kw=250,
        capacity_kwh=500,
    )  # fmt: skip


@dataclass
class ScriptedAgent:
    """One gateway's stream: answers each Setpoint ACCEPTED then APPLIED at once,
    and COMPLETED at the lease's end, as the edge agent does with a device that
    takes every write. Records when each setpoint arrived (perf_counter)."""

    gateway_id: str
    site_id: str
    asset_ids: list[str]
    on_setpoint: Callable[[pb.Setpoint, float], None] = lambda sp, at: None
    received: dict[str, float] = field(default_factory=dict)
    accepted_sent: dict[str, datetime] = field(default_factory=dict)

    async def run(self, address: str, creds: grpc.ChannelCredentials, ready: asyncio.Event) -> None:
        async with grpc.aio.secure_channel(address, creds) as channel:
            call = channel.stream_stream(
                CONNECT,
                request_serializer=lambda m: m.SerializeToString(),
                response_deserializer=pb.HeadendMessage.FromString,
            )()
            hello = pb.Hello(
                gateway_id=self.gateway_id, site_id=self.site_id, agent_version="bench",
                assets=[bess(a) for a in self.asset_ids],
            )  # fmt: skip
            await call.write(pb.AgentMessage(hello=hello))
            welcome = await call.read()
            if welcome is grpc.aio.EOF or welcome.WhichOneof("body") != "welcome":
                raise SystemExit(f"{self.gateway_id}: no Welcome ({welcome})")
            ready.set()
            lock = asyncio.Lock()
            tasks: set[asyncio.Task[None]] = set()

            async def send(msg: pb.AgentMessage) -> None:
                async with lock:
                    await call.write(msg)

            def ack(sp: pb.Setpoint, state: int, **kw: float) -> pb.AgentMessage:
                out = pb.DispatchAck(
                    dispatch_id=sp.dispatch_id, asset_id=sp.asset_id, state=state, **kw
                )
                out.time.FromDatetime(datetime.now(UTC))
                return pb.AgentMessage(dispatch_ack=out)

            async def follow(sp: pb.Setpoint) -> None:
                self.accepted_sent[sp.dispatch_id] = datetime.now(UTC)
                await send(ack(sp, pb.ACK_STATE_ACCEPTED))
                await send(ack(sp, pb.ACK_STATE_APPLIED, applied_p_kw=sp.p_kw))
                left = sp.end.ToDatetime(UTC) - datetime.now(UTC)
                await asyncio.sleep(max(0.0, left.total_seconds()))
                await send(ack(sp, pb.ACK_STATE_COMPLETED))

            async def heartbeats() -> None:
                while True:
                    await asyncio.sleep(HEARTBEAT_S)
                    beat = pb.Heartbeat()
                    beat.time.FromDatetime(datetime.now(UTC))
                    await send(pb.AgentMessage(heartbeat=beat))

            tasks.add(asyncio.create_task(heartbeats()))
            try:
                while True:
                    msg = await call.read()
                    if msg is grpc.aio.EOF:
                        raise SystemExit(f"{self.gateway_id}: stream ended")
                    if msg.WhichOneof("body") == "setpoint":
                        now = time.perf_counter()
                        sp = msg.setpoint
                        if sp.dispatch_id not in self.received:
                            self.received[sp.dispatch_id] = now
                            self.on_setpoint(sp, now)
                            task = asyncio.create_task(follow(sp))
                            tasks.add(task)
                            task.add_done_callback(tasks.discard)
            finally:
                for task in tasks:
                    task.cancel()
