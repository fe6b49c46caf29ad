"""Gateway identity: the one URI SAN of an mTLS client certificate.

A gateway certificate names its gateway as ``spiffe://<trust domain>/gateway/<id>``
in exactly one URI SAN (the SPIFFE X509-SVID rule: more than one URI SAN is
refused). The headend takes the identity from the TLS auth context only, never
from anything the agent sends.
"""

from __future__ import annotations

import hashlib
import re
from dataclasses import dataclass
from datetime import datetime

from cryptography import x509
from cryptography.hazmat.primitives.serialization import Encoding
from cryptography.x509.oid import ExtendedKeyUsageOID

GATEWAY_ID_PATTERN = re.compile(r"^[A-Za-z0-9][A-Za-z0-9._-]{0,63}$")
TRUST_DOMAIN_PATTERN = re.compile(r"^[a-z0-9]([a-z0-9.-]{0,253}[a-z0-9])?$")


class IdentityError(Exception):
    """The peer certificate does not name one gateway of our trust domain."""


@dataclass(frozen=True)
class GatewayIdentity:
    gateway_id: str
    fingerprint: str  # SHA-256 of the DER certificate, hex
    serial: str  # hex
    not_before: datetime
    not_after: datetime


def gateway_uri(trust_domain: str, gateway_id: str) -> str:
    check_gateway_id(gateway_id)
    return f"spiffe://{trust_domain}/gateway/{gateway_id}"


def check_gateway_id(gateway_id: str) -> str:
    if not GATEWAY_ID_PATTERN.match(gateway_id):
        raise ValueError(
            f"{gateway_id!r} is not a gateway id (1-64 letters, digits, '.', '_' or '-')"
        )
    return gateway_id


def check_trust_domain(domain: str) -> str:
    if not TRUST_DOMAIN_PATTERN.match(domain):
        raise ValueError(f"{domain!r} is not a trust domain (lower-case DNS-like name)")
    return domain


def fingerprint(cert: x509.Certificate) -> str:
    return hashlib.sha256(cert.public_bytes(Encoding.DER)).hexdigest()


def identity_from_cert(cert: x509.Certificate, trust_domain: str) -> GatewayIdentity:
    try:
        san = cert.extensions.get_extension_for_class(x509.SubjectAlternativeName).value
    except x509.ExtensionNotFound:
        raise IdentityError("certificate has no subject alternative name") from None
    uris = san.get_values_for_type(x509.UniformResourceIdentifier)
    if len(uris) != 1:
        raise IdentityError(f"certificate must have exactly one URI SAN, it has {len(uris)}")
    prefix = f"spiffe://{trust_domain}/gateway/"
    uri = uris[0]
    if not uri.startswith(prefix):
        raise IdentityError(f"URI SAN {uri!r} is not {prefix}<gateway id>")
    gateway_id = uri[len(prefix) :]
    if not GATEWAY_ID_PATTERN.match(gateway_id):
        raise IdentityError(f"URI SAN {uri!r} does not end in a valid gateway id")
    try:
        eku = cert.extensions.get_extension_for_class(x509.ExtendedKeyUsage).value
    except x509.ExtensionNotFound:
        raise IdentityError("certificate has no extended key usage") from None
    if ExtendedKeyUsageOID.CLIENT_AUTH not in eku:
        raise IdentityError("certificate is not for client authentication")
    return GatewayIdentity(
        gateway_id=gateway_id,
        fingerprint=fingerprint(cert),
        serial=format(cert.serial_number, "x"),
        not_before=cert.not_valid_before_utc,
        not_after=cert.not_valid_after_utc,
    )


def identity_from_auth_context(
    auth_context: dict[str, list[bytes]], trust_domain: str
) -> GatewayIdentity:
    """From grpc's ``context.auth_context()`` of a verified mTLS peer."""
    pems = auth_context.get("x509_pem_cert") or []
    if not pems:
        raise IdentityError("no client certificate on this connection")
    try:
        cert = x509.load_pem_x509_certificate(pems[0])
    except ValueError as exc:
        raise IdentityError(f"unreadable client certificate: {exc}") from None
    return identity_from_cert(cert, trust_domain)
