"""Every distinct identity refusal on the AgentGateway is audited: another
certificate or another reason from the same host is a new audit row at once;
only the same certificate refused for the same reason again within a minute
(an agent retrying with backoff) is not."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

import grpc
import pytest
from cryptography import x509
from cryptography.hazmat.primitives import serialization
from cryptography.x509.oid import ExtendedKeyUsageOID
from gp_testing import RunningHeadend, ScriptedAgent, TestPki, demo_assets

from gridpilot.security.identity import fingerprint
from gridpilot.security.pki import issue_leaf

pytestmark = pytest.mark.integration


def _cert(pki: TestPki, *uris: str) -> tuple[str, grpc.ChannelCredentials]:
    """A certificate of our CA naming these URI SANs: (fingerprint, credentials)."""
    now = datetime.now(UTC)
    cert, key = issue_leaf(
        pki.pki.ca_cert,
        pki.pki.ca_key,
        "gw-1",
        [x509.UniformResourceIdentifier(u) for u in uris],
        [ExtendedKeyUsageOID.CLIENT_AUTH],
        now,
        now + timedelta(days=1),
    )
    key_pem = key.private_bytes(  # type: ignore[union-attr]
        serialization.Encoding.PEM,
        serialization.PrivateFormat.PKCS8,
        serialization.NoEncryption(),
    )
    credentials = pki.credentials(
        cert_pem=cert.public_bytes(serialization.Encoding.PEM), key_pem=key_pem
    )
    return fingerprint(cert), credentials


async def _try(h: RunningHeadend, credentials: grpc.ChannelCredentials) -> grpc.StatusCode | None:
    agent = ScriptedAgent(h.grpc_address, credentials=credentials)
    try:
        await agent.connect(demo_assets())
    finally:
        await agent.close()
    return None if agent.error is None else agent.error.code()


async def _audited(h: RunningHeadend, action: str) -> list[tuple[str, str]]:
    """(fingerprint, reason) of each audit row of this action, oldest first."""
    r = await h.api.get("/api/v1/audit", params={"action": action})
    assert r.status_code == 200, r.text
    rows = sorted(r.json(), key=lambda row: row["id"])
    return [(row["detail"].get("fingerprint", ""), row["detail"]["reason"]) for row in rows]


async def test_each_refused_certificate_and_reason_is_audited_not_once_per_host(
    headend: RunningHeadend,
) -> None:
    assert headend.pki is not None
    elsewhere = "spiffe://elsewhere/gateway/gw-1"
    fp_a, cert_a = _cert(headend.pki, elsewhere)
    fp_b, cert_b = _cert(headend.pki, elsewhere)  # another certificate, same fault
    fp_c, cert_c = _cert(headend.pki, "spiffe://gridpilot/gateway/gw-1", elsewhere)
    for credentials in (cert_a, cert_a, cert_b, cert_c, cert_b):  # all from 127.0.0.1
        assert await _try(headend, credentials) == grpc.StatusCode.UNAUTHENTICATED

    rows = await _audited(headend, "gateway.identity_refused")
    assert [fp for fp, _ in rows] == [fp_a, fp_b, fp_c]  # each once: retries are not repeated
    assert "spiffe://elsewhere" in rows[0][1] and rows[0][1] == rows[1][1]
    assert "exactly one URI SAN" in rows[2][1]


async def test_each_revoked_certificate_of_a_gateway_is_audited(
    headend: RunningHeadend,
) -> None:
    assert headend.pki is not None
    await headend.enroll("gw-1", "site-1")
    creds = []
    for _ in range(2):  # two certificates of gw-1 (issuing rewrites its files)
        issued = headend.pki.pki.issue_gateway("gw-1")
        cert_pem, key_pem = issued.cert_file.read_bytes(), issued.key_file.read_bytes()
        creds.append(headend.pki.credentials(cert_pem=cert_pem, key_pem=key_pem))
    for credentials in creds:  # both seen by the headend, then revoked together
        assert await _try(headend, credentials) is None
    r = await headend.api.post("/api/v1/gateways/gw-1/revoke", json={"reason": "stolen"})
    assert r.status_code == 200, r.text
    fingerprints = r.json()["revoked_fingerprints"]
    assert len(fingerprints) == 2

    for credentials in (creds[0], creds[0], creds[1]):
        assert await _try(headend, credentials) == grpc.StatusCode.UNAUTHENTICATED
    rows = await _audited(headend, "gateway.revoked_refused")
    assert sorted(fp for fp, _ in rows) == sorted(fingerprints)
