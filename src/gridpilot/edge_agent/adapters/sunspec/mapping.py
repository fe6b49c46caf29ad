"""Which SunSpec point feeds which normalized field, best model first.

For every field of the asset's type the first source whose model the device
has wins (the 7xx IEEE 1547-2018 models before the older 1xx ones, integer
before float variants). Values are ``raw * 10**SF * factor``; enum points
become their symbol name in lower case. docs/telemetry-model.md lists the
table for installers.
"""

from __future__ import annotations

from dataclasses import dataclass

from gridpilot.core.assets import AssetType
from gridpilot.core.telemetry_fields import field_for

from .models import FoundModel, ModelDef, PointDef, model_def

INVERTERS = (103, 102, 101, 113, 112, 111)
ENUM = 0.0  # factor marking an enum point: its symbol name is the value
K = 1e-3  # W -> kW, Wh -> kWh

# field -> [(models, point, factor)], best first
SOURCES: dict[str, list[tuple[tuple[int, ...], str, float]]] = {
    "p_kw": [((701,), "W", K), (INVERTERS, "W", K)],
    "q_kvar": [((701,), "Var", K), (INVERTERS, "VAr", K)],
    "s_kva": [((701,), "VA", K), (INVERTERS, "VA", K)],
    "power_factor": [((701,), "PF", 1.0), (INVERTERS, "PF", 0.01)],
    "voltage_v": [((701,), "LNV", 1.0), (INVERTERS, "PhVphA", 1.0)],
    "frequency_hz": [((701,), "Hz", 1.0), (INVERTERS, "Hz", 1.0)],
    "current_a": [((701,), "A", 1.0), (INVERTERS, "A", 1.0)],
    "energy_export_kwh": [((701,), "TotWhInj", K), (INVERTERS, "WH", K)],
    "energy_import_kwh": [((701,), "TotWhAbs", K)],
    "temperature_c": [((701,), "TmpCab", 1.0), (INVERTERS, "TmpCab", 1.0)],
    "state": [((701,), "InvSt", ENUM), (INVERTERS, "St", ENUM), ((802,), "State", ENUM)],
    "alarm_code": [((701,), "Alrm", 1.0), (INVERTERS, "Evt1", 1.0), ((802,), "Evt1", 1.0)],
    "rated_p_kw": [((702,), "WMaxRtg", K), ((120,), "WRtg", K)],
    "p_limit_pct": [((704,), "WMaxLimPct", 1.0), ((123,), "WMaxLimPct", 1.0)],
    "setpoint_kw": [((704,), "WSet", K)],
    "soc_pct": [((802,), "SoC", 1.0), ((713,), "SoC", 1.0), ((124,), "ChaState", 1.0)],
    "available_charge_kw": [((802,), "WChaRteMax", K), ((702,), "WChaRteMax", K)],
    "available_discharge_kw": [((802,), "WDisChaRteMax", K), ((702,), "WDisChaRteMax", K)],
    "soh_pct": [((802,), "SoH", 1.0), ((713,), "SoH", 1.0)],
    "energy_capacity_kwh": [((802,), "WHRtg", K), ((713,), "WHRtg", K), ((120,), "WHRtg", K)],
    "energy_available_kwh": [((713,), "WHAvail", K)],
    "cycle_count": [((802,), "NCyc", 1.0)],
    "dc_voltage_v": [((802,), "V", 1.0), (INVERTERS, "DCV", 1.0)],
    "dc_power_kw": [(INVERTERS, "DCW", K)],
}


@dataclass(frozen=True, slots=True)
class Binding:
    field: str
    model: FoundModel
    definition: ModelDef
    point: PointDef
    factor: float

    @property
    def source(self) -> str:
        return f"{self.model.id}.{self.point.name}"


def bind(found: list[FoundModel], asset_type: AssetType) -> list[Binding]:
    """The sources this device has for the asset type's fields."""
    first: dict[int, FoundModel] = {}
    for m in found:
        first.setdefault(m.id, m)
    bindings = []
    for name, sources in SOURCES.items():
        if field_for(name, asset_type) is None:
            continue
        for models, point_name, factor in sources:
            hit = next((first[i] for i in models if i in first), None)
            definition = model_def(hit.id) if hit is not None else None
            if hit is None or definition is None or point_name not in definition.points:
                continue
            point = definition.points[point_name]
            if point.offset + point.size > 2 + hit.length:  # a shorter (older) revision
                continue
            bindings.append(Binding(name, hit, definition, point, factor))
            break
    return bindings
