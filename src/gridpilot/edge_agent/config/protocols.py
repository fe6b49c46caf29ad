"""Device configs for real protocols: Modbus TCP (optionally SunSpec), OPC UA
and MQTT, plus the optional MQTT publish of the agent's own telemetry.

Any of them can drive any asset type; which normalized fields a point may
map to depends on the asset type (checked by the asset, see site.py).
"""

from __future__ import annotations

import difflib
import re
from typing import Annotated, Literal

from pydantic import Field, field_validator, model_validator

from gridpilot.core.assets import AssetType
from gridpilot.core.telemetry_fields import BY_NAME, VENDOR_PREFIX, field_for, mappable_fields

from .base import Loc, PositiveFloat, Strict, rule_error
from .points import ByteOrder, ExistingFile, ModbusPoint, MqttPoint, OpcUaPoint, point_list_problems

Port = Annotated[int, Field(ge=1, le=65535)]
Host = Annotated[str, Field(min_length=1, max_length=253, pattern=r"^[A-Za-z0-9._:\[\]-]+$")]
PollInterval = Annotated[float, Field(ge=0.05, le=3600)]


class _ProtocolDevice(Strict):
    poll_interval_s: PollInterval | None = Field(
        None, description="how often the agent takes a snapshot; default: telemetry_interval_s"
    )
    reconnect_backoff_max_s: Annotated[float, Field(ge=0.1, le=3600)] = Field(
        30.0, description="reconnect attempts back off exponentially up to this"
    )


# --------------------------------------------------------------------- Modbus


class ModbusDevice(_ProtocolDevice):
    """Modbus TCP. With ``sunspec: true`` the SunSpec model chain is discovered
    and mapped by itself; ``points`` then add to or override that map."""

    kind: Literal["modbus"]
    host: Host
    port: Port = 502
    unit_id: Annotated[int, Field(ge=0, le=255)] = 1
    timeout_s: PositiveFloat = Field(1.0, description="per request")
    byte_order: ByteOrder = Field("ABCD", description="default of the points")
    max_registers_per_read: Annotated[int, Field(ge=1, le=125)] = 125
    max_gap_registers: Annotated[int, Field(ge=0, le=124)] = Field(
        0, description="read across up to this many unmapped registers (if the device allows)"
    )
    write_multiple: bool = Field(
        False, description="write 16-bit registers with FC16 too (some devices refuse FC6)"
    )
    recycle_after_timeouts: Annotated[int, Field(ge=1, le=1000)] = Field(
        3, description="recreate the connection after this many timeouts in a row"
    )
    sunspec: bool = False
    sunspec_base_address: Annotated[int, Field(ge=0, le=65535)] | None = Field(
        None, description="where the 'SunS' marker is; default: try 40000, 0, 50000"
    )
    points: list[ModbusPoint] = Field(default_factory=list, max_length=2000)

    @model_validator(mode="after")
    def _rules(self) -> ModbusDevice:
        problems = point_list_problems(list(self.points))
        if not self.points and not self.sunspec:
            problems.append((("points",), "give points (or sunspec: true)"))
        if self.sunspec_base_address is not None and not self.sunspec:
            problems.append((("sunspec_base_address",), "only with sunspec: true"))
        if problems:
            raise rule_error(problems)
        return self


# --------------------------------------------------------------------- OPC UA


class OpcUaSecurity(Strict):
    """A secure channel. Without ``server_certificate`` the agent trusts the
    certificate the server presents (pin it in production)."""

    policy: Literal["Basic256Sha256"] = "Basic256Sha256"
    mode: Literal["Sign", "SignAndEncrypt"] = "SignAndEncrypt"
    certificate: ExistingFile = Field(description="the agent's certificate (DER or PEM)")
    private_key: ExistingFile = Field(description="its private key (PEM)")
    server_certificate: ExistingFile | None = None
    application_uri: str | None = Field(
        None, description="default: the URI in the certificate's subjectAltName"
    )


class OpcUaAnonymous(Strict):
    type: Literal["anonymous"]


class OpcUaUserPassword(Strict):
    type: Literal["username"]
    username: str = Field(min_length=1, max_length=256)
    password: str | None = Field(None, description="prefer password_file")
    password_file: ExistingFile | None = Field(None, description="first line is the password")

    @model_validator(mode="after")
    def _one_password(self) -> OpcUaUserPassword:
        if (self.password is None) == (self.password_file is None):
            raise rule_error([(("password",), "give exactly one of password, password_file")])
        return self


class OpcUaCertificateUser(Strict):
    """Log in with a certificate (X509 identity); default: the channel's."""

    type: Literal["certificate"]
    certificate: ExistingFile | None = None
    private_key: ExistingFile | None = None


OpcUaAuth = Annotated[
    OpcUaAnonymous | OpcUaUserPassword | OpcUaCertificateUser, Field(discriminator="type")
]

_OPC_URL = re.compile(r"^opc\.tcp://[^/:\s]+(:\d{1,5})?(/\S*)?$")


class OpcUaDevice(_ProtocolDevice):
    kind: Literal["opcua"]
    url: str = Field(description="opc.tcp://host:port/path")
    security: OpcUaSecurity | None = None
    auth: OpcUaAuth = Field(default_factory=lambda: OpcUaAnonymous(type="anonymous"))
    timeout_s: PositiveFloat = Field(4.0, description="per request and per connect step")
    mode: Literal["subscribe", "poll"] = Field(
        "subscribe", description="subscribe: server pushes changes (with deadband); poll: read"
    )
    publishing_interval_ms: Annotated[int, Field(ge=10, le=600_000)] = 500
    health_interval_s: PositiveFloat = Field(
        1.0, description="link check period: a silent link is noticed within this + timeout_s"
    )
    points: list[OpcUaPoint] = Field(min_length=1, max_length=5000)

    @field_validator("url")
    @classmethod
    def _opc_url(cls, value: str) -> str:
        if not _OPC_URL.match(value):
            raise ValueError(f"{value!r} is not opc.tcp://host:port/path")
        return value

    @model_validator(mode="after")
    def _rules(self) -> OpcUaDevice:
        problems: list[tuple[Loc, str]] = point_list_problems(list(self.points))
        auth = self.auth
        if isinstance(auth, OpcUaCertificateUser) and self.security is None:
            if auth.certificate is None or auth.private_key is None:
                problems.append((("auth",), "certificate login needs security: or its own files"))
        if isinstance(auth, OpcUaUserPassword) and self.security is None:
            problems.append((("security",), "a password needs a secure channel (security:)"))
        if problems:
            raise rule_error(problems)
        return self


# ----------------------------------------------------------------------- MQTT


class _MqttBroker(Strict):
    host: Host
    port: Port = 1883
    username: str | None = None
    password: str | None = Field(None, description="prefer password_file")
    password_file: ExistingFile | None = None
    client_id: str | None = Field(None, max_length=128, description="default: random")
    keepalive_s: Annotated[int, Field(ge=5, le=3600)] = 30
    timeout_s: PositiveFloat = 5.0

    @model_validator(mode="after")
    def _password(self) -> _MqttBroker:
        if self.password is not None and self.password_file is not None:
            raise rule_error([(("password",), "give password or password_file, not both")])
        return self


class MqttDevice(_MqttBroker, _ProtocolDevice):
    """Values arrive as JSON (or plain) payloads on topics; a setpoint is
    published to its point's topic."""

    kind: Literal["mqtt"]
    qos: Literal[0, 1, 2] = 1
    stale_after_s: PositiveFloat = Field(
        60.0, description="a value not refreshed within this is reported stale"
    )
    points: list[MqttPoint] = Field(min_length=1, max_length=5000)

    @model_validator(mode="after")
    def _rules(self) -> MqttDevice:
        problems = point_list_problems(list(self.points))
        if problems:
            raise rule_error(problems)
        return self


class MqttPublish(_MqttBroker):
    """Publish every normalized sample as JSON to
    ``<topic_prefix>/<asset_id>/telemetry`` (best effort: the latest sample
    per asset waits while the broker is away, older ones are dropped)."""

    topic_prefix: str = Field(
        "gridpilot/{site_id}", min_length=1, pattern=r"^[^#+]+$", description="{site_id} expands"
    )
    qos: Literal[0, 1, 2] = 0
    retain: bool = False


ProtocolDevice = ModbusDevice | OpcUaDevice | MqttDevice


def point_field_problems(asset_type: AssetType, device: object) -> list[tuple[Loc, str]]:
    """Points must name a v1 field of the asset's type (or an ``x_`` vendor name),
    so a typo is an error with its line, not a silently unknown detail."""
    points = getattr(device, "points", None) or []
    problems: list[tuple[Loc, str]] = []
    for i, point in enumerate(points):
        name = point.field
        spec = field_for(name, asset_type)
        if name.startswith(VENDOR_PREFIX) or (spec is not None and not spec.reserved):
            continue
        spec = BY_NAME.get(name)
        if spec is not None and spec.reserved:
            msg = f"{name!r} is set by the agent itself; map the value to another field"
        elif spec is not None:
            msg = f"{name!r} is not a field of a {asset_type}"
        else:
            allowed = mappable_fields(asset_type)
            close = difflib.get_close_matches(name, allowed, n=1)
            hint = f"did you mean {close[0]!r}? " if close else ""
            msg = f"unknown field {name!r}; {hint}see docs/telemetry-model.md, or use x_{name}"
        problems.append((("device", "points", i, "field"), msg))
    return problems
