"""The site YAML an installer writes for one edge agent (schema version 1).

The agent runs in *gateway mode*: one agent speaks for every asset of a site.
Every mapping rejects unknown keys, so a typo is an error, never a silently
ignored setting. Load files with :func:`gridpilot.edge_agent.loader.load_config`,
which reports each problem as ``file:line: field.path: message``.

Rules per asset type (sign convention of :mod:`gridpilot.core.assets`):

- every asset: ``p_min_kw <= p_max_kw``, both finite, and ``default_p_kw``
  (where the asset returns when a lease ends or the link is lost) inside them;
- ``bess``: ``p_min_kw <= 0 <= p_max_kw`` (idle must be possible) and a
  positive ``capacity_kwh``;
- ``pv`` and ``wind``: generation only, ``0 <= p_min_kw`` and ``p_max_kw > 0``;
- ``ev_charger``: ``p_min_kw < 0`` (it charges) and ``p_max_kw >= 0``, where
  a positive ``p_max_kw`` means the charger can do V2G export.

Devices are a union on ``kind`` per asset type: ``simulated`` (per type),
and ``modbus`` (optionally SunSpec), ``opcua`` and ``mqtt`` for every type,
with point maps whose fields are checked against the asset type's telemetry
fields (:mod:`gridpilot.core.telemetry_fields`).
"""

from .base import IDENTIFIER_PATTERN, Loc, rule_error
from .devices import (
    SimulatedBessDevice,
    SimulatedEvDevice,
    SimulatedPvDevice,
    SimulatedWindDevice,
)
from .opcua_server import OpcuaServerConfig, OpcuaUser
from .points import ModbusPoint, MqttPoint, OpcUaPoint, PointBase
from .protocols import ModbusDevice, MqttDevice, MqttPublish, OpcUaDevice, ProtocolDevice
from .site import (
    AssetConfig,
    BessAsset,
    BufferConfig,
    EvChargerAsset,
    HeadendConfig,
    Limits,
    PvAsset,
    SiteConfig,
    SiteInfo,
    WindAsset,
    site_assets,
)

__all__ = [
    "IDENTIFIER_PATTERN",
    "AssetConfig",
    "BessAsset",
    "BufferConfig",
    "EvChargerAsset",
    "HeadendConfig",
    "Limits",
    "Loc",
    "ModbusDevice",
    "ModbusPoint",
    "MqttDevice",
    "MqttPoint",
    "MqttPublish",
    "OpcUaDevice",
    "OpcUaPoint",
    "OpcuaServerConfig",
    "OpcuaUser",
    "PointBase",
    "ProtocolDevice",
    "PvAsset",
    "SimulatedBessDevice",
    "SimulatedEvDevice",
    "SimulatedPvDevice",
    "SimulatedWindDevice",
    "SiteConfig",
    "SiteInfo",
    "WindAsset",
    "rule_error",
    "site_assets",
]
