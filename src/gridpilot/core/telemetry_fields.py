"""Telemetry model v1: every normalized field, its unit and where it lives.

A :class:`~gridpilot.core.telemetry.Sample` has a few *core* fields with
columns of their own (``p_kw`` … ``state``); everything else travels in
``details`` under the names listed here. *Common* detail fields mean the same
for every asset type; the per-type sets are the starter fields an adapter
should fill where the device has them. Unknown ``details`` keys are kept, and
a point map may use any ``x_``-prefixed name for a vendor value.

Names carry their units. Sign convention (see :mod:`gridpilot.core.assets`):
power and energy flows are seen from the grid, ``p_kw > 0`` exports
(discharge/generate), ``p_kw < 0`` imports (charge/consume).

Per-point quality rides in ``details.quality`` as ``{field: "stale"|"bad"}``;
a field that is not listed there is good (:class:`Quality`).
"""

from __future__ import annotations

from dataclasses import dataclass
from enum import StrEnum
from typing import Literal

from .assets import AssetType

ValueKind = Literal["number", "bool", "text", "map"]


class Quality(StrEnum):
    """How far a point's value can be trusted."""

    GOOD = "good"  # read from the device just now
    STALE = "stale"  # the last known value; the device or link did not confirm it lately
    BAD = "bad"  # the device said the value is invalid, or it could not be read or decoded


@dataclass(frozen=True, slots=True)
class FieldSpec:
    name: str
    unit: str
    kind: ValueKind
    description: str
    asset_types: frozenset[AssetType] | None = None  # None: every type
    core: bool = False  # a column of its own (else it lives in details)
    reserved: bool = False  # set by the agent itself, never mapped from a device point


_ALL = None
_BESS = frozenset({AssetType.BESS})
_PV = frozenset({AssetType.PV})
_WIND = frozenset({AssetType.WIND})
_EV = frozenset({AssetType.EV_CHARGER})
_GEN = frozenset({AssetType.PV, AssetType.WIND})

_F = FieldSpec

FIELDS: tuple[FieldSpec, ...] = (
    # ---- core: columns of their own, the same for every type
    _F("p_kw", "kW", "number", "active power; > 0 exports, < 0 imports", core=True),
    _F("q_kvar", "kvar", "number", "reactive power; > 0 injects (over-excited)", core=True),
    _F("soc_pct", "%", "number", "state of charge (BESS; the car's for an EV charger)", core=True),
    _F("available_charge_kw", "kW", "number", "power it could import now (>= 0)", core=True),
    _F("available_discharge_kw", "kW", "number", "power it could export now (>= 0)", core=True),
    _F("voltage_v", "V", "number", "AC voltage, line-to-neutral average", core=True),
    _F("frequency_hz", "Hz", "number", "grid frequency", core=True),
    _F("state", "", "text", "operating state in lower-case words", core=True),
    # ---- common details: every type
    _F("energy_export_kwh", "kWh", "number", "cumulative energy exported (meter register)"),
    _F("energy_import_kwh", "kWh", "number", "cumulative energy imported (meter register)"),
    _F("s_kva", "kVA", "number", "apparent power"),
    _F("power_factor", "", "number", "power factor -1..1, sign of p_kw"),
    _F("current_a", "A", "number", "AC current, sum or average of phases"),
    _F("temperature_c", "°C", "number", "device (cabinet/inverter) temperature"),
    _F("setpoint_kw", "kW", "number", "active power setpoint the device holds (echo)"),
    _F("p_limit_pct", "%", "number", "active power limit in % of rating (curtailment)"),
    _F("rated_p_kw", "kW", "number", "nameplate active power"),
    _F("grid_connected", "", "bool", "connected to the grid"),
    _F("fault", "", "bool", "a fault is active"),
    _F("alarm_code", "", "number", "vendor alarm/event code or bitfield"),
    _F("quality", "", "map", "{field: stale|bad} for points that are not good", reserved=True),
    _F(
        "error",
        "",
        "text",
        "why the device could not be read (sample without values)",
        reserved=True,
    ),
    _F(
        "stale_since",
        "",
        "text",
        "ISO time of the last good reading (device unavailable)",
        reserved=True,
    ),
    # ---- BESS
    _F("soh_pct", "%", "number", "state of health", _BESS),
    _F("cell_temp_max_c", "°C", "number", "hottest cell", _BESS),
    _F("cell_temp_min_c", "°C", "number", "coldest cell", _BESS),
    _F("energy_capacity_kwh", "kWh", "number", "usable energy capacity (nameplate)", _BESS),
    _F("energy_available_kwh", "kWh", "number", "energy it could deliver now", _BESS),
    _F("energy_charged_kwh", "kWh", "number", "cumulative energy charged", _BESS),
    _F("energy_discharged_kwh", "kWh", "number", "cumulative energy discharged", _BESS),
    _F("dc_voltage_v", "V", "number", "DC voltage (battery, or PV input)", _BESS | _PV),
    _F("cycle_count", "", "number", "full equivalent cycles", _BESS),
    # ---- PV
    _F("irradiance_w_m2", "W/m²", "number", "plane-of-array irradiance", _PV),
    _F("dc_power_kw", "kW", "number", "DC input power", _PV),
    _F("module_temp_c", "°C", "number", "module temperature", _PV),
    _F("curtailed_kw", "kW", "number", "available but not produced (curtailment)", _GEN),
    # ---- wind
    _F("wind_speed_m_s", "m/s", "number", "hub-height wind speed", _WIND),
    _F("rotor_rpm", "rpm", "number", "rotor speed", _WIND),
    _F("nacelle_direction_deg", "°", "number", "nacelle direction from north", _WIND),
    # ---- EV charging
    _F("session_state", "", "text", "available, charging, suspended_ev, suspended_evse, …", _EV),
    _F("vehicle_connected", "", "bool", "a vehicle is plugged in", _EV),
    _F("session_energy_kwh", "kWh", "number", "energy of the current session", _EV),
    _F("vehicle_soc_pct", "%", "number", "the car's state of charge, when it reports it", _EV),
    _F("current_offered_a", "A", "number", "current limit offered to the car", _EV),
)

BY_NAME: dict[str, FieldSpec] = {f.name: f for f in FIELDS}

# The core fields (columns of their own), in column order; the numeric ones
# are also the Sample's value fields.
CORE: tuple[FieldSpec, ...] = tuple(f for f in FIELDS if f.core)
CORE_VALUE_FIELDS: tuple[str, ...] = tuple(f.name for f in CORE if f.kind == "number")

VENDOR_PREFIX = "x_"


def field_for(name: str, asset_type: AssetType) -> FieldSpec | None:
    """The spec of ``name`` for an asset of ``asset_type`` (None: not a v1 field
    of that type; ``x_`` vendor names are never in the catalogue)."""
    spec = BY_NAME.get(name)
    if spec is None or (spec.asset_types is not None and asset_type not in spec.asset_types):
        return None
    return spec


def mappable_fields(asset_type: AssetType) -> list[str]:
    """Names a device point of this asset type may map to (besides ``x_…``)."""
    return [
        f.name
        for f in FIELDS
        if not f.reserved and (f.asset_types is None or asset_type in f.asset_types)
    ]
