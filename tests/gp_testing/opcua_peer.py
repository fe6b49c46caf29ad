"""An OPC UA server (asyncua) on 127.0.0.1 for adapter tests: a few typed
variables under one namespace URI, optionally Basic256Sha256-only with a
user/password check and a client-certificate user."""

from __future__ import annotations

import asyncio
import logging
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from asyncua import Server, ua
from asyncua.crypto.cert_gen import setup_self_signed_certificate
from asyncua.crypto.permission_rules import User, UserRole
from asyncua.crypto.security_policies import SecurityPolicyBasic256Sha256
from asyncua.server.user_managers import UserManager
from cryptography.x509.oid import ExtendedKeyUsageOID

NS_URI = "urn:gridpilot:test:plc"
CLIENT_URI = "urn:gridpilot:test:agent"

# name -> (initial value, variant type, writable)
DEFAULT_VARIABLES: dict[str, tuple[Any, ua.VariantType, bool]] = {
    "EV1.Power_W": (-7400.0, ua.VariantType.Double, False),
    "EV1.Voltage_V": (230.5, ua.VariantType.Float, False),
    "EV1.SessionEnergy_Wh": (1234, ua.VariantType.UInt32, False),
    "EV1.Connected": (True, ua.VariantType.Boolean, False),
    "EV1.State": ("Charging", ua.VariantType.String, False),
    "EV1.StatusCode": (3, ua.VariantType.Int16, False),
    "EV1.LimitSetpoint_W": (0, ua.VariantType.Int32, True),
    "EV1.PowerSetpoint_kW": (0.0, ua.VariantType.Float, True),
}


@dataclass
class Credentials:
    users: dict[str, str] = field(default_factory=dict)
    cert_users: set[bytes] = field(default_factory=set)  # DER of trusted user certs


class _Users(UserManager):
    def __init__(self, creds: Credentials) -> None:
        self.creds = creds

    def get_user(
        self,
        iserver: Any,
        username: str | None = None,
        password: str | None = None,
        certificate: Any = None,
    ) -> User | None:
        if username is not None:
            if self.creds.users.get(username) == password:
                return User(role=UserRole.User, name=username)
            return None
        if certificate is not None:
            from cryptography.hazmat.primitives.serialization import Encoding

            der = (
                certificate
                if isinstance(certificate, bytes)
                else certificate.public_bytes(Encoding.DER)
            )
            if der in self.creds.cert_users:
                return User(role=UserRole.User, name="cert-user")
            return None
        return None


async def make_certificate(directory: Path, name: str, app_uri: str) -> tuple[Path, Path]:
    """A self-signed (cert.der, key.pem) pair whose URI SAN is ``app_uri``."""
    await asyncio.to_thread(directory.mkdir, parents=True, exist_ok=True)
    key, cert = directory / f"{name}.pem", directory / f"{name}.der"
    await setup_self_signed_certificate(
        key,
        cert,
        app_uri,
        "localhost",
        [ExtendedKeyUsageOID.CLIENT_AUTH, ExtendedKeyUsageOID.SERVER_AUTH],
        {"commonName": name},
    )
    return cert, key


class OpcUaPeer:
    """Start/stop/restart on a fixed port; ``value``/``set`` reach the variables."""

    def __init__(
        self,
        port: int,
        *,
        variables: dict[str, tuple[Any, ua.VariantType, bool]] | None = None,
        secure_dir: Path | None = None,
        credentials: Credentials | None = None,
        extra_namespaces: int = 0,
    ) -> None:
        self.port = port
        self.url = f"opc.tcp://127.0.0.1:{port}/gridpilot/"
        self.variables = dict(variables or DEFAULT_VARIABLES)
        self.secure_dir = secure_dir
        self.credentials = credentials or Credentials()
        self.extra_namespaces = extra_namespaces
        self.server: Server | None = None
        self.ns = 0
        self.nodes: dict[str, Any] = {}
        self.server_cert: Path | None = None

    async def start(self) -> None:
        logging.getLogger("asyncua").setLevel(logging.ERROR)
        server = Server(user_manager=_Users(self.credentials) if self.secure_dir else None)
        await server.init()
        server.set_endpoint(self.url)
        server.set_server_name("GridPilot test PLC")
        if self.secure_dir is not None:
            uri = "urn:gridpilot:test:server"
            cert, key = await make_certificate(self.secure_dir, "server", uri)
            self.server_cert = cert
            await server.set_application_uri(uri)
            await server.load_certificate(str(cert))
            await server.load_private_key(str(key))
            server.set_security_policy([ua.SecurityPolicyType.Basic256Sha256_SignAndEncrypt])
            server.set_identity_tokens([ua.UserNameIdentityToken, ua.X509IdentityToken])
            server.allow_remote_admin(False)
        for i in range(self.extra_namespaces):  # shifts our namespace's index
            await server.register_namespace(f"urn:gridpilot:test:filler:{i}")
        self.ns = await server.register_namespace(NS_URI)
        obj = await server.nodes.objects.add_object(
            ua.NodeId("EV1", self.ns), ua.QualifiedName("EV1", self.ns)
        )
        for name, (value, vtype, writable) in self.variables.items():
            node = await obj.add_variable(
                ua.NodeId(name, self.ns), ua.QualifiedName(name, self.ns), value, varianttype=vtype
            )
            if writable:
                await node.set_writable()
            self.nodes[name] = node
        await server.start()
        self.server = server

    async def stop(self) -> None:
        if self.server is not None:
            server, self.server = self.server, None
            await server.stop()

    async def restart(self, pause_s: float = 0.5, *, extra_namespaces: int | None = None) -> None:
        await self.stop()
        await asyncio.sleep(pause_s)
        if extra_namespaces is not None:
            self.extra_namespaces = extra_namespaces
        await self.start()

    async def value(self, name: str) -> Any:
        return await self.nodes[name].read_value()

    async def data_type(self, name: str) -> ua.VariantType:
        return await self.nodes[name].read_data_type_as_variant_type()  # type: ignore[no-any-return]

    async def set(self, name: str, value: Any, status: ua.StatusCode | None = None) -> None:
        vtype = self.variables[name][1]
        dv = ua.DataValue(ua.Variant(value, vtype), StatusCode=status or ua.StatusCode())
        assert self.server is not None
        await self.server.write_attribute_value(self.nodes[name].nodeid, dv)


def security_policy() -> Any:
    return SecurityPolicyBasic256Sha256
