"""Hypothesis strategies for readings and vendor payloads, with test-side encoders for each vendor.

The encoders write what each vendor's devices send (their field names, units and time formats),
independently of the codec settings in ``devices/data/profiles.yaml``: a round trip through an
encoder and the shipped codec checks the profile as much as the codec.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any
from zoneinfo import ZoneInfo

from hypothesis import strategies as st

RECEIVED_MS = 1_795_392_000_000
"""When the hub receives every test message: 2026-11-23T00:00:00Z."""
SHANGHAI = ZoneInfo("Asia/Shanghai")

# Times from 2020 up to the receive time: never ahead of the hub's clock.
_TS_MS = st.integers(min_value=1_577_836_800_000, max_value=RECEIVED_MS)
_TS_S = _TS_MS.map(lambda ms: ms // 1000 * 1000)


@dataclass(frozen=True, slots=True)
class Reading:
    """One reading as the hub should store it: canonical metric name and unit."""

    device: str
    metric: str
    ts_ms: int
    value: float


@dataclass(frozen=True, slots=True)
class VendorField:
    """How a vendor sends one metric: its key and the factor from the canonical unit."""

    key: str
    metric: str
    factor: float  # value as sent = canonical value * factor
    lo: float
    hi: float


def values(lo: float, hi: float) -> st.SearchStrategy[float]:
    """Finite floats in ``[lo, hi]``, rounded as a device would send them."""
    return st.floats(min_value=lo, max_value=hi, allow_nan=False, allow_infinity=False).map(
        lambda v: round(v, 6)
    )


# -- hydrox: SenML ------------------------------------------------------------------------------

HYDROX: dict[str, tuple[str, list[tuple[str, str, float, float, float]]]] = {
    # profile: (device, [(metric, unit as sent, factor, lo, hi)]) -- canonical lo/hi
    "hydrox-wl": (
        "wl-00001",
        [
            ("water_level", "cm", 100.0, -5.0, 60.0),
            ("battery", "%", 1.0, 0.0, 100.0),
            ("signal", "dBm", 1.0, -140.0, 0.0),
        ],
    ),
    "hydrox-pp": (
        "pp-00001",
        [("pressure", "kPa", 1000.0, 0.0, 2.5), ("battery", "%", 1.0, 0.0, 100.0)],
    ),
    "hydrox-rg": (
        "rg-00001",
        [("rainfall", "mm", 1.0, 0.0, 300.0), ("rain_rate", "mm/h", 1.0, 0.0, 500.0)],
    ),
}


@st.composite
def hydrox_readings(draw: st.DrawFn) -> list[Reading]:
    """Readings of one hydrox device, in the order its SenML pack carries them."""
    device, metrics = HYDROX[draw(st.sampled_from(sorted(HYDROX)))]
    chosen = draw(st.lists(st.sampled_from(metrics), min_size=1, max_size=8))
    return [
        Reading(device, metric, draw(_TS_MS), draw(values(lo, hi)))
        for metric, _unit, _factor, lo, hi in chosen
    ]


def encode_senml(readings: list[Reading]) -> bytes:
    """A SenML pack as hydrox sends it: base name and base time first, then relative fields."""
    units = {m: (u, f) for _, ms in HYDROX.values() for m, u, f, _, _ in ms}
    first = readings[0]
    bt = first.ts_ms / 1000
    records: list[dict[str, Any]] = []
    for i, r in enumerate(readings):
        unit, factor = units[r.metric]
        rec: dict[str, Any] = {"n": r.metric, "u": unit, "v": r.value * factor}
        if i == 0:
            rec = {"bn": f"{r.device}:", "bt": bt, **rec}
        else:
            rec["t"] = (r.ts_ms - first.ts_ms) / 1000
        records.append(rec)
    return json.dumps(records).encode()


# -- acme: flat JSON, epoch ms ------------------------------------------------------------------

ACME: dict[str, tuple[str, list[VendorField]]] = {
    "acme-mc": (
        "mc-00001",
        [
            VendorField("tilt", "tilt_angle", 1.0, 0.0, 90.0),
            VendorField("open", "cover_open", 1.0, 0.0, 1.0),
            VendorField("water", "water_detected", 1.0, 0.0, 1.0),
            VendorField("bat", "battery", 1.0, 0.0, 100.0),
        ],
    ),
    "acme-smoke": (
        "sm-00001",
        [
            VendorField("smoke", "smoke_obscuration", 1.0, 0.0, 100.0),
            VendorField("alarm", "smoke_alarm", 1.0, 0.0, 1.0),
            VendorField("bat", "battery", 1.0, 0.0, 100.0),
        ],
    ),
    "acme-gas": (
        "gas-00001",
        [
            VendorField("lel", "gas_lel", 1.0, 0.0, 100.0),
            VendorField("bat", "battery", 1.0, 0, 100),
        ],
    ),
    "acme-bin": (
        "bin-00001",
        [
            VendorField("fill", "fill_level", 1.0, 0.0, 100.0),
            VendorField("temp", "temperature", 1.0, -30.0, 80.0),
            VendorField("bat", "battery", 1.0, 0.0, 100.0),
        ],
    ),
    "acme-noise": (
        "nz-00001",
        [
            VendorField("laeq", "noise_laeq", 1.0, 20.0, 140.0),
            VendorField("lamax", "noise_lamax", 1.0, 20.0, 140.0),
        ],
    ),
    "acme-light": (
        "sl-00001",
        [VendorField("on", "lamp_on", 1.0, 0, 1), VendorField("power", "power", 1.0, 0, 1000)],
    ),
    "acme-tilt": (
        "st-00001",
        [
            VendorField("dx", "displacement_x", 1000.0, -1.0, 1.0),
            VendorField("dy", "displacement_y", 1000.0, -1.0, 1.0),
            VendorField("tilt", "tilt_angle", 1.0, -90.0, 90.0),
        ],
    ),
}


@st.composite
def acme_messages(draw: st.DrawFn) -> tuple[str, list[Reading]]:
    """``(profile, readings)`` of one acme message: one time, a subset of the profile's fields."""
    profile = draw(st.sampled_from(sorted(ACME)))
    device, fields = ACME[profile]
    chosen = draw(st.lists(st.sampled_from(fields), min_size=1, unique=True))
    ts = draw(_TS_MS)
    return profile, [Reading(device, f.metric, ts, draw(values(f.lo, f.hi))) for f in chosen]


def encode_acme(profile: str, readings: list[Reading]) -> bytes:
    """A flat acme payload: ``{"ts": <epoch ms>, "<key>": <value>, ...}``."""
    by_metric = {f.metric: f for f in ACME[profile][1]}
    payload: dict[str, Any] = {"ts": readings[0].ts_ms}
    for r in readings:
        f = by_metric[r.metric]
        payload[f.key] = r.value * f.factor
    return json.dumps(payload).encode()


# -- trafix: gateway batches, ISO 8601 local time ----------------------------------------------

TRAFIX_DETECTORS = ("tf-00001", "tf-00002", "tf-00003")
TRAFIX_GATEWAY = "tgw-001"
TRAFIX_FIELDS = (
    VendorField("flow", "vehicle_count", 1.0, 0, 10000),
    VendorField("speed", "average_speed", 1.0, 0, 200),
    VendorField("occ", "occupancy", 1.0, 0, 100),
)


@st.composite
def trafix_records(draw: st.DrawFn) -> list[tuple[str, list[Reading]]]:
    """Records of one gateway batch: ``(time as sent, readings of one detector at that time)``."""
    records = []
    for _ in range(draw(st.integers(min_value=1, max_value=6))):
        device = draw(st.sampled_from(TRAFIX_DETECTORS))
        ts = draw(_TS_S)
        style = draw(st.sampled_from(["local-space", "local-T", "utc-Z", "offset+08:00"]))
        records.append((_trafix_time(ts, style), _trafix_readings(draw, device, ts)))
    return records


def _trafix_readings(draw: st.DrawFn, device: str, ts: int) -> list[Reading]:
    chosen = draw(st.lists(st.sampled_from(TRAFIX_FIELDS), min_size=1, unique=True))
    return [Reading(device, f.metric, ts, draw(values(f.lo, f.hi))) for f in chosen]


def _trafix_time(ts_ms: int, style: str) -> str:
    utc = datetime.fromtimestamp(ts_ms / 1000, UTC)
    local = utc.astimezone(SHANGHAI)
    if style == "local-space":
        return local.strftime("%Y-%m-%d %H:%M:%S")
    if style == "local-T":
        return local.strftime("%Y-%m-%dT%H:%M:%S")
    if style == "utc-Z":
        return utc.strftime("%Y-%m-%dT%H:%M:%SZ")
    return local.isoformat()


def encode_trafix(records: list[tuple[str, list[Reading]]]) -> bytes:
    """A gateway batch: ``{"gw": ..., "data": [{"id": ..., "t": ..., "flow": ...}, ...]}``."""
    by_metric = {f.metric: f for f in TRAFIX_FIELDS}
    data = []
    for t, readings in records:
        rec: dict[str, Any] = {"id": readings[0].device, "t": t}
        for r in readings:
            rec[by_metric[r.metric].key] = r.value
        data.append(rec)
    return json.dumps({"gw": TRAFIX_GATEWAY, "data": data}).encode()


# -- rainco: per-device history, epoch seconds --------------------------------------------------

RAINCO_DEVICE = "rr-00001"


@st.composite
def rainco_readings(draw: st.DrawFn) -> list[Reading]:
    """An hour of rainfall history of one gauge."""
    n = draw(st.integers(min_value=0, max_value=60))
    return [Reading(RAINCO_DEVICE, "rainfall", draw(_TS_S), draw(values(0, 300))) for _ in range(n)]


def encode_rainco(readings: list[Reading], battery: float | None = 80.0) -> bytes:
    """``{"dev": ..., "readings": [{"ts": <epoch s>, "r": <mm>}, ...], "bat": ...}``."""
    payload: dict[str, Any] = {
        "dev": RAINCO_DEVICE,
        "readings": [{"ts": r.ts_ms // 1000, "r": r.value} for r in readings],
    }
    if battery is not None:
        payload["bat"] = battery
    return json.dumps(payload).encode()


# -- anything JSON, for totality ----------------------------------------------------------------

VENDOR_KEYS = (
    "bn", "bt", "bu", "bv", "n", "u", "v", "vb", "vs", "vd", "s", "t", "ut",
    "ts", "tilt", "open", "water", "bat", "gw", "data", "id", "flow", "speed", "occ",
    "dev", "readings", "r",
)  # fmt: skip

_SCALARS = (
    st.none()
    | st.booleans()
    | st.integers()
    | st.floats(allow_nan=False, allow_infinity=False)
    | st.text(max_size=12)
    | st.sampled_from(["2026-11-22 08:00:00", "12.5", "wl-00001:", "tf-00001", "cm", "%"])
    | st.integers(min_value=1_500_000_000, max_value=1_800_000_000_000)
)

json_documents: st.SearchStrategy[Any] = st.recursive(
    _SCALARS,
    lambda children: (
        st.lists(children, max_size=5)
        | st.dictionaries(st.sampled_from(VENDOR_KEYS) | st.text(max_size=4), children, max_size=6)
    ),
    max_leaves=30,
)
"""JSON documents made of the keys vendors use, to reach deep into the codecs."""
