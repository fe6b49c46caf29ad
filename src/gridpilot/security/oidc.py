"""Optional OIDC/JWT bearer tokens, verified against the IdP's JWKS.

The algorithms are pinned by configuration (asymmetric only; never taken from
the token's header), and ``exp``, ``iat``, ``iss`` and ``aud`` are required.
A claim (``roles`` by default, a string or a list) maps to our roles, either
by name or through an explicit map; another (``tenant`` by default, a
string) names the caller's tenant: without it, the ``default`` tenant (a
single-tenant deployment's IdP needs no new claim).
"""

from __future__ import annotations

import time
from dataclasses import dataclass, field
from typing import Any

import jwt

from gridpilot.schema.tables import DEFAULT_TENANT

from .principal import AuthError, Principal, Role
from .tenants import TENANT_ID

ALLOWED_ALGORITHMS = frozenset(
    {"RS256", "RS384", "RS512", "PS256", "PS384", "PS512", "ES256", "ES384", "ES512", "EdDSA"}
)
# An unknown kid refetches the JWKS at most this often (key rotation), so
# tokens with random kids cannot turn us into a load generator on the IdP.
REFRESH_EVERY_S = 30.0


@dataclass(frozen=True)
class OidcConfig:
    jwks_url: str
    issuer: str
    audience: str
    algorithms: tuple[str, ...] = ("RS256", "ES256")
    role_claim: str = "roles"
    principal_claim: str = "sub"
    role_map: dict[str, Role] = field(default_factory=dict)
    leeway_s: float = 30.0
    tenant_claim: str = "tenant"

    def __post_init__(self) -> None:
        bad = set(self.algorithms) - ALLOWED_ALGORITHMS
        if bad or not self.algorithms:
            raise ValueError(
                f"OIDC algorithms {sorted(bad)} are not allowed; use {sorted(ALLOWED_ALGORITHMS)}"
            )


def parse_role_map(spec: str) -> dict[str, Role]:
    """``"grid-ops=operator, grid-audit=auditor"`` → {claim value: role}."""
    out: dict[str, Role] = {}
    for item in filter(None, (p.strip() for p in spec.split(","))):
        value, sep, role = item.partition("=")
        if not sep:
            raise ValueError(f"role map entry {item!r} is not value=role")
        out[value.strip()] = Role(role.strip())
    return out


class JwtVerifier:
    def __init__(self, cfg: OidcConfig, jwks: jwt.PyJWKClient | None = None) -> None:
        self.cfg = cfg
        self._jwks = jwks or jwt.PyJWKClient(cfg.jwks_url, cache_keys=True, timeout=5)
        self._last_refresh = 0.0

    def _key(self, kid: str) -> Any:
        try:
            keys = self._jwks.get_signing_keys()
            key = self._jwks.match_kid(keys, kid)
            if key is None and time.monotonic() - self._last_refresh > REFRESH_EVERY_S:
                self._last_refresh = time.monotonic()
                key = self._jwks.match_kid(self._jwks.get_signing_keys(refresh=True), kid)
        except jwt.PyJWKClientError as exc:
            raise AuthError(f"cannot get the IdP's signing keys: {exc}") from None
        if key is None:
            raise AuthError("unknown signing key (kid)")
        return key.key

    def verify(self, token: str) -> Principal:
        """Blocking (may fetch the JWKS): call it in a thread."""
        cfg = self.cfg
        try:
            header = jwt.get_unverified_header(token)
        except jwt.PyJWTError:
            raise AuthError("malformed bearer token") from None
        if header.get("alg") not in cfg.algorithms:
            raise AuthError("token algorithm is not allowed")
        kid = header.get("kid")
        if not isinstance(kid, str) or not kid:
            raise AuthError("token has no key id (kid)")
        try:
            claims = jwt.decode(
                token,
                self._key(kid),
                algorithms=list(cfg.algorithms),
                audience=cfg.audience,
                issuer=cfg.issuer,
                leeway=cfg.leeway_s,
                options={"require": ["exp", "iat", "iss", "aud"]},
            )
        except jwt.ExpiredSignatureError:
            raise AuthError("token has expired") from None
        except jwt.InvalidAudienceError:
            raise AuthError("token audience is not this API") from None
        except jwt.InvalidIssuerError:
            raise AuthError("token issuer is not trusted") from None
        except jwt.PyJWTError as exc:
            raise AuthError(f"token rejected: {type(exc).__name__}") from None
        subject = claims.get(cfg.principal_claim)
        if not isinstance(subject, str) or not subject:
            raise AuthError(f"token has no {cfg.principal_claim!r} claim")
        return Principal(
            f"oidc:{subject}",
            self._roles(claims.get(cfg.role_claim)),
            "oidc",
            tenant_id=self._tenant(claims.get(cfg.tenant_claim)),
        )

    def _tenant(self, raw: object) -> str:
        if raw is None:
            return DEFAULT_TENANT
        if not isinstance(raw, str) or not TENANT_ID.match(raw):
            raise AuthError(f"token's {self.cfg.tenant_claim!r} claim is not a tenant id")
        return raw

    def _roles(self, raw: object) -> frozenset[Role]:
        values = [raw] if isinstance(raw, str) else raw if isinstance(raw, list) else []
        roles: set[Role] = set()
        for v in values:
            if not isinstance(v, str):
                continue
            if self.cfg.role_map:
                if v in self.cfg.role_map:
                    roles.add(self.cfg.role_map[v])
            elif v in Role.__members__.values():
                roles.add(Role(v))
        return frozenset(roles)
