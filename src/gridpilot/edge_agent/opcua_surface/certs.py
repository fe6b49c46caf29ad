"""The server's certificate and the client trust list (the Ignition trust
exchange).

- The server certificate is the configured one, or a self-signed one made on
  first start under ``<state_dir>/opcua/`` (renewed by asyncua's cert_gen
  when it expires or no longer names the application URI and host).
- A client certificate must be in ``trusted_clients_dir`` (or be issued by a
  CA there). A refused one is copied to the sibling ``rejected/`` folder, so
  the operator can look at it and move it to ``trusted/``; the trust list is
  re-read on the next refused attempt, so no restart is needed.
"""

from __future__ import annotations

import asyncio
import hashlib
import os
import re
import socket
from datetime import UTC, datetime
from pathlib import Path

import structlog
from asyncua import ua
from asyncua.common.utils import ServiceError
from asyncua.crypto.cert_gen import setup_self_signed_certificate
from asyncua.crypto.truststore import TrustStore
from asyncua.crypto.validator import CertificateValidator, CertificateValidatorOptions
from cryptography import x509
from cryptography.hazmat.primitives.serialization import Encoding
from cryptography.x509.oid import ExtendedKeyUsageOID, NameOID

from ..config.opcua_server import OpcuaStatePaths
from ._ua import status

log = structlog.get_logger(__name__)

_UNSAFE = re.compile(r"[^A-Za-z0-9._-]+")


async def ensure_server_certificate(paths: OpcuaStatePaths, application_uri: str) -> None:
    """Create (or renew) the self-signed server certificate when it is ours
    to manage; make the trust folders. Key files are private (0600)."""
    for folder in (paths.trusted_dir, paths.rejected_dir):
        await asyncio.to_thread(folder.mkdir, parents=True, exist_ok=True)
    if not paths.generate:
        return
    folder = paths.certificate.parent
    await asyncio.to_thread(folder.mkdir, mode=0o700, parents=True, exist_ok=True)
    before = _fingerprint(paths.certificate)
    await setup_self_signed_certificate(
        paths.private_key,
        paths.certificate,
        application_uri,
        socket.gethostname(),
        [ExtendedKeyUsageOID.SERVER_AUTH, ExtendedKeyUsageOID.CLIENT_AUTH],
        {"commonName": "GridPilot edge agent", "organizationName": "GridPilot"},
    )
    os.chmod(paths.private_key, 0o600)
    after = _fingerprint(paths.certificate)
    if after != before:
        log.warning(
            "opcua server certificate created; SCADA clients must trust it",
            certificate=str(paths.certificate),
            sha1=after,
            renewed=before is not None,
        )


def _fingerprint(path: Path) -> str | None:
    try:
        return hashlib.sha1(path.read_bytes(), usedforsecurity=False).hexdigest()
    except OSError:
        return None


class TrustListValidator:
    """asyncua's TRUSTED_VALIDATION (time, application URI, key usage, client
    role, trusted, not revoked) over ``trusted_dir``; a refused certificate
    lands in ``rejected_dir``. Called at CreateSession with the client's
    certificate (a None-security channel carries none)."""

    def __init__(self, trusted_dir: Path, rejected_dir: Path) -> None:
        self.trusted_dir = trusted_dir
        self.rejected_dir = rejected_dir
        self._options = (
            CertificateValidatorOptions.TRUSTED_VALIDATION | CertificateValidatorOptions.PEER_CLIENT
        )
        self._validator = CertificateValidator(self._options, None)
        self._store: TrustStore | None = None

    async def load(self) -> None:
        """(Re)read the trusted folder (an empty one trusts nobody)."""
        store = TrustStore([self.trusted_dir], [])
        try:
            await store.load_trust()
        except ValueError:  # cryptography refuses an empty store
            self._validator, self._store = _TrustNobody(self._options), None
        else:
            self._validator, self._store = CertificateValidator(self._options, store), store

    async def __call__(self, cert: x509.Certificate, app: ua.ApplicationDescription) -> None:
        try:
            await self._validator.validate(cert, app)
        except ServiceError as first:
            if first.code != ua.StatusCodes.BadCertificateUntrusted:
                self._refused(cert, app, first.code)
                raise
            await self.load()  # moved into trusted/ since the last look?
            try:
                await self._validator.validate(cert, app)
            except ServiceError as exc:
                self._refused(cert, app, exc.code)
                raise

    def channel_trusted(self, der: bytes) -> bool:
        """Is the secure channel's own client certificate trusted now?

        asyncua validates only the certificate a client puts into its
        CreateSession request, and skips that when the field is empty, so a
        client could open the channel with an untrusted certificate and
        leave it out. The user manager asks this at ActivateSession."""
        try:
            cert = x509.load_der_x509_certificate(der)
        except ValueError:
            return False
        now = datetime.now(UTC)
        ok = (
            cert.not_valid_before_utc <= now <= cert.not_valid_after_utc
            and self._store is not None
            and self._store.is_trusted(cert)
            and not self._store.is_revoked(cert)
        )
        if not ok:
            self._refused(cert, None, ua.StatusCodes.BadCertificateUntrusted)
        return ok

    def _refused(
        self, cert: x509.Certificate, app: ua.ApplicationDescription | None, code: int
    ) -> None:
        path = self.rejected_dir / _file_name(cert)
        try:
            self.rejected_dir.mkdir(parents=True, exist_ok=True)
            path.write_bytes(cert.public_bytes(Encoding.DER))
        except OSError as exc:
            log.error(
                "could not keep the refused client certificate", path=str(path), error=str(exc)
            )
        log.warning(
            "opcua client certificate refused; to trust it, move it to the trusted folder",
            status=status(code).name,
            application_uri=app.ApplicationUri if app is not None else None,
            certificate=str(path),
            trusted_dir=str(self.trusted_dir),
        )


class _TrustNobody(CertificateValidator):
    """The checks of TRUSTED_VALIDATION with an empty trust list: asyncua
    skips the trust check when it has no store, so refuse here."""

    async def validate(
        self, cert: x509.Certificate, app_description: ua.ApplicationDescription
    ) -> None:
        await super().validate(cert, app_description)
        raise ServiceError(ua.StatusCodes.BadCertificateUntrusted)


def _file_name(cert: x509.Certificate) -> str:
    names = cert.subject.get_attributes_for_oid(NameOID.COMMON_NAME)
    common = str(names[0].value) if names else "client"
    thumb = hashlib.sha1(cert.public_bytes(Encoding.DER), usedforsecurity=False).hexdigest()
    return f"{_UNSAFE.sub('_', common)[:48]}-{thumb}.der"
