"""Simulated physics of the demo devices: per-profile value generators and payload encoders, vectorised."""

from __future__ import annotations

import math
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from typing import Protocol, runtime_checkable

import numpy as np
from numpy.typing import NDArray

Floats = NDArray[np.float64]
Rows = NDArray[np.intp]
Values = dict[str, Floats]

_TIDE_S = 44_712.0  # the semidiurnal tide's period, 12.42 h: the river level's slow swing
_RAIN_WINDOW_S = 1800.0  # a shower lasts at most this long
_DAY_S = 86_400.0


@dataclass(frozen=True, slots=True)
class Moment:
    """What every generator needs to know about "now", computed once per time slice.

    Attributes:
        now: epoch seconds.
        hour: local hour of day, 0 <= hour < 24.
        local_time: local wall-clock time, ``YYYY-MM-DD HH:MM:SS`` (no zone, as trafix sends it).
        traffic: traffic level of the hour, 0..1 (peaks at 8:00 and 18:00).
        period_s: how often each device reports in this run (seconds).
        rain: rain rate now per rain cell (mm/h); a cell is a district.
    """

    now: float
    hour: float
    local_time: str
    traffic: float
    period_s: float
    rain: Floats


@dataclass(slots=True)
class Group:
    """The devices of one profile, with the per-device parameters drawn once at start.

    Attributes:
        profile: the profile id all of them share.
        ids: device ids, one per row.
        topics: each device's uplink topic.
        areas: each device's area path (what a scenario selects on).
        cell: each device's rain cell (index into `Moment.rain`).
        params: named per-device parameters, one value per row.
        members: for a gateway group, the rows of its detectors in the detector group.
    """

    profile: str
    ids: list[str]
    topics: list[str]
    areas: NDArray[np.str_]
    cell: Rows
    params: dict[str, Floats] = field(default_factory=dict)
    members: list[Rows] = field(default_factory=list)

    def __len__(self) -> int:
        return len(self.ids)


class Scenario(Protocol):
    """Changes generated values before they are encoded, e.g. a storm raising water in one area."""

    def adjust(self, group: Group, rows: Rows, moment: Moment, values: Values) -> None:
        """Change ``values`` in place: metric -> one value per row of ``rows``.

        Select devices with ``group.areas[rows]`` (area paths) or ``group.ids``. Batching profiles
        carry more than one value per row: rainco's ``rainfall`` is ``(rows, minutes)``.
        """
        ...


@runtime_checkable
class Silencing(Protocol):
    """A scenario that also keeps some devices quiet (a power cut, a dead gateway)."""

    def silent(self, group: Group, rows: Rows, moment: Moment) -> NDArray[np.bool_]:
        """Which of ``rows`` send nothing in this time slice."""
        ...


ParamFn = Callable[[np.random.Generator, int], dict[str, Floats]]
ValueFn = Callable[[np.random.Generator, Group, Rows, Moment], Values]


# -- the environment ----------------------------------------------------------------------------


def traffic_level(hour: float) -> float:
    """Traffic of the local hour, 0..1: morning and evening rush hours, a midday plateau."""

    def bump(centre: float, width: float) -> float:
        d = (hour - centre + 12.0) % 24.0 - 12.0
        return math.exp(-0.5 * (d / width) ** 2)

    level = 0.08 + 0.9 * bump(8.0, 1.2) + 0.95 * bump(18.0, 1.5) + 0.4 * bump(13.0, 3.0)
    return min(level, 1.0)


def _mix(*parts: NDArray[np.uint64]) -> Floats:
    # splitmix64 over the parts: a stateless hash, so rain is a pure function of (seed, cell, time).
    h = np.zeros(np.broadcast(*parts).shape, dtype=np.uint64)
    for p in parts:
        h = h ^ p.astype(np.uint64)
        h = h + np.uint64(0x9E3779B97F4A7C15)
        h = (h ^ (h >> np.uint64(30))) * np.uint64(0xBF58476D1CE4E5B9)
        h = (h ^ (h >> np.uint64(27))) * np.uint64(0x94D049BB133111EB)
        h = h ^ (h >> np.uint64(31))
    return np.asarray((h >> np.uint64(11)).astype(np.float64) / float(1 << 53))


def rain_rate(seed: int, cell: Rows, ts: Floats) -> Floats:
    """Rain rate (mm/h) in rain cells at epoch seconds ``ts``: mostly dry, now and then a shower.

    Showers come in windows of half an hour; a window is wet over the whole city with some
    chance, and then wet in each cell with another, so neighbouring districts tend to get
    rain together.
    """
    ts = np.atleast_1d(np.asarray(ts, dtype=np.float64))
    cell = np.atleast_1d(np.asarray(cell))
    window = np.floor(ts / _RAIN_WINDOW_S).astype(np.int64)
    s = np.full(1, seed, dtype=np.uint64)
    w = window.astype(np.uint64)
    c = cell.astype(np.uint64) + np.uint64(1)
    city_wet = _mix(s, w) < 0.12
    cell_wet = _mix(s, w, c) < 0.65
    peak = 2.0 + 45.0 * _mix(s, w, c + np.uint64(1000)) ** 2
    phase = (ts - window * _RAIN_WINDOW_S) / _RAIN_WINDOW_S
    return np.asarray(np.where(city_wet & cell_wet, peak * np.sin(np.pi * phase) ** 2, 0.0))


def _daily(hour: float, peak_hour: float) -> float:
    return math.cos(2.0 * math.pi * (hour - peak_hour) / 24.0)


def _battery(rng: np.random.Generator, group: Group, rows: Rows) -> Floats:
    return np.asarray(
        np.clip(np.rint(group.params["bat"][rows] + rng.normal(0, 0.3, len(rows))), 0, 100)
    )


def _uniform(rng: np.random.Generator, n: int, low: float, high: float) -> Floats:
    return rng.uniform(low, high, n)


# -- per-profile models ------------------------------------------------------------------------


def _wl_params(rng: np.random.Generator, n: int) -> dict[str, Floats]:
    return {
        "base": _uniform(rng, n, 150, 400),
        "amp": _uniform(rng, n, 15, 50),
        "phase": _uniform(rng, n, 0, 1),
        "gain": _uniform(rng, n, 1, 4),
        "signal": _uniform(rng, n, -100, -65),
        "bat": _uniform(rng, n, 55, 100),
    }


def _wl_values(rng: np.random.Generator, g: Group, rows: Rows, m: Moment) -> Values:
    p, k = g.params, len(rows)
    tide = np.sin(2.0 * np.pi * (m.now / _TIDE_S + p["phase"][rows]))
    level = p["base"][rows] + p["amp"][rows] * tide + p["gain"][rows] * m.rain[g.cell[rows]]
    return {
        "water_level": level + rng.normal(0.0, 0.5, k),
        "battery": _battery(rng, g, rows),
        "signal": np.rint(p["signal"][rows] + rng.normal(0.0, 2.0, k)),
    }


def _rg_params(rng: np.random.Generator, n: int) -> dict[str, Floats]:
    return {"bat": _uniform(rng, n, 55, 100), "bias": rng.normal(1.0, 0.08, n)}


def _rg_values(rng: np.random.Generator, g: Group, rows: Rows, m: Moment) -> Values:
    rate = np.clip(m.rain[g.cell[rows]] * g.params["bias"][rows], 0.0, None)
    # Tipping buckets count in 0.1 mm steps.
    return {
        "rainfall": np.round(rate * m.period_s / 3600.0, 1),
        "rain_rate": np.round(rate, 1),
        "battery": _battery(rng, g, rows),
    }


def _pp_params(rng: np.random.Generator, n: int) -> dict[str, Floats]:
    return {"base": _uniform(rng, n, 280, 420), "bat": _uniform(rng, n, 55, 100)}


def _pp_values(rng: np.random.Generator, g: Group, rows: Rows, m: Moment) -> Values:
    # Pressure sags when people use water: mornings and evenings, like traffic.
    sag = 35.0 * traffic_level(m.hour)
    return {
        "pressure": g.params["base"][rows] - sag + rng.normal(0.0, 2.5, len(rows)),
        "battery": _battery(rng, g, rows),
    }


def _wq_params(rng: np.random.Generator, n: int) -> dict[str, Floats]:
    return {
        "ph": rng.normal(7.3, 0.25, n),
        "turbidity": _uniform(rng, n, 3, 15),
        "do": _uniform(rng, n, 6, 9),
        "cond": _uniform(rng, n, 250, 650),
    }


def _wq_values(rng: np.random.Generator, g: Group, rows: Rows, m: Moment) -> Values:
    p, k = g.params, len(rows)
    temp = 18.0 + 2.5 * _daily(m.hour, 15.0)
    rain = m.rain[g.cell[rows]]
    return {
        "ph": p["ph"][rows] + rng.normal(0.0, 0.03, k),
        "turbidity": np.clip(
            p["turbidity"][rows] * (1.0 + 0.15 * rain) + rng.normal(0, 0.4, k), 0, None
        ),
        "dissolved_oxygen": p["do"][rows] - 0.08 * (temp - 18.0) + rng.normal(0.0, 0.05, k),
        "conductivity": p["cond"][rows] * (1.0 - 0.005 * rain) + rng.normal(0.0, 4.0, k),
        "water_temperature": temp + rng.normal(0.0, 0.1, k),
    }


def _tf_params(rng: np.random.Generator, n: int) -> dict[str, Floats]:
    return {"cap": _uniform(rng, n, 10, 40), "free": _uniform(rng, n, 40, 70)}


def _tf_values(rng: np.random.Generator, g: Group, rows: Rows, m: Moment) -> Values:
    cap = g.params["cap"][rows]
    flow = rng.poisson(cap * m.traffic).astype(np.float64)  # vehicles in the last minute
    occ = np.clip(100.0 * flow / (cap * 2.0) + rng.normal(0.0, 2.0, len(rows)), 0.0, 100.0)
    speed = g.params["free"][rows] * (1.0 - 0.7 * (occ / 100.0) ** 1.5)
    return {"flow": flow, "speed": speed + rng.normal(0.0, 1.5, len(rows)), "occ": occ}


def _bat_params(rng: np.random.Generator, n: int) -> dict[str, Floats]:
    return {"bat": _uniform(rng, n, 40, 100), "base": _uniform(rng, n, 0, 1)}


def _mc_values(rng: np.random.Generator, g: Group, rows: Rows, m: Moment) -> Values:
    k = len(rows)
    rain = m.rain[g.cell[rows]]
    return {
        "tilt": np.abs(0.3 + 1.5 * g.params["base"][rows] + rng.normal(0.0, 0.15, k)),
        "open": (rng.random(k) < 0.0005).astype(np.float64),
        "water": (rng.random(k) < 0.0005 + 0.02 * (rain > 15.0)).astype(np.float64),
        "bat": _battery(rng, g, rows),
    }


def _sm_values(rng: np.random.Generator, g: Group, rows: Rows, m: Moment) -> Values:
    k = len(rows)
    alarm = rng.random(k) < 0.0001
    smoke = np.abs(0.01 + 0.02 * g.params["base"][rows] + rng.normal(0.0, 0.003, k))
    return {
        "smoke": np.where(alarm, 0.25 + rng.random(k), smoke),
        "alarm": alarm.astype(np.float64),
        "bat": _battery(rng, g, rows),
    }


def _gs_values(rng: np.random.Generator, g: Group, rows: Rows, m: Moment) -> Values:
    k = len(rows)
    leak = rng.random(k) < 0.0003
    lel = np.abs(0.5 + 2.5 * g.params["base"][rows] + rng.normal(0.0, 0.3, k))
    return {"lel": np.where(leak, 15.0 + 30.0 * rng.random(k), lel), "bat": _battery(rng, g, rows)}


def _bn_params(rng: np.random.Generator, n: int) -> dict[str, Floats]:
    return {
        "bat": _uniform(rng, n, 40, 100),
        "phase": _uniform(rng, n, 0, 1),
        "per_day": _uniform(rng, n, 0.25, 1.1),
    }


def _bn_values(rng: np.random.Generator, g: Group, rows: Rows, m: Moment) -> Values:
    # Fills over a day or several, then is emptied (sometimes only after it overflowed a little).
    cycle = (g.params["phase"][rows] + m.now / _DAY_S * g.params["per_day"][rows]) % 1.0
    fill = np.clip(cycle * 108.0 + rng.normal(0.0, 1.0, len(rows)), 0.0, 100.0)
    temp = 16.0 + 6.0 * _daily(m.hour, 14.0) + rng.normal(0.0, 0.4, len(rows))
    return {"fill": np.rint(fill), "temp": temp, "bat": _battery(rng, g, rows)}


def _nz_params(rng: np.random.Generator, n: int) -> dict[str, Floats]:
    return {"base": _uniform(rng, n, 40, 52), "gain": _uniform(rng, n, 12, 22)}


def _nz_values(rng: np.random.Generator, g: Group, rows: Rows, m: Moment) -> Values:
    k = len(rows)
    laeq = g.params["base"][rows] + g.params["gain"][rows] * m.traffic + rng.normal(0.0, 1.5, k)
    return {"laeq": laeq, "lamax": laeq + 8.0 + rng.exponential(4.0, k)}


def _sl_params(rng: np.random.Generator, n: int) -> dict[str, Floats]:
    return {"rated": _uniform(rng, n, 80, 150), "shift": rng.normal(0.0, 0.15, n)}


def _sl_values(rng: np.random.Generator, g: Group, rows: Rows, m: Moment) -> Values:
    # On from dusk (18:30) to dawn (6:00); each photocell switches a few minutes off the others.
    h = (m.hour + g.params["shift"][rows]) % 24.0
    on = ((h >= 18.5) | (h < 6.0)).astype(np.float64)
    power = on * (g.params["rated"][rows] + rng.normal(0.0, 1.5, len(rows))) + (1.0 - on) * 0.4
    return {"on": on, "power": power}


def _st_params(rng: np.random.Generator, n: int) -> dict[str, Floats]:
    return {
        "dx": rng.normal(0.0, 1.0, n),
        "dy": rng.normal(0.0, 1.0, n),
        "tilt": _uniform(rng, n, 0.0, 0.1),
    }


def _st_values(rng: np.random.Generator, g: Group, rows: Rows, m: Moment) -> Values:
    k = len(rows)
    return {
        "dx": g.params["dx"][rows] + rng.normal(0.0, 0.05, k),
        "dy": g.params["dy"][rows] + rng.normal(0.0, 0.05, k),
        "tilt": np.abs(g.params["tilt"][rows] + rng.normal(0.0, 0.005, k)),
    }


def _rr_params(rng: np.random.Generator, n: int) -> dict[str, Floats]:
    return {"bias": rng.normal(1.0, 0.08, n)}


def _none_params(rng: np.random.Generator, n: int) -> dict[str, Floats]:
    return {}


def _none_values(rng: np.random.Generator, g: Group, rows: Rows, m: Moment) -> Values:
    return {}


# -- payloads -----------------------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class Model:
    """How one profile behaves: its parameters, its values, and the fields its payload carries.

    Attributes:
        params: draws the per-device parameters.
        values: generates one value per metric and device row.
        fields: ``(metric, unit or key, printf format)`` in payload order (SenML: unit; flat: key).
        shape: ``senml``, ``flat`` (acme: ts in ms + fields), or a special shape handled by the
            simulator (``trafix-gw``, ``rainco``, ``trafix-detector``).
    """

    params: ParamFn
    values: ValueFn
    fields: tuple[tuple[str, str, str], ...]
    shape: str

    def template(self) -> bytes:
        """The printf template of one payload; the device id and the time come first."""
        if self.shape == "senml":
            first, *rest = self.fields
            parts = [b'{"bn":"%s:","bt":%.3f,"n":"' + _field(first, b'"u":"%s","v":%s}')]
            parts += [b'{"n":"' + _field(f, b'"u":"%s","v":%s}') for f in rest]
            return b"[" + b",".join(parts) + b"]"
        if self.shape == "flat":
            body = b",".join(
                b'"%s":%s' % (key.encode(), fmt.encode()) for _, key, fmt in self.fields
            )
            return b'{"ts":%%d,%s}' % body
        msg = f"shape {self.shape!r} has no template"
        raise ValueError(msg)

    def readings(self) -> int:
        """Readings in one message of a simple shape."""
        return len(self.fields)


def _field(f: tuple[str, str, str], tail: bytes) -> bytes:
    name, unit, fmt = f
    return name.encode() + b'",' + tail % (unit.replace("%", "%%").encode(), fmt.encode())


MODELS: dict[str, Model] = {
    "hydrox-wl": Model(
        _wl_params,
        _wl_values,
        (("water_level", "cm", "%.1f"), ("battery", "%", "%d"), ("signal", "dBm", "%d")),
        "senml",
    ),
    "hydrox-rg": Model(
        _rg_params,
        _rg_values,
        (("rainfall", "mm", "%.1f"), ("rain_rate", "mm/h", "%.1f"), ("battery", "%", "%d")),
        "senml",
    ),
    "hydrox-pp": Model(
        _pp_params, _pp_values, (("pressure", "kPa", "%.1f"), ("battery", "%", "%d")), "senml"
    ),
    "hydrox-wq": Model(
        _wq_params,
        _wq_values,
        (
            ("ph", "pH", "%.2f"),
            ("turbidity", "NTU", "%.1f"),
            ("dissolved_oxygen", "mg/L", "%.2f"),
            ("conductivity", "uS/cm", "%.0f"),
            ("water_temperature", "Cel", "%.1f"),
        ),
        "senml",
    ),
    "rainco-rg": Model(_rr_params, _none_values, (("rainfall", "r", "%.1f"),), "rainco"),
    "trafix-flow": Model(
        _tf_params,
        _tf_values,
        (("flow", "flow", "%d"), ("speed", "speed", "%.1f"), ("occ", "occ", "%.1f")),
        "trafix-detector",
    ),
    "trafix-gw": Model(_none_params, _none_values, (), "trafix-gw"),
    "acme-mc": Model(
        _bat_params,
        _mc_values,
        (
            ("tilt", "tilt", "%.1f"),
            ("open", "open", "%d"),
            ("water", "water", "%d"),
            ("bat", "bat", "%d"),
        ),
        "flat",
    ),
    "acme-smoke": Model(
        _bat_params,
        _sm_values,
        (("smoke", "smoke", "%.3f"), ("alarm", "alarm", "%d"), ("bat", "bat", "%d")),
        "flat",
    ),
    "acme-gas": Model(
        _bat_params, _gs_values, (("lel", "lel", "%.1f"), ("bat", "bat", "%d")), "flat"
    ),
    "acme-bin": Model(
        _bn_params,
        _bn_values,
        (("fill", "fill", "%d"), ("temp", "temp", "%.1f"), ("bat", "bat", "%d")),
        "flat",
    ),
    "acme-noise": Model(
        _nz_params, _nz_values, (("laeq", "laeq", "%.1f"), ("lamax", "lamax", "%.1f")), "flat"
    ),
    "acme-light": Model(
        _sl_params, _sl_values, (("on", "on", "%d"), ("power", "power", "%.1f")), "flat"
    ),
    "acme-tilt": Model(
        _st_params,
        _st_values,
        (("dx", "dx", "%.2f"), ("dy", "dy", "%.2f"), ("tilt", "tilt", "%.3f")),
        "flat",
    ),
}


def columns(model: Model, values: Values) -> list[Sequence[float]]:
    """The values in payload order as plain lists (integers where the format wants them)."""
    cols: list[Sequence[float]] = []
    for name, _, fmt in model.fields:
        v = values[name]
        cols.append(np.rint(v).astype(np.int64).tolist() if fmt == "%d" else v.tolist())
    return cols
