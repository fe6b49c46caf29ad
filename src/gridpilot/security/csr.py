"""Certificate signing requests of gateways, and the proof a renewal carries.

Pure code, used on both sides of enrollment: the gateway makes its key and a
CSR (``make_csr``), the headend checks it (``check_csr``) before its CA signs
the public key. A renewal also carries a signature over the new CSR made with
the key of the gateway's current certificate (``sign_renewal`` /
``check_renewal_proof``): only the holder of that key can renew, and a
replayed request gets a certificate for a key only the gateway has.
"""

from __future__ import annotations

import base64
import binascii

from cryptography import x509
from cryptography.exceptions import InvalidSignature
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec, padding, rsa
from cryptography.hazmat.primitives.asymmetric.types import (
    CertificatePublicKeyTypes,
    PrivateKeyTypes,
)
from cryptography.x509.oid import NameOID

from gridpilot.core.errors import Refused

from .identity import IdentityError, parse_gateway_uri

EC_CURVES = ("secp256r1", "secp384r1")
RSA_BITS = (2048, 4096)  # the range accepted
RENEWAL_CONTEXT = b"gridpilot-renew-v1\n"


class CsrRefused(Refused):
    """The CSR cannot be signed (422): unreadable, a weak key (``csr_invalid``),
    or naming another gateway than the request is for (``csr_mismatch``)."""

    def __init__(self, message: str, code: str = "csr_invalid", field: str = "csr") -> None:
        super().__init__(message, code=code, field=field)


def make_csr(key: ec.EllipticCurvePrivateKey, gateway_id: str, uri: str | None = None) -> bytes:
    """A PEM CSR naming the gateway (CN) and, when given, its SPIFFE URI SAN."""
    builder = x509.CertificateSigningRequestBuilder().subject_name(
        x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, gateway_id)])
    )
    if uri is not None:
        builder = builder.add_extension(
            x509.SubjectAlternativeName([x509.UniformResourceIdentifier(uri)]), critical=False
        )
    return builder.sign(key, hashes.SHA256()).public_bytes(serialization.Encoding.PEM)


def load_csr(pem: str) -> x509.CertificateSigningRequest:
    try:
        csr = x509.load_pem_x509_csr(pem.encode())
    except ValueError:
        raise CsrRefused("csr: not a PEM certificate signing request") from None
    if not csr.is_signature_valid:
        raise CsrRefused("csr: its signature does not verify (not made with its own key)")
    return csr


def check_key(key: CertificatePublicKeyTypes) -> None:
    if isinstance(key, ec.EllipticCurvePublicKey):
        if key.curve.name not in EC_CURVES:
            raise CsrRefused(f"csr: EC curve {key.curve.name} is not one of {', '.join(EC_CURVES)}")
        return
    if isinstance(key, rsa.RSAPublicKey):
        if not RSA_BITS[0] <= key.key_size <= RSA_BITS[1]:
            raise CsrRefused(f"csr: RSA keys must have {RSA_BITS[0]}-{RSA_BITS[1]} bits")
        return
    raise CsrRefused("csr: the key must be EC (P-256, P-384) or RSA")


def check_csr(pem: str, gateway_id: str, trust_domain: str) -> x509.CertificateSigningRequest:
    """The CSR, if it names exactly ``gateway_id`` (its CN, and any URI SAN)
    with an acceptable key; else :class:`CsrRefused`."""
    csr = load_csr(pem)
    check_key(csr.public_key())
    names = [a.value for a in csr.subject.get_attributes_for_oid(NameOID.COMMON_NAME)]
    if names != [gateway_id]:
        shown = ", ".join(map(str, names)) or "nothing"
        raise CsrRefused(
            f"csr: its subject CN names {shown}; this request is for gateway {gateway_id}",
            "csr_mismatch",
        )
    try:
        san = csr.extensions.get_extension_for_class(x509.SubjectAlternativeName).value
    except x509.ExtensionNotFound:
        return csr
    if san.get_values_for_type(x509.DNSName) or san.get_values_for_type(x509.IPAddress):
        raise CsrRefused("csr: a gateway certificate has no DNS or IP names", "csr_mismatch")
    for uri in san.get_values_for_type(x509.UniformResourceIdentifier):
        try:
            named, _ = parse_gateway_uri(uri, trust_domain)
        except IdentityError as exc:
            raise CsrRefused(f"csr: {exc}", "csr_mismatch") from None
        if named != gateway_id:
            raise CsrRefused(
                f"csr: its URI SAN names gateway {named}; this request is for gateway {gateway_id}",
                "csr_mismatch",
            )
    return csr


def _renewal_message(csr_pem: str) -> bytes:
    return RENEWAL_CONTEXT + load_csr(csr_pem).public_bytes(serialization.Encoding.DER)


def sign_renewal(current_key: PrivateKeyTypes, csr_pem: str) -> str:
    """The proof of a renewal: the new CSR signed with the current key (base64)."""
    message = _renewal_message(csr_pem)
    if isinstance(current_key, ec.EllipticCurvePrivateKey):
        sig = current_key.sign(message, ec.ECDSA(hashes.SHA256()))
    elif isinstance(current_key, rsa.RSAPrivateKey):
        sig = current_key.sign(message, padding.PKCS1v15(), hashes.SHA256())
    else:
        raise ValueError("the current key must be EC or RSA")
    return base64.b64encode(sig).decode()


def check_renewal_proof(cert: x509.Certificate, csr_pem: str, proof: str) -> None:
    """Raise :class:`CsrRefused` (field ``proof``) unless ``proof`` is the new
    CSR signed with the key of ``cert``."""
    try:
        sig = base64.b64decode(proof, validate=True)
    except (binascii.Error, ValueError):
        raise CsrRefused("proof: not base64", "proof_invalid", "proof") from None
    message = _renewal_message(csr_pem)
    key = cert.public_key()
    try:
        if isinstance(key, ec.EllipticCurvePublicKey):
            key.verify(sig, message, ec.ECDSA(hashes.SHA256()))
        elif isinstance(key, rsa.RSAPublicKey):
            key.verify(sig, message, padding.PKCS1v15(), hashes.SHA256())
        else:
            raise InvalidSignature
    except InvalidSignature:
        raise CsrRefused(
            "proof: not a signature of this CSR by the current certificate's key",
            "proof_invalid",
            "proof",
        ) from None
