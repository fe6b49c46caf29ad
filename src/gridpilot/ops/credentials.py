"""The headend's credentials from its settings: the AgentGateway's mTLS, the
enrollment CA, the OIDC verifier. A bad one is a HeadendError: one clear line."""

from __future__ import annotations

from datetime import timedelta

import grpc
from sqlalchemy.ext.asyncio import AsyncEngine

from gridpilot.ingest.onboarding import load_ca
from gridpilot.security.oidc import JwtVerifier, OidcConfig, parse_role_map
from gridpilot.security.pki import Pki, PkiError
from gridpilot.security.signing import EvidenceSigner, SigningKeyError
from gridpilot.security.tls import TlsConfigError, server_credentials

from .settings import Settings
from .usage_webhook import UsageWebhook


class HeadendError(Exception):
    """A start-up problem worth one clear line to the operator."""


def grpc_credentials(settings: Settings) -> grpc.ServerCredentials | None:
    """mTLS credentials of the AgentGateway; None only in explicit insecure-dev mode."""
    s = settings
    if s.grpc_insecure:
        return None
    try:
        return server_credentials(s.grpc_tls_cert_file, s.grpc_tls_key_file, s.grpc_client_ca_file)
    except TlsConfigError as exc:
        raise HeadendError(str(exc)) from None


def enrollment_ca(settings: Settings) -> Pki | None:
    try:
        return load_ca(settings.pki_dir, settings.trust_domain)
    except PkiError as exc:
        raise HeadendError(f"GRIDPILOT_PKI_DIR: {exc}") from None


def evidence_signer(settings: Settings) -> EvidenceSigner | None:
    """The key that signs evidence exports (created when missing); None: not set up."""
    path = settings.evidence_key_path
    if path is None:
        return None
    try:
        return EvidenceSigner.load_or_create(path)
    except (SigningKeyError, OSError) as exc:
        raise HeadendError(f"GRIDPILOT_EVIDENCE_KEY_FILE: {exc}") from None


def usage_webhook(settings: Settings, engine: AsyncEngine) -> UsageWebhook | None:
    """The usage webhook (ops/usage_webhook.py); None when no URL is set."""
    s = settings
    if not s.usage_webhook_url or s.usage_webhook_secret is None:
        return None
    grace = timedelta(seconds=2 * s.usage_flush_s)
    return UsageWebhook(
        engine, s.usage_webhook_url, s.usage_webhook_secret.get_secret_value(), grace
    )


def jwt_verifier(settings: Settings) -> JwtVerifier | None:
    s = settings
    if not s.oidc_jwks_url:
        return None
    assert s.oidc_issuer and s.oidc_audience  # checked by Settings
    return JwtVerifier(
        OidcConfig(
            jwks_url=s.oidc_jwks_url,
            issuer=s.oidc_issuer,
            audience=s.oidc_audience,
            algorithms=s.oidc_algorithm_list,
            role_claim=s.oidc_role_claim,
            principal_claim=s.oidc_principal_claim,
            tenant_claim=s.oidc_tenant_claim,
            role_map=parse_role_map(s.oidc_role_map),
        )
    )
