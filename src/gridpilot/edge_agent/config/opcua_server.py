"""The agent's own OPC UA server (``opcua_server:``): a local SCADA such as
Ignition reads the site's normalized telemetry and writes setpoints.

Secure by default: only Basic256Sha256 SignAndEncrypt is offered, clients
need a trusted certificate and a user name with a hashed password, nobody
writes without the ``operator`` role. ``None`` (no security) is offered only
when written in ``security_policies``; anonymous clients only with
``anonymous: true``, and then they may read but never write.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from pathlib import Path
from typing import Annotated, Any, Literal

from pydantic import Field, ValidationInfo, field_validator, model_validator

from gridpilot.security.passwords import parse_password_hash

from ..control.local_control import Arbitration
from .base import Loc, Strict, duplicate_problems, rule_error
from .points import ExistingFile

SecurityPolicyName = Literal[
    "Basic256Sha256_Sign",
    "Basic256Sha256_SignAndEncrypt",
    "Aes128Sha256RsaOaep_SignAndEncrypt",
    "Aes256Sha256RsaPss_SignAndEncrypt",
    "None",
]
SECURE_POLICIES: tuple[str, ...] = (
    "Basic256Sha256_Sign",
    "Basic256Sha256_SignAndEncrypt",
    "Aes128Sha256RsaOaep_SignAndEncrypt",
    "Aes256Sha256RsaPss_SignAndEncrypt",
)
DEFAULT_ENDPOINT = "opc.tcp://0.0.0.0:4840/gridpilot/"

_ENDPOINT = re.compile(
    r"^opc\.tcp://(?P<host>\[[0-9A-Fa-f:.]+\]|[A-Za-z0-9._-]+):(?P<port>\d{1,5})(/\S*)?$"
)
_URI = re.compile(r"^[A-Za-z][A-Za-z0-9+.-]*:\S+$")

UserName = Annotated[
    str,
    Field(
        pattern=r"^[A-Za-z0-9][A-Za-z0-9._@-]{0,63}$",
        description="1-64 letters, digits, '.', '_', '@' or '-'",
    ),
]
Uri = Annotated[str, Field(pattern=_URI.pattern, max_length=400, description="a URI, e.g. urn:…")]


class OpcuaUser(Strict):
    """One login. ``operator`` may write setpoints; ``viewer`` only reads."""

    name: UserName
    role: Literal["operator", "viewer"]
    password_hash: str = Field(
        description="scrypt$n$r$p$salt$hash, made by 'gridpilot agent hash-password'"
    )

    @model_validator(mode="before")
    @classmethod
    def _no_plain_password(cls, data: Any) -> Any:
        if isinstance(data, dict) and "password" in data:
            raise rule_error(
                [
                    (
                        ("password",),
                        "plain passwords are not accepted: run 'gridpilot agent hash-password' "
                        "and put its output in password_hash",
                    )
                ]
            )
        return data

    @field_validator("password_hash")
    @classmethod
    def _hash_format(cls, value: str) -> str:
        parse_password_hash(value)  # ValueError says what is wrong
        return value


class OpcuaServerConfig(Strict):
    """The agent's OPC UA server surface (see docs/opcua-surface.md)."""

    endpoint: str = Field(
        DEFAULT_ENDPOINT,
        description="opc.tcp://host:port/path to listen on; 0.0.0.0 listens on every interface",
    )
    namespace_uri: Uri | None = Field(
        None, description="the agent's namespace (ns=2); default urn:gridpilot:edge:<gateway_id>"
    )
    application_uri: Uri | None = Field(
        None,
        description="the server's ApplicationUri (also in its certificate); "
        "default urn:gridpilot:edge:<gateway_id>:server",
    )
    security_policies: list[SecurityPolicyName] = Field(
        default_factory=lambda: ["Basic256Sha256_SignAndEncrypt"],  # type: ignore[arg-type]
        min_length=1,
        max_length=5,
        description="endpoints offered; None (no security) only when listed here",
    )
    certificate: ExistingFile | None = Field(
        None,
        description="server certificate (DER or PEM); default: generated on first start "
        "under <state dir>/opcua/",
    )
    private_key: ExistingFile | None = Field(None, description="its private key (PEM)")
    trusted_clients_dir: Path | None = Field(
        None,
        description="client certificates trusted for the secure channel; refused ones are "
        "copied to a sibling rejected/ folder; default <state dir>/opcua/trusted",
    )
    users: list[OpcuaUser] = Field(default_factory=list, max_length=100)
    anonymous: bool = Field(
        False, description="anonymous clients may browse, read and subscribe (never write)"
    )
    arbitration: Arbitration = Field(
        Arbitration.CLOUD_PRIORITY,
        description="who wins between local (OPC UA) and cloud setpoints: cloud_priority, "
        "local_priority or local_only",
    )
    local_lease_s: Annotated[float, Field(ge=10, le=7 * 86400)] = Field(
        3600.0, description="a local setpoint holds this long unless rewritten or released"
    )
    stale_after_s: Annotated[float, Field(ge=0.1, le=86400)] = Field(
        10.0, description="telemetry older than this is shown Uncertain (last usable value)"
    )
    publish_interval_s: Annotated[float, Field(ge=0.05, le=3600)] = Field(
        1.0, description="how often telemetry nodes are refreshed"
    )

    @field_validator("endpoint")
    @classmethod
    def _endpoint(cls, value: str) -> str:
        match = _ENDPOINT.match(value)
        if match is None or int(match["port"]) > 65535:
            raise ValueError(f"{value!r} is not opc.tcp://host:port/path (e.g. {DEFAULT_ENDPOINT})")
        return value

    @field_validator("trusted_clients_dir")
    @classmethod
    def _relative_to_config(cls, value: Path | None, info: ValidationInfo) -> Path | None:
        base = (info.context or {}).get("base_dir")
        if value is None or value.is_absolute() or base is None:
            return value
        return Path(base) / value

    @model_validator(mode="after")
    def _rules(self) -> OpcuaServerConfig:
        problems: list[tuple[Loc, str]] = []
        seen: dict[str, int] = {}
        for i, policy in enumerate(self.security_policies):
            if policy in seen:
                problems.append((("security_policies", i), f"{policy} is listed twice"))
            seen.setdefault(policy, i)
        if (self.certificate is None) != (self.private_key is None):
            missing = "private_key" if self.private_key is None else "certificate"
            problems.append(((missing,), "give both certificate and private_key, or neither"))
        problems += duplicate_problems((u.name for u in self.users), "users", "name", "user")
        if not self.users and not self.anonymous:
            problems.append((("users",), "nobody could log in: add users (or anonymous: true)"))
        if self.users and not any(p in SECURE_POLICIES for p in self.security_policies):
            problems.append(
                (
                    ("security_policies",),
                    "with only None, passwords would cross the network in plain text: "
                    "also offer a secure policy (e.g. Basic256Sha256_SignAndEncrypt)",
                )
            )
        if (
            self.namespace_uri is not None
            and self.application_uri is not None
            and self.namespace_uri == self.application_uri
        ):
            problems.append(
                (("namespace_uri",), "must differ from application_uri (that is namespace 1)")
            )
        if problems:
            raise rule_error(problems)
        return self

    # ------------------------------------------------------------- defaults

    def namespace_for(self, gateway_id: str) -> str:
        return self.namespace_uri or f"urn:gridpilot:edge:{gateway_id}"

    def application_uri_for(self, gateway_id: str) -> str:
        return self.application_uri or f"urn:gridpilot:edge:{gateway_id}:server"

    def state_paths(self, state_dir: Path | None) -> OpcuaStatePaths:
        """Where the server certificate, its key and the trust folders are.

        Raises ValueError when a generated certificate or the default trust
        folder is needed but there is no state directory to keep it in."""
        base = state_dir / "opcua" if state_dir is not None else None
        if self.certificate is not None and self.private_key is not None:
            cert, key, generate = self.certificate, self.private_key, False
        elif base is not None:
            cert, key, generate = base / "server-cert.der", base / "server-key.pem", True
        else:
            raise ValueError(
                "opcua_server: give certificate and private_key, or run the agent with a "
                "state directory (--state-dir) where it can generate them"
            )
        if self.trusted_clients_dir is not None:
            trusted = self.trusted_clients_dir
        elif base is not None:
            trusted = base / "trusted"
        else:
            raise ValueError(
                "opcua_server: give trusted_clients_dir, or run the agent with a state "
                "directory (--state-dir) to keep trusted client certificates in"
            )
        return OpcuaStatePaths(cert, key, generate, trusted, trusted.parent / "rejected")


@dataclass(frozen=True, slots=True)
class OpcuaStatePaths:
    certificate: Path
    private_key: Path
    generate: bool  # create (or renew) a self-signed certificate at these paths
    trusted_dir: Path
    rejected_dir: Path
