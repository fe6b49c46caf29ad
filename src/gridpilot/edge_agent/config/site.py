"""The site YAML's top level: site, headend link, intervals, buffer, assets."""

from __future__ import annotations

import re
import zoneinfo
from pathlib import Path
from typing import Annotated, Any, ClassVar, Literal

from pydantic import Field, ValidationInfo, field_validator, model_validator

from gridpilot.core.assets import Asset, AssetType, PowerLimits

from .base import (
    FiniteFloat,
    Identifier,
    Loc,
    PositiveFloat,
    Strict,
    duplicate_problems,
    rule_error,
)
from .devices import BessDevice, EvDevice, PvDevice, WindDevice
from .opcua_server import OpcuaServerConfig
from .protocols import MqttPublish, point_field_problems

_ADDRESS = re.compile(r"^(\[[0-9A-Fa-f:.]+\]|[A-Za-z0-9._-]+):(\d{1,5})$")


# ---------------------------------------------------------------- site, link


def _host_port(value: str) -> str:
    match = _ADDRESS.match(value)
    if match is None or not 0 < int(match.group(2)) < 65536:
        raise ValueError(f"{value!r} is not host:port (e.g. headend.example.com:50051)")
    return value


class SiteInfo(Strict):
    id: Identifier
    name: str = Field("", max_length=200)
    timezone: str | None = Field(
        None,
        description="IANA zone of the site (e.g. Europe/Berlin) for simulated daylight; "
        "default: the host's local time",
    )

    @field_validator("timezone")
    @classmethod
    def _known_zone(cls, value: str | None) -> str | None:
        if value is not None:
            try:
                zoneinfo.ZoneInfo(value)
            except (zoneinfo.ZoneInfoNotFoundError, ValueError):
                raise ValueError(f"unknown time zone {value!r}") from None
        return value


class HeadendConfig(Strict):
    """Where the agent dials out to. TLS is the default; ``insecure: true``
    is for a headend on the same host or a lab network.

    ``address`` first; when a connect attempt fails or the stream is lost the
    agent dials the next of ``failover_addresses`` (then ``address`` again),
    with the usual backoff. A load balancer or a DNS name with one record per
    replica in front of the headends needs none: gRPC tries every address a
    name resolves to."""

    address: str = Field(description="host:port of the headend's gRPC AgentGateway")
    failover_addresses: list[str] = Field(
        default_factory=list,
        max_length=16,
        description="host:port of further headend replicas, dialled in turn (after address) "
        "when a connect attempt fails or the stream is lost",
    )
    insecure: bool = False
    ca_file: Path | None = None
    cert_file: Path | None = None
    key_file: Path | None = None

    @field_validator("address")
    @classmethod
    def _host_port(cls, value: str) -> str:
        return _host_port(value)

    @field_validator("failover_addresses")
    @classmethod
    def _host_ports(cls, value: list[str], info: ValidationInfo) -> list[str]:
        for address in value:
            _host_port(address)
        listed = [info.data.get("address"), *value]
        if len(set(listed)) < len(listed):
            raise ValueError("an address is listed twice (address included)")
        return value

    @property
    def addresses(self) -> list[str]:
        """Every address the agent dials, in the order it tries them."""
        return [self.address, *self.failover_addresses]

    @field_validator("ca_file", "cert_file", "key_file")
    @classmethod
    def _readable(cls, value: Path | None, info: ValidationInfo) -> Path | None:
        if value is None:
            return None
        base = (info.context or {}).get("base_dir")
        path = value if value.is_absolute() or base is None else Path(base) / value
        if not path.is_file():
            raise ValueError(f"file not found: {path}")
        return path

    @model_validator(mode="after")
    def _tls_files(self) -> HeadendConfig:
        if not self.insecure:
            missing = [n for n in ("ca_file", "cert_file", "key_file") if getattr(self, n) is None]
            if missing:
                raise rule_error(
                    [((n,), "required unless insecure: true (mutual TLS)") for n in missing]
                )
        return self


class BufferConfig(Strict):
    """The telemetry store-and-forward buffer: a SQLite file that holds every
    batch until the headend acks it (survives agent restarts and kill -9)."""

    path: Path | None = Field(
        None,
        description="SQLite file, relative to this config file; default "
        "<--state-dir, else this file's directory>/<gateway_id>.telemetry.sqlite3",
    )
    max_bytes: int = Field(
        256 * 1024 * 1024,
        ge=64 * 1024,
        le=1024**4,
        description="cap on the serialized size of unacked batches",
    )
    max_age_s: float = Field(
        7 * 86400, gt=0, allow_inf_nan=False, description="unacked batches older than this go"
    )
    policy: Literal["drop_oldest", "drop_newest"] = Field(
        "drop_oldest",
        description="when full: drop the oldest batches, or refuse the newest; always counted",
    )

    @field_validator("path")
    @classmethod
    def _relative_to_config(cls, value: Path | None, info: ValidationInfo) -> Path | None:
        base = (info.context or {}).get("base_dir")
        if value is None or value.is_absolute() or base is None:
            return value
        return Path(base) / value


class Limits(Strict):
    p_min_kw: FiniteFloat
    p_max_kw: FiniteFloat

    @model_validator(mode="after")
    def _ordered(self) -> Limits:
        if self.p_min_kw > self.p_max_kw:
            raise rule_error(
                [(("p_min_kw",), f"{self.p_min_kw} is above p_max_kw {self.p_max_kw}")]
            )
        return self


# ------------------------------------------------------------------- assets


class _AssetBase(Strict):
    id: Identifier
    name: str = Field("", max_length=200)
    limits: Limits
    default_p_kw: FiniteFloat = Field(
        description="power the asset returns to when a lease ends or the link is lost"
    )

    asset_type: ClassVar[AssetType]

    def _type_problems(self) -> list[tuple[Loc, str]]:
        return []

    @model_validator(mode="after")
    def _rules(self) -> Any:
        lim = self.limits
        problems = self._type_problems()
        problems += point_field_problems(self.asset_type, getattr(self, "device", None))
        if not lim.p_min_kw <= self.default_p_kw <= lim.p_max_kw:
            problems.append(
                (
                    ("default_p_kw",),
                    f"{self.default_p_kw} is outside limits [{lim.p_min_kw}, {lim.p_max_kw}] kW",
                )
            )
        if problems:
            raise rule_error(problems)
        return self


class BessAsset(_AssetBase):
    asset_type = AssetType.BESS
    type: Literal["bess"]
    capacity_kwh: PositiveFloat
    device: BessDevice

    def _type_problems(self) -> list[tuple[Loc, str]]:
        if not self.limits.p_min_kw <= 0 <= self.limits.p_max_kw:
            return [(("limits",), "a bess needs p_min_kw <= 0 <= p_max_kw")]
        return []


class _GeneratorAsset(_AssetBase):
    def _type_problems(self) -> list[tuple[Loc, str]]:
        problems: list[tuple[Loc, str]] = []
        if self.limits.p_min_kw < 0:
            problems.append(
                (("limits", "p_min_kw"), f"a {self.asset_type} cannot import: use >= 0")
            )
        if self.limits.p_max_kw <= 0:
            problems.append((("limits", "p_max_kw"), f"a {self.asset_type} needs p_max_kw > 0"))
        return problems


class PvAsset(_GeneratorAsset):
    asset_type = AssetType.PV
    type: Literal["pv"]
    device: PvDevice


class WindAsset(_GeneratorAsset):
    asset_type = AssetType.WIND
    type: Literal["wind"]
    device: WindDevice


class EvChargerAsset(_AssetBase):
    asset_type = AssetType.EV_CHARGER
    type: Literal["ev_charger"]
    device: EvDevice

    def _type_problems(self) -> list[tuple[Loc, str]]:
        problems: list[tuple[Loc, str]] = []
        if self.limits.p_min_kw >= 0:
            problems.append((("limits", "p_min_kw"), "an ev_charger charges: use p_min_kw < 0"))
        if self.limits.p_max_kw < 0:
            problems.append((("limits", "p_max_kw"), "use 0 (or > 0 for V2G export)"))
        return problems


AssetConfig = Annotated[
    BessAsset | PvAsset | WindAsset | EvChargerAsset, Field(discriminator="type")
]


class SiteConfig(Strict):
    version: Literal[1]
    gateway_id: Identifier
    site: SiteInfo
    headend: HeadendConfig
    telemetry_interval_s: Annotated[float, Field(ge=0.05, le=3600)] = 1.0
    heartbeat_interval_s: Annotated[float, Field(ge=0.05, le=3600)] = 10.0
    failsafe_timeout_s: Annotated[float, Field(ge=0.1, le=7 * 86400)] = 60.0
    buffer: BufferConfig = Field(default_factory=BufferConfig)
    mqtt_publish: MqttPublish | None = Field(
        None, description="also publish every normalized sample to an MQTT broker"
    )
    opcua_server: OpcuaServerConfig | None = Field(
        None,
        description="serve the site's telemetry and setpoints to a local SCADA over OPC UA",
    )
    assets: list[AssetConfig] = Field(min_length=1, max_length=1000)

    @model_validator(mode="after")
    def _unique_ids(self) -> SiteConfig:
        problems = duplicate_problems((a.id for a in self.assets), "assets", "id", "asset id")
        if problems:
            raise rule_error(problems)
        return self

    def with_headend_address(self, address: str) -> SiteConfig:
        """A copy that dials ``address`` instead: one host:port, or several
        separated by commas (the first, then the failovers). Validated like the
        YAML's; raises pydantic's ValidationError."""
        first, *failover = [a.strip() for a in address.split(",")]
        headend = HeadendConfig.model_validate(
            {**self.headend.model_dump(), "address": first, "failover_addresses": failover}
        )
        return self.model_copy(update={"headend": headend})

    def asset(self, asset_id: str) -> AssetConfig | None:
        return next((a for a in self.assets if a.id == asset_id), None)

    def poll_interval_s(self, asset_id: str) -> float:
        """The device's own poll interval, else the telemetry interval."""
        asset = self.asset(asset_id)
        own = getattr(asset.device, "poll_interval_s", None) if asset is not None else None
        return own if own is not None else self.telemetry_interval_s


def site_assets(cfg: SiteConfig) -> list[Asset]:
    """The config's assets in the core's own terms."""
    return [
        Asset(
            asset_id=a.id,
            site_id=cfg.site.id,
            asset_type=a.asset_type,
            limits=PowerLimits(a.limits.p_min_kw, a.limits.p_max_kw),
            name=a.name,
            capacity_kwh=a.capacity_kwh if isinstance(a, BessAsset) else 0.0,
            default_p_kw=a.default_p_kw,
        )
        for a in cfg.assets
    ]
