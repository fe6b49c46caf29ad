"""Engineering units of the telemetry catalogue as UN/CEFACT (UNECE Rec. 20)
codes, the way OPC UA's EUInformation carries them (pure: no asyncua).

OPC UA Part 8: ``NamespaceUri`` is the CEFACT URI, ``UnitId`` is the common
code's ASCII bytes read as one big-endian integer (``"KWT"`` → 0x4B5754), so
a SCADA can recognise the unit without parsing the display text.
"""

from __future__ import annotations

from dataclasses import dataclass

CEFACT_NAMESPACE_URI = "http://www.opcfoundation.org/UA/units/un/cefact"


@dataclass(frozen=True, slots=True)
class Unit:
    code: str  # UN/CEFACT common code
    symbol: str  # DisplayName
    description: str

    @property
    def unit_id(self) -> int:
        return unece_unit_id(self.code)


# keyed by the unit strings of gridpilot.core.telemetry_fields
UNITS: dict[str, Unit] = {
    "kW": Unit("KWT", "kW", "kilowatt"),
    "kvar": Unit("KVR", "kvar", "kilovar"),
    "kVA": Unit("KVA", "kVA", "kilovolt-ampere"),
    "kWh": Unit("KWH", "kWh", "kilowatt hour"),
    "%": Unit("P1", "%", "percent"),
    "V": Unit("VLT", "V", "volt"),
    "A": Unit("AMP", "A", "ampere"),
    "Hz": Unit("HTZ", "Hz", "hertz"),
    "°C": Unit("CEL", "°C", "degree Celsius"),
    "W/m²": Unit("D54", "W/m²", "watt per square metre"),
    "m/s": Unit("MTS", "m/s", "metre per second"),
    "rpm": Unit("M46", "r/min", "revolution per minute"),
    "°": Unit("DD", "°", "degree [unit of angle]"),
}


def unece_unit_id(code: str) -> int:
    """OPC UA Part 8 §5.6.3: the code's characters as bytes of one integer."""
    if not 1 <= len(code) <= 3 or not code.isascii():
        raise ValueError(f"not a UN/CEFACT common code: {code!r}")
    value = 0
    for char in code:
        value = (value << 8) | ord(char)
    return value


def unit_for(unit: str) -> Unit | None:
    """The CEFACT unit of a catalogue unit string; None for unitless fields."""
    return UNITS.get(unit)
