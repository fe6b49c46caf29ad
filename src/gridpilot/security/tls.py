"""gRPC server credentials: TLS with a required client certificate (mTLS)."""

from __future__ import annotations

from datetime import datetime
from pathlib import Path

import grpc
from cryptography import x509


class TlsConfigError(Exception):
    pass


def _read(path: Path | None, what: str, setting: str) -> bytes:
    if path is None:
        raise TlsConfigError(
            f"{setting} is not set: the AgentGateway needs its {what} for mutual TLS "
            "(or GRIDPILOT_GRPC_INSECURE=true for plain-text dev use)"
        )
    try:
        return path.read_bytes()
    except OSError as exc:
        raise TlsConfigError(f"{setting}: cannot read {path}: {exc.strerror}") from None


def server_credentials(
    cert_file: Path | None, key_file: Path | None, client_ca_file: Path | None
) -> grpc.ServerCredentials:
    """Handshakes without a client certificate chaining to ``client_ca_file``
    (or expired, or not for clientAuth) fail before any servicer code runs."""
    chain = _read(cert_file, "server certificate", "GRIDPILOT_GRPC_TLS_CERT_FILE")
    key = _read(key_file, "server key", "GRIDPILOT_GRPC_TLS_KEY_FILE")
    roots = _read(client_ca_file, "client CA", "GRIDPILOT_GRPC_CLIENT_CA_FILE")
    return grpc.ssl_server_credentials(
        [(key, chain)], root_certificates=roots, require_client_auth=True
    )


def certificate_expiry(path: Path) -> datetime:
    """When the soonest-expiring certificate of a PEM file (a chain or a
    bundle) expires; OSError / ValueError when it cannot be read."""
    certs = x509.load_pem_x509_certificates(path.read_bytes())
    return min(c.not_valid_after_utc for c in certs)
