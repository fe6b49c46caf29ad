"""A small file-based CA for gateways and the headend (``gridpilot pki``).

Meant for development, pilots and ``gridpilot up``; a real deployment may
bring its own CA instead (docs/security.md says what its certificates need).

Layout of a PKI directory::

    pki.json                trust domain
    ca.pem  ca.key          the CA (key 0600)
    headend.pem headend.key the AgentGateway's server certificate (serverAuth)
    gateways/<id>.pem .key  each gateway's client certificate (clientAuth)
    issued/<serial>.pem     every certificate ever issued (for revocation)

Keys are ECDSA P-256 and written with 0600 permissions.
"""

from __future__ import annotations

import ipaddress
import json
import os
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from pathlib import Path

from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.hazmat.primitives.asymmetric.types import CertificatePublicKeyTypes
from cryptography.x509.oid import ExtendedKeyUsageOID, NameOID

from .identity import IdentityError, check_trust_domain, gateway_uri, parse_gateway_uri

DEFAULT_TRUST_DOMAIN = "gridpilot"
CA_DAYS, MAX_CA_DAYS = 3650, 7300
HEADEND_DAYS, MAX_HEADEND_DAYS = 365, 397
GATEWAY_DAYS, MAX_GATEWAY_DAYS = 90, 397
# Tolerates a headend clock a little behind the CA's.
BACKDATE = timedelta(minutes=1)

PrivateKey = ec.EllipticCurvePrivateKey


class PkiError(Exception):
    """A PKI directory or request problem, in one line for the operator."""


@dataclass(frozen=True)
class Issued:
    cert_file: Path
    key_file: Path
    cert: x509.Certificate


def new_key() -> PrivateKey:
    return ec.generate_private_key(ec.SECP256R1())


def write_private_key(path: Path, key: PrivateKey) -> None:
    """Write a PEM key readable by its owner only (0600), also when replacing one."""
    path.parent.mkdir(parents=True, exist_ok=True)
    data = key.private_bytes(
        serialization.Encoding.PEM,
        serialization.PrivateFormat.PKCS8,
        serialization.NoEncryption(),
    )
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    try:
        os.fchmod(fd, 0o600)
        os.write(fd, data)
    finally:
        os.close(fd)


def write_cert(path: Path, *certs: x509.Certificate) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_bytes(b"".join(c.public_bytes(serialization.Encoding.PEM) for c in certs))


def _days(days: int, maximum: int, what: str) -> timedelta:
    if not 1 <= days <= maximum:
        raise PkiError(f"{what} validity must be 1..{maximum} days (got {days})")
    return timedelta(days=days)


def make_ca(common_name: str, days: int = CA_DAYS) -> tuple[x509.Certificate, PrivateKey]:
    key = new_key()
    now = datetime.now(UTC)
    name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, common_name)])
    cert = (
        x509.CertificateBuilder()
        .subject_name(name)
        .issuer_name(name)
        .public_key(key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(now - BACKDATE)
        .not_valid_after(now + _days(days, MAX_CA_DAYS, "CA"))
        .add_extension(x509.BasicConstraints(ca=True, path_length=0), critical=True)
        .add_extension(
            x509.KeyUsage(
                digital_signature=False,
                content_commitment=False,
                key_encipherment=False,
                data_encipherment=False,
                key_agreement=False,
                key_cert_sign=True,
                crl_sign=True,
                encipher_only=False,
                decipher_only=False,
            ),
            critical=True,
        )
        .add_extension(x509.SubjectKeyIdentifier.from_public_key(key.public_key()), critical=False)
        .sign(key, hashes.SHA256())
    )
    return cert, key


def issue_leaf(
    ca_cert: x509.Certificate,
    ca_key: PrivateKey,
    common_name: str,
    sans: list[x509.GeneralName],
    usages: list[x509.ObjectIdentifier],
    not_before: datetime,
    not_after: datetime,
) -> tuple[x509.Certificate, PrivateKey]:
    """Any leaf certificate with a new key; the CLI's wrappers fix what a
    gateway or headend gets."""
    key = new_key()
    cert = sign_leaf(
        ca_cert, ca_key, key.public_key(), common_name, sans, usages, not_before, not_after
    )
    return cert, key


def sign_leaf(
    ca_cert: x509.Certificate,
    ca_key: PrivateKey,
    public_key: CertificatePublicKeyTypes,
    common_name: str,
    sans: list[x509.GeneralName],
    usages: list[x509.ObjectIdentifier],
    not_before: datetime,
    not_after: datetime,
) -> x509.Certificate:
    """A leaf certificate for a key held elsewhere (e.g. a gateway's CSR)."""
    return (
        x509.CertificateBuilder()
        .subject_name(x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, common_name)]))
        .issuer_name(ca_cert.subject)
        .public_key(public_key)
        .serial_number(x509.random_serial_number())
        .not_valid_before(not_before)
        .not_valid_after(not_after)
        .add_extension(x509.BasicConstraints(ca=False, path_length=None), critical=True)
        .add_extension(
            x509.KeyUsage(
                digital_signature=True,
                content_commitment=False,
                key_encipherment=False,
                data_encipherment=False,
                key_agreement=False,
                key_cert_sign=False,
                crl_sign=False,
                encipher_only=False,
                decipher_only=False,
            ),
            critical=True,
        )
        .add_extension(x509.ExtendedKeyUsage(usages), critical=False)
        .add_extension(x509.SubjectAlternativeName(sans), critical=False)
        .add_extension(
            x509.AuthorityKeyIdentifier.from_issuer_public_key(ca_key.public_key()),
            critical=False,
        )
        .sign(ca_key, hashes.SHA256())
    )


def headend_sans(dns: list[str], ips: list[str]) -> list[x509.GeneralName]:
    sans: list[x509.GeneralName] = [x509.DNSName(d) for d in dns]
    try:
        sans += [x509.IPAddress(ipaddress.ip_address(ip)) for ip in ips]
    except ValueError as exc:
        raise PkiError(str(exc)) from None
    if not sans:
        raise PkiError("give at least one --dns name (or --ip) the agents dial")
    return sans


class Pki:
    """A PKI directory with its CA loaded."""

    def __init__(self, root: Path) -> None:
        self.root = root
        meta = root / "pki.json"
        if not meta.is_file() or not self.ca_file.is_file() or not self.ca_key_file.is_file():
            raise PkiError(f"{root} is not a PKI directory; create one with 'gridpilot pki init'")
        self.trust_domain = str(json.loads(meta.read_text())["trust_domain"])
        self.ca_cert = x509.load_pem_x509_certificate(self.ca_file.read_bytes())
        key = serialization.load_pem_private_key(self.ca_key_file.read_bytes(), password=None)
        if not isinstance(key, ec.EllipticCurvePrivateKey):
            raise PkiError(f"{self.ca_key_file} is not an EC private key")
        self.ca_key: PrivateKey = key

    @property
    def ca_file(self) -> Path:
        return self.root / "ca.pem"

    @property
    def ca_key_file(self) -> Path:
        return self.root / "ca.key"

    @classmethod
    def init(cls, root: Path, trust_domain: str = DEFAULT_TRUST_DOMAIN, days: int = CA_DAYS) -> Pki:
        try:
            check_trust_domain(trust_domain)
        except ValueError as exc:
            raise PkiError(str(exc)) from None
        if (root / "ca.key").exists():
            raise PkiError(f"{root} already has a CA (ca.key); refusing to replace it")
        root.mkdir(parents=True, exist_ok=True)
        os.chmod(root, 0o700)
        cert, key = make_ca(f"GridPilot CA ({trust_domain})", days)
        write_private_key(root / "ca.key", key)
        write_cert(root / "ca.pem", cert)
        (root / "pki.json").write_text(json.dumps({"trust_domain": trust_domain}, indent=2))
        return cls(root)

    @classmethod
    def open_or_init(cls, root: Path, trust_domain: str = DEFAULT_TRUST_DOMAIN) -> Pki:
        if (root / "ca.key").exists():
            return cls(root)
        return cls.init(root, trust_domain)

    def _window(self, days: int, maximum: int, what: str) -> tuple[datetime, datetime]:
        now = datetime.now(UTC)
        end = min(now + _days(days, maximum, what), self.ca_cert.not_valid_after_utc)
        return now - BACKDATE, end

    def _save(self, name: Path, cert: x509.Certificate, key: PrivateKey) -> Issued:
        cert_file, key_file = name.with_suffix(".pem"), name.with_suffix(".key")
        write_private_key(key_file, key)
        write_cert(cert_file, cert)
        write_cert(self.root / "issued" / f"{cert.serial_number:x}.pem", cert)
        return Issued(cert_file, key_file, cert)

    def issue_headend(
        self, dns: list[str], ips: list[str] | None = None, days: int = HEADEND_DAYS
    ) -> Issued:
        start, end = self._window(days, MAX_HEADEND_DAYS, "headend certificate")
        cert, key = issue_leaf(
            self.ca_cert,
            self.ca_key,
            (dns or ips or ["headend"])[0],
            headend_sans(dns, ips or []),
            [ExtendedKeyUsageOID.SERVER_AUTH],
            start,
            end,
        )
        return self._save(self.root / "headend", cert, key)

    def issue_gateway(
        self, gateway_id: str, days: int = GATEWAY_DAYS, site_id: str | None = None
    ) -> Issued:
        """A gateway's client certificate; with ``site_id`` it names the site
        too, which counts as the gateway's enrollment for that site."""
        key = new_key()
        cert = self.sign_gateway(key.public_key(), gateway_id, days, site_id)
        return self._save(self.root / "gateways" / gateway_id, cert, key)

    def sign_gateway(
        self,
        public_key: CertificatePublicKeyTypes,
        gateway_id: str,
        days: int = GATEWAY_DAYS,
        site_id: str | None = None,
    ) -> x509.Certificate:
        """The gateway certificate profile (one URI SAN, clientAuth) for a
        key the gateway keeps: nothing is written."""
        try:
            uri = gateway_uri(self.trust_domain, gateway_id, site_id)
        except ValueError as exc:
            raise PkiError(str(exc)) from None
        start, end = self._window(days, MAX_GATEWAY_DAYS, "gateway certificate")
        return sign_leaf(
            self.ca_cert,
            self.ca_key,
            public_key,
            gateway_id,
            [x509.UniformResourceIdentifier(uri)],
            [ExtendedKeyUsageOID.CLIENT_AUTH],
            start,
            end,
        )

    def issued_for(self, gateway_id: str) -> list[x509.Certificate]:
        """Every certificate this CA issued to the gateway (current and older)."""
        gateway_uri(self.trust_domain, gateway_id)  # a valid id, or ValueError
        found = []
        for path in sorted((self.root / "issued").glob("*.pem")):
            cert = x509.load_pem_x509_certificate(path.read_bytes())
            try:
                san = cert.extensions.get_extension_for_class(x509.SubjectAlternativeName)
            except x509.ExtensionNotFound:
                continue
            for uri in san.value.get_values_for_type(x509.UniformResourceIdentifier):
                try:
                    named, _ = parse_gateway_uri(uri, self.trust_domain)
                except IdentityError:
                    continue
                if named == gateway_id:
                    found.append(cert)
                    break
        return found
