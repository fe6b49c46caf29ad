"""Gateway onboarding: a one-time token and a CSR in, a signed certificate out.

The gateway makes its own key and sends only a CSR (``gridpilot agent
enroll``); the headend's CA (``GRIDPILOT_PKI_DIR``) signs the public key with
the gateway certificate profile. Enrolling spends the token, enrolls the
gateway for the token's site, records the certificate (so revoking the
gateway revokes it) and audits it, all in one transaction. Renewal is
authenticated by the current certificate: the request carries it and the new
CSR signed with its key (``security.csr``); a revoked, expired or foreign
certificate cannot renew (enroll again with a fresh token instead).
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import structlog
from cryptography import x509
from cryptography.exceptions import InvalidSignature
from cryptography.hazmat.primitives import serialization
from sqlalchemy.ext.asyncio import AsyncEngine

from gridpilot.core.errors import DomainError, Refused
from gridpilot.schema import tenancy
from gridpilot.security.audit import Actor, AuditEvent, AuditLog
from gridpilot.security.certs import CertificateRegistry
from gridpilot.security.csr import check_csr, check_renewal_proof
from gridpilot.security.enroll_tokens import DEFAULT_TTL_S, EnrollmentTokens, check_usable
from gridpilot.security.identity import (
    GatewayIdentity,
    IdentityError,
    gateway_uri,
    identity_from_cert,
)
from gridpilot.security.pki import GATEWAY_DAYS, Pki, PkiError

from .enrollment import EnrollmentStore

log = structlog.get_logger(__name__)
ISSUE, RENEW = "gateway.certificate_issue", "gateway.certificate_renew"


@dataclass(frozen=True)
class SignedGateway:
    gateway_id: str
    site_id: str
    certificate: str  # PEM
    ca_bundle: str  # PEM: the CA that signed it (and the headend's certificate)
    fingerprint: str
    not_after: datetime


def _refused_cert(message: str, code: str = "certificate_refused", status: int = 403) -> Refused:
    return Refused(f"certificate: {message}", code=code, field="certificate", status=status)


class GatewayOnboarding:
    def __init__(
        self,
        audit: AuditLog,
        tokens: EnrollmentTokens,
        enrollment: EnrollmentStore,
        certs: CertificateRegistry,
        pki: Pki | None,
        cert_days: int = GATEWAY_DAYS,
        token_ttl_s: int = DEFAULT_TTL_S,
    ) -> None:
        self._audit = audit
        self.tokens = tokens
        self._enrollment = enrollment
        self._certs = certs
        self._pki = pki
        self._days = cert_days
        self._ttl_s = token_ttl_s

    async def issue_token(
        self,
        gateway_id: str,
        site_id: str,
        by: Actor,
        ttl_s: int | None = None,
        max_asset_kw: float | None = None,
    ) -> tuple[dict[str, Any], str]:
        """A one-time token for the gateway and site (TTL: the default unless given)."""
        return await self.tokens.create(gateway_id, site_id, by, ttl_s or self._ttl_s, max_asset_kw)

    @property
    def _engine(self) -> AsyncEngine:
        return self._audit.engine

    def _ca(self) -> Pki:
        if self._pki is None:
            raise Refused(
                "enrollment is not set up on this headend: it needs GRIDPILOT_PKI_DIR "
                "(the CA that signs gateway certificates)",
                code="enrollment_not_configured",
                status=404,
            )
        return self._pki

    async def describe(self, secret: str, peer: str = "") -> dict[str, Any]:
        """What a usable token enrolls (the gateway makes its CSR from it)."""
        pki = self._ca()
        token = await self._usable(secret, peer)
        return {
            "gateway_id": token["gateway_id"],
            "site_id": token["site_id"],
            "expires_at": token["expires_at"],
            "identity": gateway_uri(pki.trust_domain, token["gateway_id"]),
        }

    async def enroll(self, secret: str, csr_pem: str, peer: str = "") -> SignedGateway:
        pki = self._ca()
        token = await self._usable(secret, peer)
        gateway_id, site_id = token["gateway_id"], token["site_id"]
        who = _token_actor(token)
        try:
            csr = check_csr(csr_pem, gateway_id, pki.trust_domain)
            cert = pki.sign_gateway(csr.public_key(), gateway_id, self._days)
            ident = identity_from_cert(cert, pki.trust_domain)
            async with self._engine.begin() as conn:
                spent = await self.tokens.spend(conn, secret, ident.fingerprint)
                # The enrollment is the token's tenant's (its issuing admin's).
                with tenancy.scope(spent["tenant_id"]):
                    await self._enrollment.enroll(
                        site_id, gateway_id, token["max_asset_kw"], who, conn
                    )
                await self._certs.record_issued(conn, ident)
                await self._audit.append(
                    AuditEvent(
                        who,
                        ISSUE,
                        gateway_id,
                        "ok",
                        _detail(ident, site_id, token_id=token["id"], peer=peer),
                    ),
                    conn,
                )
        except DomainError as exc:
            await self._refusal(who, ISSUE, gateway_id, exc, peer)
            raise
        return self._signed(pki, cert, ident, site_id)

    async def _usable(self, secret: str, peer: str) -> dict[str, Any]:
        """The token's record if it can still enroll. An unknown token is not
        audited (no target to name; the request log has it); a used or
        expired one is, as a refused certificate issue for its gateway."""
        token = await self.tokens.find(secret)
        try:
            check_usable(token)
        except DomainError as exc:
            await self._refusal(_token_actor(token), ISSUE, token["gateway_id"], exc, peer)
            raise
        return token

    async def renew(self, cert_pem: str, csr_pem: str, proof: str, peer: str = "") -> SignedGateway:
        pki = self._ca()
        current = _load_cert(cert_pem)
        try:
            current.verify_directly_issued_by(pki.ca_cert)
        except (ValueError, TypeError, InvalidSignature):
            raise _refused_cert("not issued by this headend's CA") from None
        now = datetime.now(UTC)
        if not current.not_valid_before_utc <= now < current.not_valid_after_utc:
            raise _refused_cert(
                f"expired at {current.not_valid_after_utc:%Y-%m-%d %H:%M} UTC (or not yet "
                "valid); enroll again with a new enrollment token",
                "certificate_expired",
            )
        try:
            old = identity_from_cert(current, pki.trust_domain)
        except IdentityError as exc:
            raise _refused_cert(str(exc)) from None
        gateway_id = old.gateway_id
        who = Actor(f"gateway:{gateway_id}", "gateway", "certificate")
        try:
            check_renewal_proof(current, csr_pem, proof)
            if await self._certs.revoked_among([old.fingerprint]):
                raise _refused_cert(f"it is revoked ({old.fingerprint[:16]}…)")
            sites = [
                e["site_id"] for e in await self._enrollment.list_enrollments(gateway_id=gateway_id)
            ]
            site_id = old.site_id or (sites[0] if sites else None)
            if site_id is None:
                raise _refused_cert(f"gateway {gateway_id} is enrolled for no site")
            csr = check_csr(csr_pem, gateway_id, pki.trust_domain)
            cert = pki.sign_gateway(csr.public_key(), gateway_id, self._days, old.site_id)
            ident = identity_from_cert(cert, pki.trust_domain)
            async with self._engine.begin() as conn:
                await self._certs.record_issued(conn, ident)
                await self._audit.append(
                    AuditEvent(
                        who,
                        RENEW,
                        gateway_id,
                        "ok",
                        _detail(ident, site_id, previous=old.fingerprint, peer=peer),
                    ),
                    conn,
                )
        except DomainError as exc:
            await self._refusal(who, RENEW, gateway_id, exc, peer)
            raise
        return self._signed(pki, cert, ident, site_id)

    def _signed(
        self, pki: Pki, cert: x509.Certificate, ident: GatewayIdentity, site_id: str
    ) -> SignedGateway:
        return SignedGateway(
            gateway_id=ident.gateway_id,
            site_id=site_id,
            certificate=cert.public_bytes(serialization.Encoding.PEM).decode(),
            ca_bundle=pki.ca_file.read_text(),
            fingerprint=ident.fingerprint,
            not_after=ident.not_after,
        )

    async def _refusal(
        self, who: Actor, action: str, gateway_id: str, exc: DomainError, peer: str
    ) -> None:
        detail = {"code": exc.code, "message": exc.message[:500], "peer": peer}
        try:
            await self._audit.append(AuditEvent(who, action, gateway_id, "refused", detail))
        except Exception as err:  # the refusal stands; the log keeps what the audit missed
            log.error("audit_write_failed", action=action, error=str(err))


def load_ca(pki_dir: Path | None, trust_domain: str) -> Pki | None:
    """The CA that signs gateways' CSRs (a ``gridpilot pki`` directory), if
    one is set; PkiError if it is unusable or of another trust domain."""
    if pki_dir is None:
        return None
    try:
        pki = Pki(pki_dir)
    except (OSError, ValueError) as exc:
        raise PkiError(f"{pki_dir}: {exc}") from None
    if pki.trust_domain != trust_domain:
        raise PkiError(
            f"{pki_dir} is for trust domain {pki.trust_domain!r}, not {trust_domain!r} "
            "(GRIDPILOT_TRUST_DOMAIN)"
        )
    return pki


def _token_actor(token: dict[str, Any]) -> Actor:
    return Actor(f"enrollment-token:{token['id']}", "gateway", "enrollment_token")


def _detail(ident: GatewayIdentity, site_id: str, **extra: str) -> dict[str, Any]:
    return {
        "site_id": site_id,
        "fingerprint": ident.fingerprint,
        "serial": ident.serial,
        "not_after": ident.not_after.isoformat(),
        **extra,
    }


def _load_cert(pem: str) -> x509.Certificate:
    try:
        return x509.load_pem_x509_certificate(pem.encode())
    except ValueError:
        raise Refused(
            "certificate: not a PEM certificate", code="certificate_invalid", field="certificate"
        ) from None
