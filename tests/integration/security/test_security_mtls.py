"""Device identity on the AgentGateway: refused handshakes never reach the servicer,
identity comes from the certificate only, agents speak only for their own assets,
revocation closes live streams, and every refusal is audited."""

from __future__ import annotations

import time
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import TYPE_CHECKING

import grpc
import psycopg
import pytest
from cryptography import x509
from cryptography.hazmat.primitives import serialization
from cryptography.x509.oid import ExtendedKeyUsageOID
from gp_testing import (
    RunningHeadend,
    ScriptedAgent,
    TestPki,
    agent_ack,
    demo_assets,
    now_pb,
    running_headend,
    wait_for,
)

from gridpilot.schema.pb import agent_pb2 as pb
from gridpilot.security.identity import gateway_uri
from gridpilot.security.pki import issue_leaf

if TYPE_CHECKING:
    from temporalio.testing import WorkflowEnvironment

pytestmark = pytest.mark.integration


def _pem(cert: x509.Certificate, key: object) -> tuple[bytes, bytes]:
    return (
        cert.public_bytes(serialization.Encoding.PEM),
        key.private_bytes(  # type: ignore[attr-defined]
            serialization.Encoding.PEM,
            serialization.PrivateFormat.PKCS8,
            serialization.NoEncryption(),
        ),
    )


def _bad_client_cert(case: str, pki: TestPki, tmp_path: Path) -> tuple[bytes, bytes] | None:
    now = datetime.now(UTC)
    uri = [x509.UniformResourceIdentifier(gateway_uri("gridpilot", "gw-1"))]
    client = [ExtendedKeyUsageOID.CLIENT_AUTH]
    ca, ca_key = pki.pki.ca_cert, pki.pki.ca_key
    if case == "no_client_cert":
        return None
    if case == "other_ca":
        other = TestPki(tmp_path / "other-ca")
        return _pem(
            *issue_leaf(
                other.pki.ca_cert,
                other.pki.ca_key,
                "gw-1",
                uri,
                client,
                now,
                now + timedelta(days=1),
            )
        )
    if case == "expired":
        return _pem(
            *issue_leaf(
                ca, ca_key, "gw-1", uri, client, now - timedelta(days=10), now - timedelta(days=1)
            )
        )
    if case == "server_auth_only":
        server = [ExtendedKeyUsageOID.SERVER_AUTH]
        return _pem(*issue_leaf(ca, ca_key, "gw-1", uri, server, now, now + timedelta(days=1)))
    raise AssertionError(case)


@pytest.mark.parametrize("case", ["no_client_cert", "other_ca", "expired", "server_auth_only"])
async def test_handshake_is_refused_before_the_servicer_runs(
    headend: RunningHeadend, tmp_path: Path, case: str
) -> None:
    assert headend.pki is not None
    pems = _bad_client_cert(case, headend.pki, tmp_path)
    creds = (
        headend.pki.credentials(cert_pem=pems[0], key_pem=pems[1])
        if pems
        else headend.pki.credentials()
    )
    agent = ScriptedAgent(headend.grpc_address, credentials=creds)
    try:
        await agent.connect(demo_assets())
        assert agent.error is not None
        assert agent.error.code() == grpc.StatusCode.UNAVAILABLE
    finally:
        await agent.close()
    servicer = headend.headend.servicer
    assert servicer is not None and servicer.streams_started == 0
    assert (await headend.api.get("/api/v1/agents")).json() == []


async def test_plain_text_client_is_refused(headend: RunningHeadend) -> None:
    agent = ScriptedAgent(headend.grpc_address)  # no TLS at all
    try:
        await agent.connect(demo_assets())
        assert agent.error is not None and agent.error.code() == grpc.StatusCode.UNAVAILABLE
    finally:
        await agent.close()
    assert headend.headend.servicer is not None and headend.headend.servicer.streams_started == 0


async def _audit(headend: RunningHeadend, action: str) -> list[dict[str, object]]:
    r = await headend.api.get("/api/v1/audit", params={"action": action})
    assert r.status_code == 200, r.text
    rows: list[dict[str, object]] = r.json()
    return rows


async def test_hello_naming_another_gateway_is_refused_and_audited(headend: RunningHeadend) -> None:
    assert headend.pki is not None
    impostor = ScriptedAgent(
        headend.grpc_address, gateway_id="gw-victim", credentials=headend.pki.credentials("gw-1")
    )
    try:
        await impostor.connect(demo_assets())
        assert impostor.error is not None
        assert impostor.error.code() == grpc.StatusCode.PERMISSION_DENIED
        assert "not this certificate's gateway 'gw-1'" in (impostor.error.details() or "")
    finally:
        await impostor.close()
    assert (await headend.api.get("/api/v1/agents")).json() == []
    [row] = await _audit(headend, "gateway.id_mismatch")
    assert (row["actor"], row["target"], row["outcome"]) == ("gateway:gw-1", "gw-victim", "refused")


async def test_certificate_of_another_trust_domain_is_unauthenticated(
    headend: RunningHeadend,
) -> None:
    assert headend.pki is not None
    now = datetime.now(UTC)
    pki = headend.pki.pki
    cert, key = issue_leaf(
        pki.ca_cert,
        pki.ca_key,
        "gw-1",
        [x509.UniformResourceIdentifier("spiffe://elsewhere/gateway/gw-1")],
        [ExtendedKeyUsageOID.CLIENT_AUTH],
        now,
        now + timedelta(days=1),
    )
    cert_pem, key_pem = _pem(cert, key)
    agent = ScriptedAgent(
        headend.grpc_address,
        credentials=headend.pki.credentials(cert_pem=cert_pem, key_pem=key_pem),
    )
    try:
        await agent.connect(demo_assets())
        assert agent.error is not None
        assert agent.error.code() == grpc.StatusCode.UNAUTHENTICATED
    finally:
        await agent.close()
    [row] = await _audit(headend, "gateway.identity_refused")
    assert row["outcome"] == "refused" and "spiffe://elsewhere" in str(row["detail"])


async def test_foreign_asset_telemetry_and_acks_are_refused_audited_and_not_stored(
    headend: RunningHeadend, scripted_agent: ScriptedAgent
) -> None:
    await scripted_agent.connect(demo_assets())
    r = await headend.api.post(
        "/api/v1/dispatches", json={"asset_id": "bess-1", "p_kw": 10, "duration_s": 60}
    )
    dispatch_id = r.json()["id"]
    sp = await wait_for(lambda: scripted_agent.first("setpoint"))

    other = headend.agent(gateway_id="gw-2", site_id="site-2")
    own = pb.AssetInfo(asset_id="pv-2", asset_type=pb.ASSET_TYPE_PV, p_min_kw=0, p_max_kw=10)
    try:
        await other.connect([own])
        assert other.error is None
        foreign = pb.TelemetrySample(asset_id="bess-1", ts=now_pb(), p_kw=-99.0)
        for seq in (1, 2):  # audited once per session, however often it repeats
            await other.send(
                pb.AgentMessage(telemetry=pb.TelemetryBatch(batch_seq=seq, samples=[foreign]))
            )
        await wait_for(lambda: len(other.of("telemetry_ack")) == 2)
        assert all(a.rejected == 1 and a.accepted == 0 for a in other.of("telemetry_ack"))
        await other.send(agent_ack(sp, pb.ACK_STATE_APPLIED, applied_p_kw=10))
        await wait_for(lambda: _audit(headend, "dispatch_ack.foreign_refused"))
        # answered, so the agent stops re-sending it, and told why
        received = await wait_for(lambda: other.first("dispatch_ack_received"))
        assert received.dispatch_id == dispatch_id and "not this gateway's" in received.refused
    finally:
        await other.close()

    with psycopg.connect(headend.settings.database_url) as conn:
        stored = conn.execute("SELECT count(*) FROM telemetry WHERE asset_id = 'bess-1'")
        assert stored.fetchone() == (0,)
    body = (await headend.api.get(f"/api/v1/dispatches/{dispatch_id}")).json()
    assert body["state"] == "sent"  # the foreign "applied" never reached the workflow
    [tel] = await _audit(headend, "telemetry.foreign_asset_refused")
    assert (tel["actor"], tel["target"]) == ("gateway:gw-2", "bess-1")
    [ack] = await _audit(headend, "dispatch_ack.foreign_refused")
    assert (ack["actor"], ack["target"]) == ("gateway:gw-2", dispatch_id)


async def test_asset_claim_by_another_gateway_is_audited_and_admin_can_rebind(
    headend: RunningHeadend, scripted_agent: ScriptedAgent
) -> None:
    await scripted_agent.connect(demo_assets())
    replacement = headend.agent(gateway_id="gw-new", site_id="site-1")
    try:
        await replacement.connect(demo_assets()[:1])
        assert replacement.error is not None
        assert replacement.error.code() == grpc.StatusCode.PERMISSION_DENIED
    finally:
        await replacement.close()
    [claim] = await _audit(headend, "gateway.asset_claim_refused")
    assert claim["actor"] == "gateway:gw-new"

    operator = headend.client(await headend.token("operator"))
    async with operator:
        r = await operator.put("/api/v1/assets/bess-1/gateway", json={"gateway_id": "gw-new"})
        assert r.status_code == 403
    r = await headend.api.put(
        "/api/v1/assets/bess-1/gateway", json={"gateway_id": "gw-new", "reason": "swap"}
    )
    assert r.status_code == 200, r.text
    assert r.json() == {"asset_id": "bess-1", "gateway_id": "gw-new", "previous_gateway_id": "gw-1"}
    attempt, rebind = await _audit(headend, "asset.rebind")
    assert (attempt["outcome"], rebind["outcome"]) == ("attempt", "ok")
    assert rebind["actor"] == "token:test-admin"
    assert rebind["detail"] == {"from": "gw-1", "to": "gw-new", "reason": "swap"}

    # The old gateway's live session loses the asset within a guard interval.
    sample = pb.TelemetrySample(asset_id="bess-1", ts=now_pb(), p_kw=1.0)

    async def refused() -> bool:
        await scripted_agent.send(
            pb.AgentMessage(telemetry=pb.TelemetryBatch(batch_seq=99, samples=[sample]))
        )
        await wait_for(lambda: scripted_agent.of("telemetry_ack"))
        return scripted_agent.of("telemetry_ack")[-1].rejected == 1

    await wait_for(refused, timeout=10, interval=0.6)
    # ... and the new gateway may now claim it.
    replacement = headend.agent(gateway_id="gw-new", site_id="site-1")
    try:
        await replacement.connect(demo_assets()[:1])
        assert replacement.error is None
    finally:
        await replacement.close()


async def test_revoked_gateway_is_cut_off_live_and_refused_on_connect(
    headend: RunningHeadend, scripted_agent: ScriptedAgent
) -> None:
    assert headend.pki is not None
    await scripted_agent.connect(demo_assets())
    r = await headend.api.post("/api/v1/gateways/gw-1/revoke", json={"reason": "stolen"})
    assert r.status_code == 200, r.text
    fingerprints = r.json()["revoked_fingerprints"]
    assert len(fingerprints) == 1

    # The live stream is closed within seconds (guard interval 0.5 s here).
    await wait_for(lambda: scripted_agent.ended, timeout=5)
    assert scripted_agent.error is not None
    assert scripted_agent.error.code() == grpc.StatusCode.UNAUTHENTICATED

    again = headend.agent()
    try:
        await again.connect(demo_assets())
        assert again.error is not None
        assert again.error.code() == grpc.StatusCode.UNAUTHENTICATED
    finally:
        await again.close()
    attempt, revoke = await _audit(headend, "gateway.revoke")
    assert (attempt["outcome"], revoke["outcome"]) == ("attempt", "ok")
    assert (
        revoke["actor"] == "token:test-admin" and revoke["detail"]["fingerprints"] == fingerprints
    )  # type: ignore[index]
    assert await _audit(headend, "gateway.revoked_refused")

    # A certificate issued after the revocation works again.
    fresh = ScriptedAgent(headend.grpc_address, credentials=_fresh_credentials(headend.pki, "gw-1"))
    try:
        await fresh.connect(demo_assets())
        assert fresh.error is None
    finally:
        await fresh.close()


async def test_revocation_is_pushed_to_the_live_stream_without_waiting_for_the_poll(
    database_url: str, temporal_env: WorkflowEnvironment, task_queue: str, test_pki: TestPki
) -> None:
    """Revoked through one replica, the stream on the other closes at once: the
    re-check poll is set to 10 minutes, so only the announcement can do it."""
    address = temporal_env.client.service_client.config.target_host
    slow = {"revocation_check_s": 600}
    async with (
        running_headend(database_url, address, task_queue, test_pki, **slow) as a,
        running_headend(database_url, address, task_queue, test_pki, "b", **slow) as b,
    ):
        await wait_for(lambda: b.headend.guard is not None and b.headend.guard.listening.is_set())
        agent = b.agent()
        try:
            await agent.connect(demo_assets())
            assert agent.error is None
            revoked_at = time.monotonic()
            r = await a.api.post("/api/v1/gateways/gw-1/revoke", json={"reason": "stolen"})
            assert r.status_code == 200, r.text
            await wait_for(lambda: agent.ended, timeout=10)
            closed_s = time.monotonic() - revoked_at
            assert agent.error is not None
            assert agent.error.code() == grpc.StatusCode.UNAUTHENTICATED
            print(
                f"\nrevocation pushed: live stream on the other replica closed in {closed_s:.2f} s"
            )
        finally:
            await agent.close()


def _fresh_credentials(pki: TestPki, gateway_id: str) -> grpc.ChannelCredentials:
    issued = pki.pki.issue_gateway(gateway_id)
    return pki.credentials(
        cert_pem=issued.cert_file.read_bytes(), key_pem=issued.key_file.read_bytes()
    )
