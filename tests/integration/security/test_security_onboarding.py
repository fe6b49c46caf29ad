"""Gateway onboarding over the real REST API and the real gRPC gateway: an
admin issues a one-time token, the gateway enrolls with a CSR (its key never
leaves it), streams telemetry on the new certificate, and renews it with its
current key. Replays, foreign CSRs, expired and unknown tokens are refused
with a 4xx naming the field."""

from __future__ import annotations

import asyncio
import stat
from collections.abc import Callable
from pathlib import Path
from typing import Any

import httpx
import psycopg
import pytest
from cryptography.hazmat.primitives import serialization
from gp_testing import RunningHeadend, TestPki, running_headend, wait_for

from gridpilot.edge_agent import EdgeAgent, SiteConfig
from gridpilot.edge_agent.enroll import EnrollError, GatewayFiles, enroll, renew
from gridpilot.security.csr import make_csr
from gridpilot.security.pki import new_key

pytestmark = pytest.mark.integration


class Recorder:
    """An httpx.Client that keeps every request it sent, as sent."""

    def __init__(self) -> None:
        self.sent: list[httpx.Request] = []
        self.client = httpx.Client(event_hooks={"request": [self._keep]}, timeout=30)

    def _keep(self, request: httpx.Request) -> None:
        request.read()
        self.sent.append(request)

    def bodies(self) -> list[bytes]:
        return [r.content for r in self.sent]


async def _token(h: RunningHeadend, gateway_id: str, site_id: str, **kw: Any) -> str:
    body = {"gateway_id": gateway_id, "site_id": site_id, "max_asset_kw": 1000, **kw}
    r = await h.api.post("/api/v1/enrollment-tokens", json=body)
    assert r.status_code == 201, r.text
    assert r.json()["token"].startswith("gpe_")
    return str(r.json()["token"])


def _in_thread(fn: Callable[..., Any], *args: Any) -> Any:
    # The headend runs on this event loop; the gateway's client is blocking.
    return asyncio.to_thread(fn, *args)


def _site(h: RunningHeadend, files: GatewayFiles, gateway_id: str, site_id: str) -> SiteConfig:
    return SiteConfig.model_validate(
        {
            "version": 1,
            "gateway_id": gateway_id,
            "site": {"id": site_id, "timezone": "UTC"},
            "headend": {
                "address": h.grpc_address,
                "ca_file": str(files.ca),
                "cert_file": str(files.cert),
                "key_file": str(files.key),
            },
            "telemetry_interval_s": 0.5,
            "heartbeat_interval_s": 0.5,
            "buffer": {"path": str(files.root.parent / "buffer.sqlite3")},
            "assets": [
                {
                    "id": f"{gateway_id}-bess",
                    "type": "bess",
                    "limits": {"p_min_kw": -10, "p_max_kw": 10},
                    "capacity_kwh": 20,
                    "default_p_kw": 0,
                    "device": {"kind": "simulated"},
                }
            ],
        }
    )


async def _streams_telemetry(h: RunningHeadend, cfg: SiteConfig) -> None:
    """The real agent connects with ``cfg``'s certificate and its telemetry is
    served by the API."""
    agent = EdgeAgent(cfg)
    running = asyncio.create_task(agent.run())
    asset = cfg.assets[0].id

    async def latest() -> bool:
        r = await h.api.get(f"/api/v1/assets/{asset}/telemetry/latest")
        return r.status_code == 200 and r.json().get("soc_pct") is not None

    try:
        await wait_for(latest, timeout=60)
    finally:
        agent.stop()
        await asyncio.wait_for(running, 30)


async def _audit(h: RunningHeadend, action: str) -> list[dict[str, Any]]:
    r = await h.api.get("/api/v1/audit", params={"action": action})
    assert r.status_code == 200, r.text
    return list(r.json())


async def test_enrolled_gateway_streams_on_its_new_certificate_and_its_key_never_left(
    headend: RunningHeadend, tmp_path: Path
) -> None:
    token = await _token(headend, "gw-onb", "site-onb")
    rec = Recorder()
    done = await _in_thread(enroll, rec.client, str(headend.api.base_url), token, tmp_path)
    files = done.files
    assert (done.gateway_id, done.site_id) == ("gw-onb", "site-onb")
    assert stat.S_IMODE(files.key.stat().st_mode) == 0o600
    # What went over the wire: the token, a CSR, nothing of the key.
    key = serialization.load_pem_private_key(files.key.read_bytes(), password=None)
    secrets = [
        files.key.read_bytes(),
        key.private_bytes(
            serialization.Encoding.DER,
            serialization.PrivateFormat.PKCS8,
            serialization.NoEncryption(),
        ),
        format(key.private_numbers().private_value, "x").encode(),  # type: ignore[union-attr]
    ]
    assert [r.url.path for r in rec.sent] == ["/api/v1/enroll/describe", "/api/v1/enroll"]
    assert b"CERTIFICATE REQUEST" in rec.bodies()[1]
    for body in rec.bodies():
        assert b"PRIVATE KEY" not in body
        assert not any(s in body for s in secrets)
    # Enrolled for the token's site, and the agent streams on the new certificate.
    r = await headend.api.get("/api/v1/sites/site-onb/gateways")
    assert [e["gateway_id"] for e in r.json()] == ["gw-onb"]
    await _streams_telemetry(headend, _site(headend, files, "gw-onb", "site-onb"))
    certs = (await headend.api.get("/api/v1/gateways/gw-onb/certificates")).json()
    assert [c["fingerprint"] for c in certs] == [done.fingerprint]
    assert certs[0]["first_seen"] is not None  # presented on the stream
    [issued] = [e for e in await _audit(headend, "gateway.certificate_issue")]
    assert issued["outcome"] == "ok" and issued["detail"]["fingerprint"] == done.fingerprint

    # The token is spent: a replay is refused, naming the token.
    with pytest.raises(EnrollError, match=r"409 \[token_used\] token: "):
        await _in_thread(enroll, rec.client, str(headend.api.base_url), token, tmp_path / "again")
    assert not (tmp_path / "again" / "tls" / "gateway.key").exists()
    refused = [e for e in await _audit(headend, "gateway.certificate_issue")]
    assert [e["outcome"] for e in refused] == ["ok", "refused"]
    assert refused[1]["detail"]["code"] == "token_used"


async def test_a_csr_for_another_gateway_is_refused_and_does_not_spend_the_token(
    headend: RunningHeadend, tmp_path: Path
) -> None:
    token = await _token(headend, "gw-a", "site-a")
    base = str(headend.api.base_url)
    with httpx.Client(timeout=30) as client:
        with pytest.raises(EnrollError, match=r"422 \[csr_mismatch\] csr: .*gw-b.*gw-a"):
            await _in_thread(enroll, client, base, token, tmp_path / "b", "gw-b")
        # A URI SAN naming another gateway, with the right CN, is no better.
        csr = make_csr(new_key(), "gw-a", "spiffe://gridpilot/gateway/gw-b").decode()
        r = await headend.api.post("/api/v1/enroll", json={"token": token, "csr": csr})
        assert (r.status_code, r.json()["code"], r.json()["field"]) == (
            422,
            "csr_mismatch",
            "csr",
        )
        # Still usable by the gateway it is for.
        done = await _in_thread(enroll, client, base, token, tmp_path / "a")
    assert done.gateway_id == "gw-a"
    r = await headend.api.get("/api/v1/sites/site-a/gateways")
    assert [e["gateway_id"] for e in r.json()] == ["gw-a"]


@pytest.mark.parametrize(
    ("body", "status", "code", "field"),
    [
        ({"token": "gpe_" + "x" * 43, "csr": "PEM"}, 403, "token_unknown", "token"),
        ({"token": "TOKEN", "csr": "not a csr"}, 422, "csr_invalid", "csr"),
        ({"token": "TOKEN"}, 422, "validation_failed", "csr"),
        ({"token": "TOKEN", "csr": "x" * 20_000}, 422, "validation_failed", "csr"),
        ({"token": "TOKEN", "csr": "PEM", "extra": 1}, 422, "validation_failed", "extra"),
    ],
)
async def test_bad_enrollments_are_4xx_naming_the_field(
    headend: RunningHeadend, body: dict[str, Any], status: int, code: str, field: str
) -> None:
    token = await _token(headend, "gw-bad", "site-bad")
    pem = make_csr(new_key(), "gw-bad").decode()
    sent = {k: (token if v == "TOKEN" else pem if v == "PEM" else v) for k, v in body.items()}
    async with httpx.AsyncClient(base_url=str(headend.api.base_url)) as anonymous:
        r = await anonymous.post("/api/v1/enroll", json=sent)
    assert (r.status_code, r.json()["code"], r.json()["field"]) == (status, code, field), r.text


async def test_an_expired_token_is_refused_and_tokens_are_stored_hashed(
    headend: RunningHeadend,
) -> None:
    token = await _token(headend, "gw-old", "site-old", ttl_s=60)
    with psycopg.connect(headend.settings.database_url, autocommit=True) as conn:
        stored = conn.execute("SELECT token_hash, prefix FROM enrollment_tokens").fetchall()
        assert all(token not in (h, p) for h, p in stored)
        conn.execute("UPDATE enrollment_tokens SET expires_at = now() - interval '1 second'")
    csr = make_csr(new_key(), "gw-old").decode()
    r = await headend.api.post("/api/v1/enroll", json={"token": token, "csr": csr})
    assert (r.status_code, r.json()["code"], r.json()["field"]) == (403, "token_expired", "token")
    r = await headend.api.post(
        "/api/v1/enrollment-tokens", json={"gateway_id": "gw-x", "site_id": "s", "ttl_s": 10}
    )
    assert (r.status_code, r.json()["field"]) == (422, "ttl_s")


async def test_renewal_with_the_current_key_gives_a_working_new_certificate(
    headend: RunningHeadend, tmp_path: Path
) -> None:
    token = await _token(headend, "gw-ren", "site-ren")
    base = str(headend.api.base_url)
    rec = Recorder()
    first = await _in_thread(enroll, rec.client, base, token, tmp_path)
    old_key = first.files.key.read_bytes()
    second = await _in_thread(renew, rec.client, tmp_path)
    assert second.fingerprint != first.fingerprint
    assert first.files.key.read_bytes() != old_key  # a new key, made here
    assert rec.sent[-1].url.path == "/api/v1/enroll/renew"
    assert b"PRIVATE KEY" not in rec.sent[-1].content
    await _streams_telemetry(headend, _site(headend, second.files, "gw-ren", "site-ren"))
    [renewed] = await _audit(headend, "gateway.certificate_renew")
    assert renewed["detail"]["previous"] == first.fingerprint

    # A revoked gateway cannot renew its way back.
    r = await headend.api.post("/api/v1/gateways/gw-ren/revoke", json={"reason": "test"})
    assert r.status_code == 200, r.text
    with pytest.raises(EnrollError, match=r"403 \[certificate_refused\] certificate: .*revoked"):
        await _in_thread(renew, rec.client, tmp_path)
    # Nor can a request without the current key's signature.
    body = {
        "certificate": second.files.cert.read_text(),
        "csr": make_csr(new_key(), "gw-ren").decode(),
        "proof": "bm90IGEgc2lnbmF0dXJl",
    }
    r = await headend.api.post("/api/v1/enroll/renew", json=body)
    assert (r.status_code, r.json()["field"]) == (422, "proof")


async def test_two_gateways_racing_with_one_token_get_one_certificate(
    headend: RunningHeadend, tmp_path: Path
) -> None:
    token = await _token(headend, "gw-race", "site-race")
    base = str(headend.api.base_url)

    def attempt(i: int) -> str:
        with httpx.Client(timeout=60) as client:
            try:
                return enroll(client, base, token, tmp_path / str(i)).fingerprint
            except EnrollError as exc:
                return str(exc)

    results = await asyncio.gather(*(_in_thread(attempt, i) for i in range(4)))
    won = [r for r in results if "token_used" not in r]
    assert len(won) == 1, results
    certs = (await headend.api.get("/api/v1/gateways/gw-race/certificates")).json()
    assert [c["fingerprint"] for c in certs] == won


async def test_without_a_ca_enrollment_answers_404_naming_the_setting(
    database_url: str, temporal_env: Any, task_queue: str, test_pki: TestPki
) -> None:
    address = temporal_env.client.service_client.config.target_host
    async with running_headend(database_url, address, task_queue, test_pki, pki_dir=None) as h:
        token = await _token(h, "gw-no-ca", "site-no-ca")
        r = await h.api.post("/api/v1/enroll/describe", json={"token": token})
    assert (r.status_code, r.json()["code"]) == (404, "enrollment_not_configured")
    assert "GRIDPILOT_PKI_DIR" in r.json()["message"]
