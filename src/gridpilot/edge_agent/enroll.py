"""The gateway's side of enrollment: its key is made here and never sent.

``enroll`` asks the headend what a one-time token is for, makes a key and a
CSR naming that gateway, and sends the CSR and the token; the headend answers
with the signed certificate and the CA to trust. ``renew`` does the same with
a new key, authenticated by the current certificate (the CSR signed with its
key). Files, in ``<state dir>/tls/``::

    gateway.key        the private key (0600, written only here)
    gateway.pem        the certificate the headend signed
    ca.pem             the CA bundle for the headend
    enrollment.json    headend URL, gateway and site ids, expiry
"""

from __future__ import annotations

import json
import os
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import httpx
from cryptography import x509
from cryptography.hazmat.primitives import serialization

from gridpilot.security.csr import make_csr, sign_renewal
from gridpilot.security.pki import new_key, write_private_key

RENEW_WITHIN = timedelta(days=30)


class EnrollError(Exception):
    """Enrollment or renewal failed; the message names the cause (and field)."""


@dataclass(frozen=True)
class GatewayFiles:
    root: Path

    @classmethod
    def in_state_dir(cls, state_dir: Path) -> GatewayFiles:
        return cls(state_dir / "tls")

    @property
    def key(self) -> Path:
        return self.root / "gateway.key"

    @property
    def cert(self) -> Path:
        return self.root / "gateway.pem"

    @property
    def ca(self) -> Path:
        return self.root / "ca.pem"

    @property
    def meta(self) -> Path:
        return self.root / "enrollment.json"

    def site_yaml(self) -> str:
        """The headend block of the site YAML that uses these files."""
        return (
            "headend:\n"
            "  address: <headend host>:50051\n"
            f"  ca_file: {self.ca.resolve()}\n"
            f"  cert_file: {self.cert.resolve()}\n"
            f"  key_file: {self.key.resolve()}\n"
        )


@dataclass(frozen=True)
class Enrolled:
    gateway_id: str
    site_id: str
    fingerprint: str
    not_after: datetime
    files: GatewayFiles


def _post(client: httpx.Client, url: str, body: dict[str, str]) -> dict[str, Any]:
    try:
        r = client.post(url, json=body)
    except httpx.HTTPError as exc:
        raise EnrollError(f"cannot reach {url}: {exc}") from None
    try:
        data = r.json()
    except ValueError:
        data = None
    if r.status_code >= 400:
        msg = data.get("message") if isinstance(data, dict) else r.text[:200]
        code = f" [{data.get('code')}]" if isinstance(data, dict) and data.get("code") else ""
        raise EnrollError(f"{r.status_code}{code} {msg}")
    if not isinstance(data, dict):
        raise EnrollError(f"{url} did not answer with JSON")
    return data


def _api(headend: str) -> str:
    base = headend.rstrip("/").removesuffix("/api/v1")
    if not base.startswith(("http://", "https://")):
        raise EnrollError(f"--headend: expected the REST API's http(s):// URL, got {headend!r}")
    return base + "/api/v1"


def _atomic(path: Path, data: bytes) -> None:
    tmp = path.with_name(path.name + ".tmp")
    tmp.write_bytes(data)
    os.replace(tmp, path)


def _store(files: GatewayFiles, key: Any, answer: dict[str, Any], headend: str) -> Enrolled:
    files.root.mkdir(parents=True, exist_ok=True)
    os.chmod(files.root, 0o700)
    cert = x509.load_pem_x509_certificate(answer["certificate"].encode())
    new_key_file = files.key.with_name("gateway.key.new")
    write_private_key(new_key_file, key)
    _atomic(files.ca, answer["ca_bundle"].encode())
    os.replace(new_key_file, files.key)
    _atomic(files.cert, cert.public_bytes(serialization.Encoding.PEM))
    meta = {
        "headend": headend,
        "gateway_id": answer["gateway_id"],
        "site_id": answer["site_id"],
        "fingerprint": answer["fingerprint"],
        "not_after": cert.not_valid_after_utc.isoformat(),
    }
    _atomic(files.meta, json.dumps(meta, indent=2).encode())
    return Enrolled(
        answer["gateway_id"],
        answer["site_id"],
        answer["fingerprint"],
        cert.not_valid_after_utc,
        files,
    )


def enroll(
    client: httpx.Client,
    headend: str,
    token: str,
    state_dir: Path,
    gateway_id: str | None = None,
) -> Enrolled:
    """Spend ``token`` for a certificate of a key made here. ``gateway_id``
    (optional) is put in the CSR instead of the one the token names: the
    headend then refuses a mismatch."""
    api = _api(headend)
    about = _post(client, f"{api}/enroll/describe", {"token": token})
    name = gateway_id or str(about["gateway_id"])
    key = new_key()
    csr = make_csr(key, name, None if gateway_id else str(about["identity"]))
    answer = _post(client, f"{api}/enroll", {"token": token, "csr": csr.decode()})
    return _store(GatewayFiles.in_state_dir(state_dir), key, answer, headend)


def due(files: GatewayFiles, within: timedelta = RENEW_WITHIN) -> datetime | None:
    """The current certificate's expiry if it is within ``within`` of now, else None."""
    cert = x509.load_pem_x509_certificate(files.cert.read_bytes())
    end = cert.not_valid_after_utc
    return end if end - datetime.now(UTC) <= within else None


def renew(client: httpx.Client, state_dir: Path, headend: str | None = None) -> Enrolled:
    """A new key and certificate, authenticated by the current ones."""
    files = GatewayFiles.in_state_dir(state_dir)
    if not (files.key.is_file() and files.cert.is_file()):
        raise EnrollError(f"{files.root}: no gateway.key/gateway.pem; enroll first")
    if headend is None:
        try:
            headend = str(json.loads(files.meta.read_text())["headend"])
        except (OSError, ValueError, KeyError):
            raise EnrollError(f"{files.meta}: unreadable; pass --headend") from None
    current_key = serialization.load_pem_private_key(files.key.read_bytes(), password=None)
    cert_pem = files.cert.read_text()
    cert = x509.load_pem_x509_certificate(cert_pem.encode())
    names = cert.subject.get_attributes_for_oid(x509.NameOID.COMMON_NAME)
    uri = cert.extensions.get_extension_for_class(x509.SubjectAlternativeName).value
    key = new_key()
    csr = make_csr(
        key,
        str(names[0].value),
        uri.get_values_for_type(x509.UniformResourceIdentifier)[0],
    ).decode()
    body = {"certificate": cert_pem, "csr": csr, "proof": sign_renewal(current_key, csr)}
    answer = _post(client, f"{_api(headend)}/enroll/renew", body)
    return _store(files, key, answer, headend)
