"""Unit conversion to each metric's canonical unit: a table of linear conversions, looked up once per unit pair."""

from __future__ import annotations

from functools import lru_cache

# unit -> (dimension, factor to the dimension's base, offset to base). value_base = value * factor + offset.
# Names follow SenML (RFC 8428 §12.1) where SenML has them, plus the spellings vendors send in practice.
_UNITS: dict[str, tuple[str, float, float]] = {
    # length
    "m": ("length", 1.0, 0.0),
    "cm": ("length", 0.01, 0.0),
    "mm": ("length", 0.001, 0.0),
    "km": ("length", 1000.0, 0.0),
    # pressure
    "Pa": ("pressure", 1.0, 0.0),
    "hPa": ("pressure", 100.0, 0.0),
    "kPa": ("pressure", 1e3, 0.0),
    "MPa": ("pressure", 1e6, 0.0),
    "bar": ("pressure", 1e5, 0.0),
    "mbar": ("pressure", 100.0, 0.0),
    "psi": ("pressure", 6894.757293168, 0.0),
    # temperature
    "Cel": ("temperature", 1.0, 0.0),
    "degC": ("temperature", 1.0, 0.0),
    "°C": ("temperature", 1.0, 0.0),
    "K": ("temperature", 1.0, -273.15),
    "degF": ("temperature", 5.0 / 9.0, -32.0 * 5.0 / 9.0),
    # speed
    "m/s": ("speed", 1.0, 0.0),
    "km/h": ("speed", 1.0 / 3.6, 0.0),
    "kmh": ("speed", 1.0 / 3.6, 0.0),
    # rain intensity
    "mm/h": ("rain_rate", 1.0, 0.0),
    "mm/min": ("rain_rate", 60.0, 0.0),
    # flow of water
    "m3/s": ("flow", 1.0, 0.0),
    "m3/h": ("flow", 1.0 / 3600.0, 0.0),
    "L/s": ("flow", 1e-3, 0.0),
    # ratios
    "/": ("ratio", 1.0, 0.0),
    "ratio": ("ratio", 1.0, 0.0),
    "%": ("ratio", 0.01, 0.0),
    "%RH": ("ratio", 0.01, 0.0),
    "%EL": ("ratio", 0.01, 0.0),
    # electricity
    "V": ("voltage", 1.0, 0.0),
    "mV": ("voltage", 1e-3, 0.0),
    "A": ("current", 1.0, 0.0),
    "mA": ("current", 1e-3, 0.0),
    "W": ("power", 1.0, 0.0),
    "kW": ("power", 1e3, 0.0),
    # gas concentration
    "%LEL": ("lel", 1.0, 0.0),
    "ppm": ("concentration", 1.0, 0.0),
    "ppb": ("concentration", 1e-3, 0.0),
    "mg/L": ("mass_conc", 1.0, 0.0),
    "ug/m3": ("air_conc", 1.0, 0.0),
    "mg/m3": ("air_conc", 1000.0, 0.0),
    # sound, angle, time, counts, water quality, signal
    "dB": ("level", 1.0, 0.0),
    "dBA": ("level", 1.0, 0.0),
    "dBm": ("signal", 1.0, 0.0),
    "deg": ("angle", 1.0, 0.0),
    "rad": ("angle", 57.29577951308232, 0.0),
    "s": ("time", 1.0, 0.0),
    "ms": ("time", 1e-3, 0.0),
    "min": ("time", 60.0, 0.0),
    "count": ("count", 1.0, 0.0),
    "veh": ("count", 1.0, 0.0),
    "veh/h": ("veh_rate", 1.0, 0.0),
    "veh/min": ("veh_rate", 60.0, 0.0),
    "NTU": ("turbidity", 1.0, 0.0),
    "pH": ("ph", 1.0, 0.0),
    "uS/cm": ("conductivity", 1.0, 0.0),
    "mS/cm": ("conductivity", 1000.0, 0.0),
    "lx": ("illuminance", 1.0, 0.0),
    "state": ("state", 1.0, 0.0),
    "mm/s": ("vibration", 1.0, 0.0),
}


class UnitError(ValueError):
    """A unit the hub does not know, or one that cannot be converted to the canonical unit."""


def known(unit: str) -> bool:
    """Whether ``unit`` is in the conversion table."""
    return unit in _UNITS


@lru_cache(maxsize=4096)
def conversion(unit: str, canonical: str) -> tuple[float, float]:
    """``(scale, offset)`` such that ``value_canonical = value * scale + offset``.

    Raises:
        UnitError: either unit is unknown, or they measure different things.
    """
    if unit == canonical:
        return (1.0, 0.0)
    try:
        dim_u, f_u, o_u = _UNITS[unit]
    except KeyError:
        msg = f"unit {unit!r} is not known to the hub"
        raise UnitError(msg) from None
    try:
        dim_c, f_c, o_c = _UNITS[canonical]
    except KeyError:
        msg = f"canonical unit {canonical!r} is not known to the hub"
        raise UnitError(msg) from None
    if dim_u != dim_c:
        msg = f"unit {unit!r} ({dim_u}) cannot be converted to {canonical!r} ({dim_c})"
        raise UnitError(msg)
    # In base units v_base = v * f_u + o_u, and the canonical value is (v_base - o_c) / f_c.
    return (f_u / f_c, (o_u - o_c) / f_c)
