"""What the headend signs at enrollment: a CSR naming exactly the token's
gateway with an acceptable key; a renewal proof made with the current key."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest
from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec, rsa
from cryptography.x509.oid import NameOID

from gridpilot.security.csr import (
    CsrRefused,
    check_csr,
    check_renewal_proof,
    make_csr,
    sign_renewal,
)
from gridpilot.security.identity import identity_from_cert
from gridpilot.security.pki import Pki, new_key

TD = "gridpilot"


def _csr(key: object, cn: str, *sans: x509.GeneralName) -> str:
    builder = x509.CertificateSigningRequestBuilder().subject_name(
        x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, cn)])
    )
    if sans:
        builder = builder.add_extension(x509.SubjectAlternativeName(list(sans)), critical=False)
    return builder.sign(key, hashes.SHA256()).public_bytes(serialization.Encoding.PEM).decode()  # type: ignore[arg-type]


def test_a_csr_naming_the_gateway_is_accepted_with_or_without_its_uri() -> None:
    key = new_key()
    assert check_csr(make_csr(key, "gw-1").decode(), "gw-1", TD).public_key() == key.public_key()
    uri = "spiffe://gridpilot/gateway/gw-1"
    check_csr(make_csr(key, "gw-1", uri).decode(), "gw-1", TD)
    check_csr(_csr(rsa.generate_private_key(65537, 2048), "gw-1"), "gw-1", TD)


@pytest.mark.parametrize(
    ("pem", "code", "says"),
    [
        (lambda: make_csr(new_key(), "gw-2").decode(), "csr_mismatch", "gw-2"),
        (
            lambda: make_csr(new_key(), "gw-1", "spiffe://gridpilot/gateway/gw-2").decode(),
            "csr_mismatch",
            "gw-2",
        ),
        (
            lambda: make_csr(new_key(), "gw-1", "spiffe://other/gateway/gw-1").decode(),
            "csr_mismatch",
            "spiffe://gridpilot/",
        ),
        (lambda: _csr(new_key(), "gw-1", x509.DNSName("evil.example")), "csr_mismatch", "DNS"),
        (lambda: _csr(ec.generate_private_key(ec.SECP521R1()), "gw-1"), "csr_invalid", "curve"),
        (lambda: _csr(rsa.generate_private_key(65537, 1024), "gw-1"), "csr_invalid", "RSA"),
        (lambda: "-----BEGIN CERTIFICATE REQUEST-----\nAAAA\n", "csr_invalid", "PEM"),
    ],
)
def test_a_csr_for_another_gateway_or_with_a_weak_key_is_refused(
    pem: object, code: str, says: str
) -> None:
    with pytest.raises(CsrRefused) as caught:
        check_csr(pem(), "gw-1", TD)  # type: ignore[operator]
    assert (caught.value.code, caught.value.field, caught.value.status) == (code, "csr", 422)
    assert says in caught.value.message


def test_the_signed_certificate_has_the_gateway_profile(tmp_path: Path) -> None:
    pki = Pki.init(tmp_path / "pki")
    key = new_key()
    cert = pki.sign_gateway(key.public_key(), "gw-1", days=30)
    ident = identity_from_cert(cert, TD)  # one URI SAN, clientAuth
    assert (ident.gateway_id, ident.site_id) == ("gw-1", None)
    assert cert.public_key() == key.public_key()
    assert cert.not_valid_after_utc - datetime.now(UTC) <= timedelta(days=30)
    cert.verify_directly_issued_by(pki.ca_cert)
    assert not (tmp_path / "pki" / "gateways").exists()  # nothing of the key is written


def test_a_renewal_proof_verifies_only_with_the_current_key(tmp_path: Path) -> None:
    pki = Pki.init(tmp_path / "pki")
    current = new_key()
    cert = pki.sign_gateway(current.public_key(), "gw-1")
    csr = make_csr(new_key(), "gw-1").decode()
    check_renewal_proof(cert, csr, sign_renewal(current, csr))
    for proof in (sign_renewal(new_key(), csr), "not base64!", ""):
        with pytest.raises(CsrRefused) as caught:
            check_renewal_proof(cert, csr, proof)
        assert (caught.value.field, caught.value.code) == ("proof", "proof_invalid")
    # A proof is for one CSR: it does not carry over to another key's.
    other = make_csr(new_key(), "gw-1").decode()
    with pytest.raises(CsrRefused):
        check_renewal_proof(cert, other, sign_renewal(current, csr))


def test_the_enrollment_ca_must_be_of_the_headends_trust_domain(tmp_path: Path) -> None:
    from gridpilot.ingest.onboarding import load_ca
    from gridpilot.security.pki import PkiError

    assert load_ca(None, TD) is None
    Pki.init(tmp_path / "pki", "other.example")
    with pytest.raises(PkiError, match="'other.example', not 'gridpilot'"):
        load_ca(tmp_path / "pki", TD)
    with pytest.raises(PkiError, match="not a PKI directory"):
        load_ca(tmp_path / "nothing", TD)
    assert load_ca(tmp_path / "pki", "other.example") is not None
