"""Gateway onboarding over REST: an admin issues a one-time enrollment token;
the gateway spends it with a CSR (its key never leaves it) and gets its
certificate; later it renews with a CSR signed by its current key
(``ingest/onboarding.py`` does the work, ``gridpilot agent enroll|renew`` is
the client)."""

from __future__ import annotations

from datetime import datetime
from typing import Annotated, Any

from fastapi import APIRouter, Query, Request
from pydantic import BaseModel, Field

from gridpilot.core.errors import Refused
from gridpilot.ingest.onboarding import GatewayOnboarding, SignedGateway
from gridpilot.security.enroll_tokens import MAX_TTL_S, MIN_TTL_S, EnrollmentTokens
from gridpilot.security.identity import GATEWAY_ID_PATTERN

from .admin import SecurityDeps, actor
from .inputs import RequestBody
from .owned import require_site_free_or_own

router = APIRouter(prefix="/api/v1", tags=["enrollment"])

ID = GATEWAY_ID_PATTERN.pattern
PEM_MAX = 16_384  # a CSR or certificate is ~1 KB; RSA-4096 with a chain well under this
Token = Annotated[
    str, Field(min_length=8, max_length=128, description="the one-time enrollment token")
]


def _onboarding(request: Request) -> GatewayOnboarding:
    deps: SecurityDeps = request.app.state.security
    if deps.onboarding is None:
        raise Refused(
            "enrollment is not set up on this API", code="enrollment_not_configured", status=404
        )
    return deps.onboarding


def _peer(request: Request) -> str:
    return request.client.host if request.client else ""


class TokenRequest(RequestBody):
    gateway_id: str = Field(pattern=ID, description="the gateway the token enrolls")
    site_id: str = Field(pattern=ID, description="the site it is enrolled for")
    ttl_s: int | None = Field(
        None,
        ge=MIN_TTL_S,
        le=MAX_TTL_S,
        description="lifetime in seconds (default: GRIDPILOT_ENROLL_TOKEN_TTL_S)",
    )
    max_asset_kw: float | None = Field(
        None,
        ge=0,
        le=1_000_000,
        allow_inf_nan=False,
        description="the enrollment's bound: larger new assets are held for approval",
    )


class TokenView(BaseModel):
    id: str
    prefix: str
    gateway_id: str
    site_id: str
    max_asset_kw: float | None
    created_by: str
    created_at: datetime
    expires_at: datetime
    used_at: datetime | None
    used_fingerprint: str | None


class TokenCreated(TokenView):
    token: str = Field(description="the enrollment token; shown once, not stored")


class Describe(RequestBody):
    token: Token


class DescribeView(BaseModel):
    gateway_id: str
    site_id: str
    expires_at: datetime
    identity: str = Field(description="the URI SAN the certificate will carry")


class Enroll(RequestBody):
    token: Token
    csr: str = Field(
        min_length=1,
        max_length=PEM_MAX,
        description="PEM CSR made on the gateway: CN (and any URI SAN) = the token's gateway",
    )


class Renew(RequestBody):
    certificate: str = Field(
        min_length=1, max_length=PEM_MAX, description="the gateway's current certificate (PEM)"
    )
    csr: str = Field(min_length=1, max_length=PEM_MAX, description="PEM CSR for the new key")
    proof: str = Field(
        min_length=1,
        max_length=2048,
        description="base64 signature of 'gridpilot-renew-v1\\n' + the CSR's DER by the "
        "current certificate's key (ECDSA/PKCS#1 v1.5 with SHA-256)",
    )


class SignedView(BaseModel):
    gateway_id: str
    site_id: str
    certificate: str = Field(description="the signed client certificate (PEM)")
    ca_bundle: str = Field(description="the CA to trust for the headend (PEM)")
    fingerprint: str
    not_after: datetime


def _view(signed: SignedGateway) -> SignedView:
    return SignedView(**signed.__dict__)


@router.post("/enrollment-tokens", response_model=TokenCreated, status_code=201)
async def create_enrollment_token(request: Request, body: TokenRequest) -> dict[str, Any]:
    """Issue a one-time token that lets one gateway get its certificate and be
    enrolled for one site (`gridpilot agent enroll --token`)."""
    onboarding, who = _onboarding(request), actor(request)
    deps: SecurityDeps = request.app.state.security
    async with deps.audit.action(who, "enrollment_token.create", body.gateway_id, recorded=True):
        await require_site_free_or_own(request, body.site_id)
        info, secret = await onboarding.issue_token(
            body.gateway_id, body.site_id, who, body.ttl_s, body.max_asset_kw
        )
    return {**info, "token": secret}


@router.get("/enrollment-tokens", response_model=list[TokenView])
async def list_enrollment_tokens(
    request: Request,
    include_spent: Annotated[bool, Query(description="also used and expired tokens")] = False,
) -> list[dict[str, Any]]:
    """Enrollment tokens (never the token itself): by default the usable ones."""
    tokens: EnrollmentTokens = _onboarding(request).tokens
    return await tokens.list(include_spent)


@router.post("/enroll/describe", response_model=DescribeView)
async def describe_enrollment(request: Request, body: Describe) -> dict[str, Any]:
    """What a usable token enrolls (no bearer token: the enrollment token is
    the credential). Spends nothing."""
    return await _onboarding(request).describe(body.token, _peer(request))


@router.post("/enroll", response_model=SignedView, status_code=201)
async def enroll(request: Request, body: Enroll) -> SignedView:
    """Spend a one-time token: the CSR's key is certified for the token's
    gateway, which is enrolled for the token's site."""
    return _view(await _onboarding(request).enroll(body.token, body.csr, _peer(request)))


@router.post("/enroll/renew", response_model=SignedView, status_code=201)
async def renew(request: Request, body: Renew) -> SignedView:
    """A new certificate for a new key, for the holder of a current, unrevoked
    certificate of this CA (``proof``: the CSR signed with its key)."""
    return _view(
        await _onboarding(request).renew(body.certificate, body.csr, body.proof, _peer(request))
    )
