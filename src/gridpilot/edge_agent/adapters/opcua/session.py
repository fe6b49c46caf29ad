"""Building one asyncua client (security, login) and telling its errors apart.

Every (re)connect builds a new client: reconnecting the same instance after a
blackholed link can hang forever (asyncua #1660).
"""

from __future__ import annotations

import asyncio
from pathlib import Path

from asyncua import Client, ua
from asyncua.crypto.security_policies import SecurityPolicyBasic256Sha256
from cryptography import x509

from ...config import OpcUaDevice
from ...config.protocols import OpcUaCertificateUser, OpcUaUserPassword

# Status codes that retrying cannot fix: the config (or the server's) must change.
MISCONFIGURED_STATUS = {
    "BadUserAccessDenied",
    "BadIdentityTokenRejected",
    "BadIdentityTokenInvalid",
    "BadCertificateUntrusted",
    "BadCertificateInvalid",
    "BadCertificateUriInvalid",
    "BadCertificateHostNameInvalid",
    "BadCertificateTimeInvalid",
    "BadCertificateRevoked",
    "BadSecurityPolicyRejected",
    "BadSecurityModeRejected",
    "BadNodeIdUnknown",
    "BadNodeIdInvalid",
}


class Misconfigured(Exception):
    """Found while connecting: the server lacks what the config names."""


def status_name(exc: BaseException) -> str | None:
    if isinstance(exc, ua.UaStatusCodeError):
        return ua.StatusCode(exc.code).name
    return None


def classify(exc: BaseException, url: str, timeout_s: float) -> tuple[bool, str]:
    """(misconfigured, message): the one place asyncua errors are read."""
    name = status_name(exc)
    if isinstance(exc, Misconfigured):
        return True, str(exc)
    if name is not None:
        hint = ""
        if name in ("BadUserAccessDenied", "BadIdentityTokenRejected"):
            hint = ": check auth (username/password or certificate)"
        elif name.startswith("BadCertificate"):
            hint = ": check security.certificate, application_uri, and the server's trust list"
        return name in MISCONFIGURED_STATUS, f"{url} refused the session: {name}{hint}"
    if isinstance(exc, ua.UaError) and "No matching endpoints" in str(exc):
        return True, f"{url} offers no endpoint with that security policy and mode"
    if isinstance(exc, TimeoutError | asyncio.TimeoutError):
        return False, f"no answer from {url} within {timeout_s:g} s"
    if isinstance(exc, OSError | ConnectionError):
        return False, f"cannot reach {url}: {exc or type(exc).__name__}"
    return False, f"{url}: {type(exc).__name__}: {exc}"


def certificate_uri(path: Path) -> str | None:
    """The URI in a certificate's subjectAltName (OPC UA's application URI)."""
    data = path.read_bytes()
    try:
        cert = x509.load_der_x509_certificate(data)
    except ValueError:
        cert = x509.load_pem_x509_certificate(data)
    try:
        san = cert.extensions.get_extension_for_class(x509.SubjectAlternativeName)
    except x509.ExtensionNotFound:
        return None
    uris = san.value.get_values_for_type(x509.UniformResourceIdentifier)
    return uris[0] if uris else None


def new_client(cfg: OpcUaDevice) -> Client:
    return Client(cfg.url, timeout=cfg.timeout_s, watchdog_intervall=cfg.health_interval_s)


async def open_session(client: Client, cfg: OpcUaDevice) -> None:
    """Secure channel, login and session on a new client (raises asyncua/OS errors)."""
    sec = cfg.security
    if sec is not None:
        uri = sec.application_uri or certificate_uri(sec.certificate)
        if uri:
            client.application_uri = uri  # must equal the certificate's URI
        await client.set_security(
            SecurityPolicyBasic256Sha256,
            str(sec.certificate),
            str(sec.private_key),
            server_certificate=str(sec.server_certificate) if sec.server_certificate else None,
            mode=ua.MessageSecurityMode[sec.mode],
        )
    auth = cfg.auth
    if isinstance(auth, OpcUaUserPassword):
        client.set_user(auth.username)
        if auth.password_file is not None:  # read on every connect: rotation needs no restart
            lines = auth.password_file.read_text(encoding="utf-8").splitlines()
            client.set_password(lines[0] if lines else "")
        else:
            client.set_password(auth.password or "")
    elif isinstance(auth, OpcUaCertificateUser):
        cert = auth.certificate or (sec.certificate if sec else None)
        key = auth.private_key or (sec.private_key if sec else None)
        assert cert is not None and key is not None  # the config validates this
        await client.load_client_certificate(str(cert))
        await client.load_private_key(key)
    await client.connect()


async def close_client(client: Client, timeout_s: float, *, had_session: bool) -> None:
    """Close the session politely when there is one, else just the socket."""
    if not had_session:
        client.disconnect_socket()
        return
    try:
        await asyncio.wait_for(client.disconnect(), timeout_s)
    except Exception:  # a dead link: nothing to close politely
        client.disconnect_socket()
