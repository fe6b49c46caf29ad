"""JWT bearer tokens against a real JWKS endpoint (a local HTTP server):
pinned algorithms, required aud/iss/exp, unknown kid, claim → role."""

from __future__ import annotations

import json
import threading
import time
from collections.abc import Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any

import jwt
import pytest
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import rsa

from gridpilot.security.oidc import JwtVerifier, OidcConfig, parse_role_map
from gridpilot.security.principal import AuthError, Role

ISSUER = "https://idp.example"
AUDIENCE = "gridpilot-api"


class Idp:
    """An RSA signing key published as a JWKS with kid ``k1``."""

    def __init__(self) -> None:
        self.key = rsa.generate_private_key(public_exponent=65537, key_size=2048)
        jwk = json.loads(jwt.algorithms.RSAAlgorithm.to_jwk(self.key.public_key()))
        self.jwks = {"keys": [{**jwk, "kid": "k1", "alg": "RS256", "use": "sig"}]}
        self.fetches = 0

    def token(self, headers: dict[str, Any] | None = None, **claims: Any) -> str:
        now = int(time.time())
        body = {"iss": ISSUER, "aud": AUDIENCE, "sub": "alice", "iat": now, "exp": now + 300}
        body.update(claims)
        body = {k: v for k, v in body.items() if v is not None}
        return jwt.encode(
            body, self.key, algorithm="RS256", headers={"kid": "k1", **(headers or {})}
        )


@pytest.fixture(scope="module")
def idp() -> Iterator[tuple[Idp, str]]:
    provider = Idp()

    class Handler(BaseHTTPRequestHandler):
        def do_GET(self) -> None:
            provider.fetches += 1
            body = json.dumps(provider.jwks).encode()
            self.send_response(200)
            self.send_header("Content-Type", "application/json")
            self.send_header("Content-Length", str(len(body)))
            self.end_headers()
            self.wfile.write(body)

        def log_message(self, *args: Any) -> None:
            pass

    server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        yield provider, f"http://127.0.0.1:{server.server_port}/jwks.json"
    finally:
        server.shutdown()


def verifier(url: str, **kw: Any) -> JwtVerifier:
    return JwtVerifier(OidcConfig(jwks_url=url, issuer=ISSUER, audience=AUDIENCE, **kw))


def test_valid_token_maps_the_role_claim(idp: tuple[Idp, str]) -> None:
    provider, url = idp
    p = verifier(url).verify(provider.token(roles=["operator", "unknown-role"]))
    assert p.name == "oidc:alice" and p.roles == {Role.OPERATOR} and p.method == "oidc"
    mapped = verifier(url, role_map=parse_role_map("grid-audit=auditor"))
    assert mapped.verify(provider.token(roles="grid-audit")).roles == {Role.AUDITOR}
    assert verifier(url).verify(provider.token()).roles == frozenset()


def test_the_tenant_claim_names_the_principals_tenant(idp: tuple[Idp, str]) -> None:
    provider, url = idp
    assert verifier(url).verify(provider.token(tenant="acme")).tenant_id == "acme"
    assert verifier(url).verify(provider.token()).tenant_id == "default"  # as before tenancy
    custom = verifier(url, tenant_claim="org")
    assert custom.verify(provider.token(org="bolt", tenant="acme")).tenant_id == "bolt"
    for bad in ("Not A Tenant", ["acme"], 7):
        with pytest.raises(AuthError, match="'tenant' claim is not a tenant id"):
            verifier(url).verify(provider.token(tenant=bad))
    admin = verifier(url, role_map=parse_role_map("ops=platform-admin"))
    assert admin.verify(provider.token(roles="ops")).platform


def _unsigned(claims: dict[str, Any]) -> str:
    import base64

    def b64(d: dict[str, Any]) -> str:
        return base64.urlsafe_b64encode(json.dumps(d).encode()).rstrip(b"=").decode()

    return f"{b64({'alg': 'none', 'kid': 'k1', 'typ': 'JWT'})}.{b64(claims)}."


def _hs256_with_public_key(provider: Idp) -> str:
    """Algorithm confusion: HMAC keyed with the (public) RSA key's PEM."""
    import base64
    import hashlib
    import hmac

    pem = provider.key.public_key().public_bytes(
        serialization.Encoding.PEM, serialization.PublicFormat.SubjectPublicKeyInfo
    )
    now = int(time.time())
    claims = {"iss": ISSUER, "aud": AUDIENCE, "sub": "mallory", "iat": now, "exp": now + 300}

    def b64(raw: bytes) -> str:
        return base64.urlsafe_b64encode(raw).rstrip(b"=").decode()

    head = b64(json.dumps({"alg": "HS256", "kid": "k1", "typ": "JWT"}).encode())
    body = b64(json.dumps(claims).encode())
    sig = hmac.new(pem, f"{head}.{body}".encode(), hashlib.sha256).digest()
    return f"{head}.{body}.{b64(sig)}"


@pytest.mark.parametrize(
    ("case", "message"),
    [
        ("alg_none", "algorithm is not allowed"),
        ("hs256_confusion", "algorithm is not allowed"),
        ("wrong_aud", "audience"),
        ("wrong_iss", "issuer"),
        ("expired", "expired"),
        ("no_exp", "MissingRequiredClaimError"),
        ("unknown_kid", "unknown signing key"),
        ("garbage", "malformed"),
    ],
)
def test_bad_jwts_are_refused(idp: tuple[Idp, str], case: str, message: str) -> None:
    provider, url = idp
    now = int(time.time())
    token = {
        "alg_none": lambda: _unsigned(
            {"iss": ISSUER, "aud": AUDIENCE, "sub": "x", "exp": now + 60}
        ),
        "hs256_confusion": lambda: _hs256_with_public_key(provider),
        "wrong_aud": lambda: provider.token(aud="someone-else"),
        "wrong_iss": lambda: provider.token(iss="https://evil.example"),
        "expired": lambda: provider.token(iat=now - 3600, exp=now - 600),
        "no_exp": lambda: provider.token(exp=None),
        "unknown_kid": lambda: provider.token(headers={"kid": "rotated-away"}),
        "garbage": lambda: "not.a.jwt",
    }[case]()
    with pytest.raises(AuthError, match=message) as err:
        verifier(url).verify(token)
    assert token not in str(err.value)


def test_unknown_kid_refetches_the_jwks_at_most_once_per_interval(idp: tuple[Idp, str]) -> None:
    provider, url = idp
    v = verifier(url)
    v.verify(provider.token())
    before = provider.fetches
    for _ in range(5):
        with pytest.raises(AuthError):
            v.verify(provider.token(headers={"kid": "nope"}))
    assert provider.fetches - before <= 1


def test_symmetric_or_none_algorithms_cannot_be_configured() -> None:
    for algs in (("HS256",), ("none",), ()):
        with pytest.raises(ValueError, match="not allowed"):
            OidcConfig("http://x", ISSUER, AUDIENCE, algorithms=algs)
