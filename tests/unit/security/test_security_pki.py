"""The dev PKI: what a gateway certificate holds, key permissions, bounded validity,
and which certificates the identity check refuses."""

from __future__ import annotations

import stat
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest
from cryptography import x509
from cryptography.x509.oid import ExtendedKeyUsageOID

from gridpilot.security.identity import IdentityError, identity_from_cert
from gridpilot.security.pki import MAX_GATEWAY_DAYS, Pki, PkiError, issue_leaf


@pytest.fixture
def pki(tmp_path: Path) -> Pki:
    return Pki.init(tmp_path / "pki", "pilot.example")


def _mode(path: Path) -> int:
    return stat.S_IMODE(path.stat().st_mode)


def test_gateway_certificate_has_one_uri_san_client_auth_and_bounded_validity(pki: Pki) -> None:
    issued = pki.issue_gateway("gw-7", days=30)
    cert = issued.cert
    san = cert.extensions.get_extension_for_class(x509.SubjectAlternativeName).value
    assert san.get_values_for_type(x509.UniformResourceIdentifier) == [
        "spiffe://pilot.example/gateway/gw-7"
    ]
    assert len(list(san)) == 1
    eku = cert.extensions.get_extension_for_class(x509.ExtendedKeyUsage).value
    assert list(eku) == [ExtendedKeyUsageOID.CLIENT_AUTH]
    assert not cert.extensions.get_extension_for_class(x509.BasicConstraints).value.ca
    lifetime = cert.not_valid_after_utc - cert.not_valid_before_utc
    assert timedelta(days=30) <= lifetime <= timedelta(days=30, minutes=2)
    ident = identity_from_cert(cert, "pilot.example")
    assert ident.gateway_id == "gw-7" and len(ident.fingerprint) == 64


def test_keys_are_written_0600_and_the_ca_is_not_replaced(pki: Pki) -> None:
    issued = pki.issue_gateway("gw-1")
    headend = pki.issue_headend(["headend.example"], ["127.0.0.1"])
    for key in (pki.ca_key_file, issued.key_file, headend.key_file):
        assert _mode(key) == 0o600, key
    # Re-issuing over an existing key keeps 0600.
    assert _mode(pki.issue_gateway("gw-1").key_file) == 0o600
    with pytest.raises(PkiError, match="already has a CA"):
        Pki.init(pki.root)


def test_validity_and_ids_are_checked(pki: Pki) -> None:
    with pytest.raises(PkiError, match="1..397 days"):
        pki.issue_gateway("gw-1", days=MAX_GATEWAY_DAYS + 1)
    with pytest.raises(PkiError, match="not a gateway id"):
        pki.issue_gateway("gw/../1")
    with pytest.raises(PkiError, match="at least one"):
        pki.issue_headend([], [])
    with pytest.raises(PkiError, match="not a PKI directory"):
        Pki(pki.root / "nope")


def test_issued_for_finds_every_certificate_of_a_gateway(pki: Pki) -> None:
    first = pki.issue_gateway("gw-1").cert
    second = pki.issue_gateway("gw-1").cert
    pki.issue_gateway("gw-2")
    assert {c.serial_number for c in pki.issued_for("gw-1")} == {
        first.serial_number,
        second.serial_number,
    }


def _leaf(
    pki: Pki, sans: list[x509.GeneralName], usages: list[x509.ObjectIdentifier]
) -> x509.Certificate:
    now = datetime.now(UTC)
    return issue_leaf(pki.ca_cert, pki.ca_key, "x", sans, usages, now, now + timedelta(days=1))[0]


@pytest.mark.parametrize(
    ("sans", "usages", "error"),
    [
        (
            ["spiffe://pilot.example/gateway/a", "spiffe://pilot.example/gateway/b"],
            [ExtendedKeyUsageOID.CLIENT_AUTH],
            "exactly one URI SAN",
        ),
        ([], [ExtendedKeyUsageOID.CLIENT_AUTH], "exactly one URI SAN"),
        (
            ["spiffe://other.example/gateway/a"],
            [ExtendedKeyUsageOID.CLIENT_AUTH],
            "is not spiffe://pilot.example/gateway/",
        ),
        (
            ["spiffe://pilot.example/gateway/a"],
            [ExtendedKeyUsageOID.SERVER_AUTH],
            "not for client authentication",
        ),
    ],
)
def test_identity_refuses_certificates_that_do_not_name_one_gateway(
    pki: Pki, sans: list[str], usages: list[x509.ObjectIdentifier], error: str
) -> None:
    names: list[x509.GeneralName] = [x509.UniformResourceIdentifier(u) for u in sans]
    names.append(x509.DNSName("also-a-dns-name.example"))
    with pytest.raises(IdentityError, match=error):
        identity_from_cert(_leaf(pki, names, usages), "pilot.example")
