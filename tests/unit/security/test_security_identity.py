"""The gateway identity in a certificate's URI SAN: the gateway, and the site
when the certificate names one (which counts as enrollment for that site)."""

from __future__ import annotations

from pathlib import Path

import pytest
from cryptography import x509

from gridpilot.security.identity import IdentityError, identity_from_cert, parse_gateway_uri
from gridpilot.security.pki import Pki, PkiError

DOMAIN = "pilot.example"


@pytest.mark.parametrize(
    ("uri", "expected"),
    [
        ("spiffe://pilot.example/gateway/gw-1", ("gw-1", None)),
        ("spiffe://pilot.example/site/site-1/gateway/gw-1", ("gw-1", "site-1")),
        ("spiffe://pilot.example/site/S.2_x/gateway/g", ("g", "S.2_x")),
    ],
)
def test_gateway_uri_names_the_gateway_and_maybe_its_site(
    uri: str, expected: tuple[str, str | None]
) -> None:
    assert parse_gateway_uri(uri, DOMAIN) == expected


@pytest.mark.parametrize(
    ("uri", "message"),
    [
        ("spiffe://other.example/site/s/gateway/g", "is not spiffe://pilot.example/gateway/"),
        ("spiffe://pilot.example/site/s/gateway/", "valid gateway id"),
        ("spiffe://pilot.example/site//gateway/g", "valid site id"),
        ("spiffe://pilot.example/site/s/g/gateway/g", "or spiffe://pilot.example/site/"),
        ("spiffe://pilot.example/site/s", "is not spiffe://pilot.example/gateway/"),
        ("spiffe://pilot.example/gateway/g/site/s", "is not spiffe://pilot.example/gateway/"),
        ("spiffe://pilot.example/tenant/s/gateway/g", "is not spiffe://pilot.example/gateway/"),
        ("spiffe://pilot.example/site/-s/gateway/g", "valid site id"),
    ],
)
def test_malformed_gateway_uris_are_refused(uri: str, message: str) -> None:
    with pytest.raises(IdentityError, match=message.replace(".", r"\.")):
        parse_gateway_uri(uri, DOMAIN)


def test_a_certificate_issued_for_a_site_names_it(tmp_path: Path) -> None:
    pki = Pki.init(tmp_path / "pki", DOMAIN)
    issued = pki.issue_gateway("gw-7", site_id="site-3")
    san = issued.cert.extensions.get_extension_for_class(x509.SubjectAlternativeName).value
    assert san.get_values_for_type(x509.UniformResourceIdentifier) == [
        "spiffe://pilot.example/site/site-3/gateway/gw-7"
    ]
    ident = identity_from_cert(issued.cert, DOMAIN)
    assert (ident.gateway_id, ident.site_id) == ("gw-7", "site-3")
    assert identity_from_cert(pki.issue_gateway("gw-8").cert, DOMAIN).site_id is None
    # Revocation finds the gateway's certificates whichever form they name.
    assert {c.serial_number for c in pki.issued_for("gw-7")} == {issued.cert.serial_number}
    with pytest.raises(PkiError, match="not a site id"):
        pki.issue_gateway("gw-7", site_id="bad site")
