"""Gateway identity: the one URI SAN of an mTLS client certificate.

A gateway certificate names its gateway as ``spiffe://<trust domain>/gateway/<id>``,
or its site too as ``spiffe://<trust domain>/site/<site id>/gateway/<id>``, in
exactly one URI SAN (the SPIFFE X509-SVID rule: more than one URI SAN is
refused). A certificate that names its site counts as the gateway's enrollment
for that site (docs/security.md). The headend takes the identity from the TLS
auth context only, never from anything the agent sends.
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
ID_PATTERN = GATEWAY_ID_PATTERN  # site ids in certificates follow the same rule
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
    site_id: str | None = None  # the site the certificate names, if any


def gateway_uri(trust_domain: str, gateway_id: str, site_id: str | None = None) -> str:
    check_gateway_id(gateway_id)
    if site_id is None:
        return f"spiffe://{trust_domain}/gateway/{gateway_id}"
    check_site_id(site_id)
    return f"spiffe://{trust_domain}/site/{site_id}/gateway/{gateway_id}"


def parse_gateway_uri(uri: str, trust_domain: str) -> tuple[str, str | None]:
    """(gateway id, site id or None) named by a gateway certificate's URI SAN."""
    root = f"spiffe://{trust_domain}/"
    if not uri.startswith(root):
        raise IdentityError(f"URI SAN {uri!r} is not {root}gateway/<gateway id>")
    parts = uri[len(root) :].split("/")
    if len(parts) == 2 and parts[0] == "gateway":
        gateway_id, site_id = parts[1], None
    elif len(parts) == 4 and parts[0] == "site" and parts[2] == "gateway":
        gateway_id, site_id = parts[3], parts[1]
        if not ID_PATTERN.match(site_id):
            raise IdentityError(f"URI SAN {uri!r} does not name a valid site id")
    else:
        raise IdentityError(
            f"URI SAN {uri!r} is not {root}gateway/<gateway id> "
            f"or {root}site/<site id>/gateway/<gateway id>"
        )
    if not GATEWAY_ID_PATTERN.match(gateway_id):
        raise IdentityError(f"URI SAN {uri!r} does not end in a valid gateway id")
    return gateway_id, site_id


def check_gateway_id(gateway_id: str) -> str:
    if not GATEWAY_ID_PATTERN.match(gateway_id):
        raise ValueError(
            f"{gateway_id!r} is not a gateway id (1-64 letters, digits, '.', '_' or '-')"
        )
    return gateway_id


def check_site_id(site_id: str) -> str:
    if not ID_PATTERN.match(site_id):
        raise ValueError(f"{site_id!r} is not a site id (1-64 letters, digits, '.', '_' or '-')")
    return site_id


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
    gateway_id, site_id = parse_gateway_uri(uris[0], trust_domain)
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
        site_id=site_id,
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
