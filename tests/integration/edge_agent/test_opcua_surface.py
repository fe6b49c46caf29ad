"""The agent's OPC UA server surface, as a SCADA sees it.

A real EdgeAgent (simulated BESS + PV, a small fake headend on gRPC) runs the
surface on 127.0.0.1 with Basic256Sha256 SignAndEncrypt, a generated server
certificate under its state dir, and a trust list; an asyncua Client in the
test browses, reads, subscribes and writes. One agent and server serve the
whole module (server start costs ~3 s); tests that write leave the asset
released.
"""

from __future__ import annotations

import asyncio
import random
import shutil
import socket
from collections.abc import AsyncIterator, Callable
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import grpc
import pytest
import pytest_asyncio
from asyncua import Client, ua
from asyncua.crypto.cert_gen import setup_self_signed_certificate
from cryptography.x509.oid import ExtendedKeyUsageOID
from gp_testing import wait_for as eventually

from gridpilot.core.assets import Asset, AssetType, PowerLimits
from gridpilot.edge_agent import EdgeAgent, SiteConfig
from gridpilot.edge_agent.adapters import DeviceUnavailable
from gridpilot.edge_agent.adapters.simulated import SimulatedBattery
from gridpilot.edge_agent.control.local_control import ControlView, LocalResult, Mode, Outcome
from gridpilot.edge_agent.opcua_surface import OpcuaSurface
from gridpilot.edge_agent.opcua_surface.units import unece_unit_id
from gridpilot.schema.pb import agent_pb2 as pb
from gridpilot.schema.pb import agent_pb2_grpc
from gridpilot.security.passwords import hash_password

pytestmark = pytest.mark.integration

NS_URI = "urn:test:gridpilot:edge"
CLIENT_URI = "urn:test:scada-client"
PASSWORDS = {"op": "op-secret", "viewer": "view-secret"}
S = ua.StatusCodes


# ------------------------------------------------------------ fake headend


class FakeHeadend(agent_pb2_grpc.AgentGatewayServicer):
    """Welcomes the agent, acks telemetry, records what it sends."""

    def __init__(self) -> None:
        self.received: list[pb.AgentMessage] = []
        self.queue: asyncio.Queue[pb.HeadendMessage] = asyncio.Queue()

    async def Connect(self, request_iterator: Any, context: Any) -> AsyncIterator[Any]:
        queue = self.queue = asyncio.Queue()

        async def read() -> None:
            async for message in request_iterator:
                self.received.append(message)
                if message.WhichOneof("body") == "telemetry":
                    ack = pb.TelemetryAck(batch_seq=message.telemetry.batch_seq)
                    queue.put_nowait(pb.HeadendMessage(telemetry_ack=ack))

        reader = asyncio.create_task(read())
        try:
            yield pb.HeadendMessage(welcome=pb.Welcome(session_id="s1"))
            while True:
                yield await queue.get()
        finally:
            reader.cancel()

    def send(self, **body: Any) -> None:
        self.queue.put_nowait(pb.HeadendMessage(**body))

    def of(self, body: str) -> list[Any]:
        return [getattr(m, body) for m in self.received if m.WhichOneof("body") == body]


# ---------------------------------------------------------------- fixtures


@dataclass
class Site:
    agent: EdgeAgent
    surface: OpcuaSurface
    headend: FakeHeadend
    url: str
    client_cert: Path
    client_key: Path
    tmp: Path

    @property
    def battery(self) -> SimulatedBattery:
        adapter = self.agent.adapters["bess"]
        assert isinstance(adapter, SimulatedBattery)
        return adapter


async def make_client_cert(folder: Path, name: str) -> tuple[Path, Path]:
    folder.mkdir(parents=True, exist_ok=True)  # noqa: ASYNC240
    cert, key = folder / f"{name}.der", folder / f"{name}.pem"
    await setup_self_signed_certificate(
        key,
        cert,
        CLIENT_URI,
        "localhost",
        [ExtendedKeyUsageOID.CLIENT_AUTH],
        {"commonName": name, "organizationName": "test"},
    )
    return cert, key


def site_config(headend_port: int, **opcua: Any) -> SiteConfig:
    users = [
        {"name": name, "role": "operator" if name == "op" else "viewer",
         "password_hash": hash_password(pw, n=2**10)}
        for name, pw in PASSWORDS.items()
    ]  # fmt: skip
    return SiteConfig.model_validate(
        {
            "version": 1,
            "gateway_id": "test-gw",
            "site": {"id": "test-site", "name": "Test Site", "timezone": "UTC"},
            "headend": {"address": f"127.0.0.1:{headend_port}", "insecure": True},
            "telemetry_interval_s": 0.2,
            "heartbeat_interval_s": 1,
            "failsafe_timeout_s": 600,
            "opcua_server": {
                "endpoint": "opc.tcp://127.0.0.1:0/gridpilot/",
                "namespace_uri": NS_URI,
                "users": users,
                "publish_interval_s": 0.2,
                **opcua,
            },
            "assets": [
                {
                    "id": "bess",
                    "name": "Battery",
                    "type": "bess",
                    "limits": {"p_min_kw": -250, "p_max_kw": 250},
                    "default_p_kw": 0,
                    "capacity_kwh": 500,
                    "device": {"kind": "simulated", "initial_soc_pct": 50},
                },
                {
                    "id": "pv",
                    "type": "pv",
                    "limits": {"p_min_kw": 0, "p_max_kw": 300},
                    "default_p_kw": 300,
                    "device": {"kind": "simulated", "min_fraction": 0.5},
                },
            ],
        }
    )


@pytest_asyncio.fixture(scope="module", loop_scope="session")
async def site(tmp_path_factory: pytest.TempPathFactory) -> AsyncIterator[Site]:
    tmp = tmp_path_factory.mktemp("opcua-surface")
    headend = FakeHeadend()
    grpc_server = grpc.aio.server()
    agent_pb2_grpc.add_AgentGatewayServicer_to_server(headend, grpc_server)
    port = grpc_server.add_insecure_port("127.0.0.1:0")
    await grpc_server.start()

    config = site_config(port, anonymous=True)
    assert config.opcua_server is not None
    state_dir = tmp / "state"
    agent = EdgeAgent(config, state_dir=state_dir)
    surface = agent.opcua  # the agent starts its own surface in run()
    assert surface is not None
    cert, key = await make_client_cert(tmp / "client", "scada")
    surface.paths.trusted_dir.mkdir(parents=True)
    shutil.copy(cert, surface.paths.trusted_dir / cert.name)  # the trust exchange, done ahead

    run = asyncio.create_task(agent.run())
    try:
        await eventually(lambda: surface.port or run.done(), timeout=30)
        assert not run.done(), run.result()
        yield Site(agent, surface, headend, surface.endpoint_url, cert, key, tmp)
    finally:
        agent.stop()
        await asyncio.wait_for(run, 15)
        await grpc_server.stop(grace=None)


async def connect(
    site: Site,
    user: str | None = "op",
    *,
    cert: tuple[Path, Path] | None = None,
    secure: bool = True,
) -> Client:
    client = Client(site.url, timeout=5)
    client.application_uri = CLIENT_URI  # must equal the certificate's URI SAN
    if secure:
        c, k = cert or (site.client_cert, site.client_key)
        await client.set_security_string(f"Basic256Sha256,SignAndEncrypt,{c},{k}")
    if user is not None:
        client.set_user(user)
        client.set_password(PASSWORDS.get(user, "wrong"))
    await client.connect()
    return client


def nid(path: str) -> ua.NodeId:
    return ua.NodeId(path, 2)


async def write(client: Client, path: str, variant: ua.Variant) -> ua.StatusCode:
    results = await client.uaclient.write_attributes(
        [nid(path)], [ua.DataValue(variant)], ua.AttributeIds.Value
    )
    return results[0]


async def read(client: Client, path: str) -> ua.DataValue:
    return (await client.uaclient.read_attributes([nid(path)], ua.AttributeIds.Value))[0]


BESS = "Sites/test-site/bess"


async def release_if_local(client: Client) -> None:
    if (await read(client, f"{BESS}/Control/Mode")).Value.Value == "local":
        await write(client, f"{BESS}/Control/Release", ua.Variant(True, ua.VariantType.Boolean))


# ------------------------------------------------------------------- tests


async def test_browse_by_path_in_the_agent_namespace(site: Site) -> None:
    client = await connect(site, "viewer")
    try:
        ns = await client.get_namespace_index(NS_URI)
        assert ns == 2
        path = ["Sites", "test-site", "bess", "Telemetry", "p_kw"]
        node = await client.nodes.objects.get_child([f"{ns}:{p}" for p in path])
        assert node.nodeid == ua.NodeId("Sites/test-site/bess/Telemetry/p_kw", ns)
        control = await client.nodes.objects.get_child(
            [f"{ns}:Sites", f"{ns}:test-site", f"{ns}:bess", f"{ns}:Control"]
        )
        names = {(await c.read_browse_name()).Name for c in await control.get_children()}
        assert names == {
            "SetpointKw",
            "SetpointActualKw",
            "ActiveDispatchId",
            "CommandStatus",
            "Mode",
            "Release",
        }
        agent = await client.nodes.objects.get_child(
            [f"{ns}:Sites", f"{ns}:test-site", f"{ns}:Agent", f"{ns}:GatewayId"]
        )
        assert await agent.read_value() == "test-gw"
        arbitration = client.get_node(nid("Sites/test-site/Agent/Arbitration"))
        assert await arbitration.read_value() == "cloud_priority"
        connected = client.get_node(nid("Sites/test-site/Agent/CloudConnected"))
        await eventually(connected.read_value)
        # PV has generation fields, not battery ones
        pv = client.get_node(nid("Sites/test-site/pv/Telemetry"))
        pv_fields = {(await c.read_browse_name()).Name for c in await pv.get_children()}
        assert {"p_kw", "curtailed_kw", "irradiance_w_m2"} <= pv_fields
        assert "soh_pct" not in pv_fields
    finally:
        await client.disconnect()


async def test_telemetry_is_typed_with_units_status_and_source_time(site: Site) -> None:
    client = await connect(site, "viewer")
    try:
        p_kw = await eventually(lambda: _good(read(client, f"{BESS}/Telemetry/p_kw")), timeout=5)
        assert p_kw.Value.VariantType == ua.VariantType.Double
        # what the headend got is what the SCADA sees (idle battery: steady values)
        sent = await eventually(lambda: _sent(site, "bess"))
        assert p_kw.Value.Value == sent.p_kw
        soc = await read(client, f"{BESS}/Telemetry/soc_pct")
        assert soc.StatusCode.is_good() and soc.Value.Value == sent.soc_pct
        source_ts = _utc(p_kw.SourceTimestamp)
        latest = site.agent.pollers["bess"].latest
        assert latest is not None and source_ts <= latest.ts
        assert latest.ts - source_ts < timedelta(seconds=30)

        units = client.get_node(nid(f"{BESS}/Telemetry/p_kw/EngineeringUnits"))
        eu = await units.read_value()
        assert eu.UnitId == unece_unit_id("KWT") and eu.DisplayName.Text == "kW"
        assert eu.NamespaceUri == "http://www.opcfoundation.org/UA/units/un/cefact"
        soc_units = await client.get_node(
            nid(f"{BESS}/Telemetry/soc_pct/EngineeringUnits")
        ).read_value()
        assert soc_units.UnitId == unece_unit_id("P1")

        state = await read(client, f"{BESS}/Telemetry/state")
        assert state.Value.VariantType == ua.VariantType.String and state.Value.Value == "idle"
        # a field this device never reports
        never = await read(client, f"{BESS}/Telemetry/energy_capacity_kwh")
        assert never.StatusCode.value == S.BadWaitingForInitialData
        # telemetry is read-only, for operators too
        op = await connect(site, "op")
        try:
            status = await write(op, f"{BESS}/Telemetry/p_kw", ua.Variant(1.0))
            assert status.value == S.BadUserAccessDenied
        finally:
            await op.disconnect()
    finally:
        await client.disconnect()


async def test_subscription_delivers_changes(site: Site) -> None:
    client = await connect(site, "viewer")
    try:
        sub = await client.create_subscription(100, None)
        await sub.subscribe_data_change(client.get_node(nid(f"{BESS}/Telemetry/frequency_hz")))
        values = []
        async with asyncio.timeout(8):
            while len(values) < 3:
                event = await sub.next_event(timeout=8)
                if hasattr(event, "value"):
                    values.append(event.value)
        assert len(set(values)) >= 2  # the simulator's frequency moves
        await sub.delete()
    finally:
        await client.disconnect()


async def test_operator_setpoint_reaches_the_device_as_a_local_dispatch(site: Site) -> None:
    client = await connect(site, "op")
    try:
        status = await write(client, f"{BESS}/Control/SetpointKw", ua.Variant(50.0))
        assert status.is_good(), status
        assert site.battery.setpoint_kw == 50.0
        latest = lambda: site.agent.pollers["bess"].latest  # noqa: E731
        await eventually(lambda: latest() is not None and latest().p_kw == 50.0)
        p = await eventually(
            lambda: _value_is(read(client, f"{BESS}/Telemetry/p_kw"), 50.0), timeout=5
        )
        assert p.StatusCode.is_good()

        assert (await read(client, f"{BESS}/Control/SetpointKw")).Value.Value == 50.0
        await eventually(lambda: _value_is(read(client, f"{BESS}/Control/Mode"), "local"))
        dispatch_id = (await read(client, f"{BESS}/Control/ActiveDispatchId")).Value.Value
        assert dispatch_id.startswith("loc-")
        actual = await read(client, f"{BESS}/Control/SetpointActualKw")
        assert actual.Value.Value == 50.0
        assert (await read(client, f"{BESS}/Control/CommandStatus")).Value.Value

        reports = await eventually(
            lambda: [r for r in site.headend.of("local_dispatch") if r.dispatch_id == dispatch_id]
        )
        assert (reports[0].asset_id, reports[0].p_kw, reports[0].actor) == (
            "bess",
            50.0,
            "opcua:op",
        )
        assert reports[0].channel == "opcua"

        # Release ends it: back to the default, and a second release has nothing to end
        released = await write(client, f"{BESS}/Control/Release", ua.Variant(True))
        assert released.is_good(), released
        await eventually(lambda: _value_is(read(client, f"{BESS}/Control/Mode"), "default"))
        assert site.battery.setpoint_kw == 0.0
        again = await write(client, f"{BESS}/Control/Release", ua.Variant(True))
        assert again.value == S.BadInvalidState
        assert (await read(client, f"{BESS}/Control/Release")).Value.Value is False
    finally:
        await release_if_local(client)
        await client.disconnect()


async def test_refused_writes_apply_nothing(site: Site) -> None:
    client = await connect(site, "op")
    try:
        before = site.battery.setpoint_kw
        node = f"{BESS}/Control/SetpointKw"
        assert (await write(client, node, ua.Variant(1000.0))).value == S.BadOutOfRange
        assert (await write(client, node, ua.Variant(float("nan")))).value == S.BadOutOfRange
        typed = ua.Variant(50, ua.VariantType.Int64)
        assert (await write(client, node, typed)).value == S.BadTypeMismatch
        assert (await write(client, f"{BESS}/Control/Mode", ua.Variant("local"))).value == (
            S.BadUserAccessDenied
        )
        assert site.battery.setpoint_kw == before
        assert (await read(client, f"{BESS}/Control/Mode")).Value.Value == "default"
        # one request, two items: each gets its own status, in order
        results = await client.uaclient.write_attributes(
            [nid(node), nid(node)],
            [ua.DataValue(ua.Variant(-999.0)), ua.DataValue(ua.Variant(20.0))],
            ua.AttributeIds.Value,
        )
        assert [r.value for r in results][0] == S.BadOutOfRange and results[1].is_good()
        assert site.battery.setpoint_kw == 20.0
    finally:
        await release_if_local(client)
        await client.disconnect()


async def test_viewer_and_anonymous_cannot_write(site: Site) -> None:
    viewer = await connect(site, "viewer")
    anonymous = await connect(site, None)  # allowed by this site's config: read only
    try:
        for client in (viewer, anonymous):
            status = await write(client, f"{BESS}/Control/SetpointKw", ua.Variant(10.0))
            assert status.value == S.BadUserAccessDenied
            status = await write(client, f"{BESS}/Control/Release", ua.Variant(True))
            assert status.value == S.BadUserAccessDenied
        assert (await read(anonymous, f"{BESS}/Telemetry/soc_pct")).Value.Value is not None
        assert site.battery.setpoint_kw == 0.0
    finally:
        await viewer.disconnect()
        await anonymous.disconnect()


async def test_bad_credentials_and_admin_are_refused(site: Site) -> None:
    for user in ("nobody", "admin"):
        with pytest.raises(ua.UaStatusCodeError) as refused:
            await connect(site, user)
        assert refused.value.code == S.BadUserAccessDenied


async def test_untrusted_certificate_is_refused_and_kept_for_the_operator(site: Site) -> None:
    cert, key = await make_client_cert(site.tmp / "stranger", "stranger")
    with pytest.raises(ua.UaStatusCodeError) as refused:
        await connect(site, "op", cert=(cert, key))
    assert refused.value.code == S.BadCertificateUntrusted
    kept = site.surface.paths.rejected_dir.glob("*.der")
    rejected = [p for p in kept if p.read_bytes() == cert.read_bytes()]
    assert len(rejected) == 1

    # the operator moves it to trusted/: the next attempt works, no restart
    rejected[0].rename(site.surface.paths.trusted_dir / rejected[0].name)
    client = await connect(site, "viewer", cert=(cert, key))
    await client.disconnect()


async def activate_by_hand(site: Site, cert: tuple[Path, Path] | None) -> None:
    """What a hostile client can do that asyncua's Client will not: open a
    channel (None, or secure with ``cert``), send CreateSession without a
    client certificate (so asyncua's validator is skipped), then log in."""
    client = Client(site.url, timeout=5)
    client.application_uri = CLIENT_URI
    if cert is not None:
        await client.set_security_string(f"Basic256Sha256,SignAndEncrypt,{cert[0]},{cert[1]}")
    client.set_user("op")
    client.set_password(PASSWORDS["op"])
    await client.connect_socket()
    try:
        await client.send_hello()
        await client.open_secure_channel()
        params = ua.CreateSessionParameters(
            ClientDescription=ua.ApplicationDescription(
                ApplicationUri=CLIENT_URI, ApplicationType=ua.ApplicationType.Client
            ),
            EndpointUrl=site.url,
            SessionName="by-hand",
            ClientNonce=b"\x01" * 32,
            RequestedSessionTimeout=60_000,
        )  # no ClientCertificate
        created = await client.uaclient.create_session(params)
        client._server_nonce = created.ServerNonce
        client._policy_ids = created.ServerEndpoints[0].UserIdentityTokens
        await client.activate_session(username="op", password=PASSWORDS["op"])
    finally:
        client.disconnect_socket()


async def test_sessions_on_a_none_channel_are_refused(site: Site) -> None:
    # asyncua's server accepts them by default even with no None endpoint offered
    with pytest.raises(ua.UaStatusCodeError) as refused:
        await activate_by_hand(site, None)
    assert refused.value.code == S.BadSecurityModeRejected


async def test_an_untrusted_channel_certificate_is_refused_at_login(site: Site) -> None:
    cert = await make_client_cert(site.tmp / "sneaky", "sneaky")
    with pytest.raises(ua.UaStatusCodeError) as refused:
        await activate_by_hand(site, cert)
    assert refused.value.code == S.BadCertificateUntrusted
    await activate_by_hand(site, (site.client_cert, site.client_key))  # a trusted one passes


async def test_no_security_is_not_offered_unless_configured(site: Site) -> None:
    with pytest.raises(Exception, match="(?i)no matching endpoints|BadSecurityPolicyRejected"):
        await connect(site, "op", secure=False)
    endpoints = await Client(site.url, timeout=5).connect_and_get_server_endpoints()
    assert {e.SecurityPolicyUri.rsplit("#", 1)[1] for e in endpoints} == {"Basic256Sha256"}
    assert {e.SecurityMode for e in endpoints} == {ua.MessageSecurityMode.SignAndEncrypt}
    tokens = {t.TokenType for e in endpoints for t in e.UserIdentityTokens}
    assert tokens == {ua.UserTokenType.UserName, ua.UserTokenType.Anonymous}  # as configured
    assert site.surface.server_certificate.is_file()  # made in the state dir


async def test_cloud_dispatch_locks_out_local_writes_under_cloud_priority(site: Site) -> None:
    now = datetime.now(UTC)
    setpoint = pb.Setpoint(
        dispatch_id="cloud-1",
        asset_id="bess",
        p_kw=-40.0,
        start=now,
        end=now + timedelta(minutes=5),
    )
    site.headend.send(setpoint=setpoint)
    client = await connect(site, "op")
    try:
        await eventually(lambda: _value_is(read(client, f"{BESS}/Control/Mode"), "cloud"))
        assert (await read(client, f"{BESS}/Control/ActiveDispatchId")).Value.Value == "cloud-1"
        assert (await read(client, f"{BESS}/Control/SetpointKw")).Value.Value == -40.0
        status = await write(client, f"{BESS}/Control/SetpointKw", ua.Variant(10.0))
        assert status.value == S.BadLocked  # PRIORITY_CONFLICT: the cloud holds the asset
        status = await write(client, f"{BESS}/Control/Release", ua.Variant(True))
        assert status.value == S.BadInvalidState  # nothing local to release
        assert site.battery.setpoint_kw == -40.0
    finally:
        site.headend.send(release=pb.Release(dispatch_id="cloud-1", asset_id="bess"))
        await eventually(lambda: _value_is(read(client, f"{BESS}/Control/Mode"), "default"))
        await client.disconnect()


# ------------------------------------------- a second server, config defaults


class _IdleDesk:
    """Just enough local desk for a surface (no controllers)."""

    async def setpoint(self, *args: Any, **kwargs: Any) -> LocalResult:
        return LocalResult(Outcome.REJECTED)

    async def release(self, *args: Any, **kwargs: Any) -> LocalResult:
        return LocalResult(Outcome.REJECTED)

    def view(self, asset_id: str) -> ControlView:
        return ControlView(asset_id, Mode.DEFAULT, "", None, None, "")

    def add_listener(self, callback: Callable[[str], None]) -> None:
        pass


def _idle_surface(config: SiteConfig, state_dir: Path | None) -> OpcuaSurface:
    """A surface with no devices and no headend."""
    assert config.opcua_server is not None
    return OpcuaSurface(
        config.opcua_server,
        site_id=config.site.id,
        gateway_id=config.gateway_id,
        assets={
            "bess": Asset("bess", "test-site", AssetType.BESS, PowerLimits(-10, 10), default_p_kw=0)
        },
        pollers={},
        desk=_IdleDesk(),
        link_up=lambda: False,
        state_dir=state_dir,
    )


async def test_defaults_refuse_anonymous_and_need_a_state_dir(site: Site) -> None:
    config = site_config(1)  # defaults: no anonymous, SignAndEncrypt only
    assert config.opcua_server is not None
    with pytest.raises(ValueError, match="state directory"):
        _idle_surface(config, None)

    surface = _idle_surface(config, site.tmp / "s2")
    await surface.start()
    try:
        shutil.copy(site.client_cert, surface.paths.trusted_dir / "scada.der")
        other = Site(site.agent, surface, site.headend, surface.endpoint_url, site.client_cert,
                     site.client_key, site.tmp)  # fmt: skip
        with pytest.raises(ua.UaStatusCodeError) as refused:
            await connect(other, None)
        assert refused.value.code == S.BadIdentityTokenRejected
        client = await connect(other, "viewer")
        value = await read(client, "Sites/test-site/bess/Telemetry/p_kw")
        assert value.StatusCode.value == S.BadWaitingForInitialData
        await client.disconnect()
    finally:
        await surface.stop()


async def test_an_unreachable_device_keeps_its_last_value_as_uncertain(site: Site) -> None:
    """Stale data: the SCADA keeps the last reading, marked Uncertain, then Good again."""
    client = await connect(site, "viewer")
    path = f"{BESS}/Telemetry/soc_pct"
    try:
        good = await eventually(lambda: _good(read(client, path)), timeout=10)

        async def unreachable() -> Any:
            raise DeviceUnavailable("no answer from the battery (test)")

        site.battery.read = unreachable  # type: ignore[method-assign]
        try:

            async def uncertain() -> ua.DataValue | None:
                dv = await read(client, path)
                return dv if dv.StatusCode.value == S.UncertainLastUsableValue else None

            stale = await eventually(uncertain, timeout=10)
            assert stale.Value.Value == good.Value.Value  # the last usable value, kept
        finally:
            del site.battery.read  # the simulator's own read again
        await eventually(lambda: _good(read(client, path)), timeout=10)
    finally:
        await client.disconnect()


# ------------------------------------------------------------------ helpers


async def _good(pending: Any) -> ua.DataValue | None:
    dv = await pending
    return dv if dv.StatusCode.is_good() and dv.Value.Value is not None else None


async def _value_is(pending: Any, expected: Any) -> ua.DataValue | None:
    dv = await pending
    return dv if dv.Value is not None and dv.Value.Value == expected else None


def _sent(site: Site, asset_id: str) -> Any:
    samples = [s for b in site.headend.of("telemetry") for s in b.samples if s.asset_id == asset_id]
    return samples[-1] if samples else None


def _utc(ts: datetime) -> datetime:
    return ts if ts.tzinfo is not None else ts.replace(tzinfo=UTC)


async def test_a_surface_that_cannot_start_is_retried_until_its_port_is_free(
    tmp_path: Path,
) -> None:
    """Port taken at start: the agent goes on without the surface (the cloud
    link works) and retries with backoff; once the port is free SCADA connects."""
    blocker = socket.socket()
    blocker.bind(("127.0.0.1", 0))
    blocker.listen()
    port = blocker.getsockname()[1]
    headend = FakeHeadend()
    grpc_server = grpc.aio.server()
    agent_pb2_grpc.add_AgentGatewayServicer_to_server(headend, grpc_server)
    grpc_port = grpc_server.add_insecure_port("127.0.0.1:0")
    await grpc_server.start()
    url = f"opc.tcp://127.0.0.1:{port}/gridpilot/"
    agent = EdgeAgent(
        site_config(grpc_port, anonymous=True, endpoint=url),
        state_dir=tmp_path / "state",
        rng=random.Random(3),
    )
    first = agent.opcua
    assert first is not None
    run = asyncio.create_task(agent.run())
    try:
        # Timeouts for a busy machine: each try builds a server (certificates
        # included), and the retries back off (full jitter, 1 s doubling, 60 s cap).
        await eventually(lambda: agent.connected and agent.opcua is not first, timeout=30)
        assert first.port is None  # it never started
        await eventually(lambda: headend.of("telemetry"), timeout=10)  # the agent goes on
        blocker.close()
        await eventually(lambda: agent.opcua is not None and agent.opcua.port == port, timeout=90)
        surface = agent.opcua
        assert surface is not None
        cert, key = await make_client_cert(tmp_path / "client", "scada")
        surface.paths.trusted_dir.mkdir(parents=True, exist_ok=True)
        shutil.copy(cert, surface.paths.trusted_dir / cert.name)
        site = Site(agent, surface, headend, url, cert, key, tmp_path)
        client = await connect(site, "viewer")
        try:
            await eventually(lambda: _good(read(client, f"{BESS}/Telemetry/soc_pct")), timeout=10)
        finally:
            await client.disconnect()
    finally:
        blocker.close()
        agent.stop()
        await asyncio.wait_for(run, 15)
        await grpc_server.stop(grace=None)
