"""Demo City (示范市): a fictional city's districts, river and streets, and a realistic mix of devices in it."""

from __future__ import annotations

import itertools
import math
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any, Literal

import numpy as np
import pydantic
from numpy.typing import NDArray

from devices.profiles import Device

CITY_ID = "demo"
CITY_NAME = "Demo City"
CITY_NAME_ZH = "示范市"

Point = tuple[float, float]  # (lon, lat), GeoJSON order


@dataclass(frozen=True, slots=True)
class Street:
    """A straight street inside one district; devices stand along it."""

    id: str
    name_zh: str
    start: Point
    end: Point


@dataclass(frozen=True, slots=True)
class District:
    """A district: its ring of (lon, lat) vertices (closed) and its streets."""

    id: str
    name: str
    name_zh: str
    ring: tuple[Point, ...]
    streets: tuple[Street, ...]
    weight: float  # share of the street-side devices placed here

    @property
    def area(self) -> str:
        """The area path of the district, ``demo/<district>``."""
        return f"{CITY_ID}/{self.id}"


# -- geography ----------------------------------------------------------------------------------
# Three bands: north (northhill, eastlake), middle with the river (riverside, oldtown, harbor) and
# south (hightech). Borders are shared polylines so the districts tile the city without gaps.
_SOUTH_BORDER: tuple[Point, ...] = (
    (120.05, 30.248),
    (120.10, 30.252),
    (120.13, 30.249),
    (120.17, 30.246),
    (120.21, 30.251),
    (120.25, 30.253),
    (120.30, 30.249),
)
_NORTH_BORDER: tuple[Point, ...] = (
    (120.05, 30.302),
    (120.09, 30.298),
    (120.13, 30.301),
    (120.175, 30.304),
    (120.21, 30.299),
    (120.26, 30.297),
    (120.30, 30.301),
)

RIVER_ID = "yudai"
RIVER_NAME = "Jade Belt River"
RIVER_NAME_ZH = "玉带河"
RIVER: tuple[Point, ...] = (
    (120.05, 30.272),
    (120.08, 30.279),
    (120.11, 30.270),
    (120.14, 30.268),
    (120.17, 30.281),
    (120.20, 30.276),
    (120.23, 30.266),
    (120.27, 30.272),
    (120.30, 30.280),
)
EMBANKMENT = Street(f"{RIVER_ID}-embankment", "玉带河堤", RIVER[0], RIVER[-1])

_RINGS: dict[str, tuple[Point, ...]] = {
    "riverside": (
        *_SOUTH_BORDER[0:3],
        (120.127, 30.275),
        (120.13, 30.301),
        (120.09, 30.298),
        (120.05, 30.302),
    ),
    "oldtown": (
        *_SOUTH_BORDER[2:5],
        (120.213, 30.276),
        (120.21, 30.299),
        (120.175, 30.304),
        (120.13, 30.301),
        (120.127, 30.275),
    ),
    "harbor": (
        *_SOUTH_BORDER[4:7],
        (120.30, 30.301),
        (120.26, 30.297),
        (120.21, 30.299),
        (120.213, 30.276),
    ),
    "hightech": (
        (120.05, 30.20),
        (120.18, 30.203),
        (120.30, 30.20),
        *reversed(_SOUTH_BORDER),
    ),
    "northhill": (
        *_NORTH_BORDER[0:4],
        (120.172, 30.327),
        (120.175, 30.35),
        (120.11, 30.347),
        (120.05, 30.35),
    ),
    "eastlake": (
        *_NORTH_BORDER[3:7],
        (120.30, 30.35),
        (120.24, 30.349),
        (120.175, 30.35),
        (120.172, 30.327),
    ),
}

# (id, name, name_zh, weight, [(street id, street name), ...]): three east-west streets, then two
# north-south ones.
_DISTRICTS: tuple[tuple[str, str, str, float, tuple[tuple[str, str], ...]], ...] = (
    (
        "riverside",
        "Riverside",
        "滨江",
        0.16,
        (
            ("binjiang-rd", "滨江路"),
            ("jiangnan-ave", "江南大道"),
            ("chunxiao-rd", "春晓路"),
            ("wangjiang-rd", "望江路"),
            ("xixing-rd", "西兴路"),
        ),
    ),
    (
        "oldtown",
        "Old Town",
        "老城",
        0.22,
        (
            ("zhongshan-rd", "中山路"),
            ("jiefang-rd", "解放路"),
            ("qingchun-rd", "庆春路"),
            ("yan-an-rd", "延安路"),
            ("fengqi-rd", "凤起路"),
        ),
    ),
    (
        "harbor",
        "Harbor",
        "港区",
        0.15,
        (
            ("gangwan-rd", "港湾路"),
            ("matou-st", "码头街"),
            ("haiguan-rd", "海关路"),
            ("chuanwu-rd", "船坞路"),
            ("denghai-ave", "瞪海大道"),
        ),
    ),
    (
        "hightech",
        "High-Tech Zone",
        "高新",
        0.20,
        (
            ("chuangxin-rd", "创新路"),
            ("keji-ave", "科技大道"),
            ("zhihui-rd", "智慧路"),
            ("yunqi-rd", "云栖路"),
            ("xinghuo-rd", "星火路"),
        ),
    ),
    (
        "northhill",
        "North Hill",
        "北山",
        0.10,
        (
            ("beishan-rd", "北山路"),
            ("songlin-rd", "松林路"),
            ("shanyin-rd", "山阴路"),
            ("qingfeng-rd", "清风路"),
            ("cuiwei-rd", "翠微路"),
        ),
    ),
    (
        "eastlake",
        "East Lake",
        "东湖",
        0.17,
        (
            ("donghu-rd", "东湖路"),
            ("hubin-rd", "湖滨路"),
            ("liuying-rd", "柳莺路"),
            ("hehua-rd", "荷花路"),
            ("yuehu-rd", "月湖路"),
        ),
    ),
)


def _bbox(ring: Sequence[Point]) -> tuple[float, float, float, float]:
    lons = [p[0] for p in ring]
    lats = [p[1] for p in ring]
    return min(lons), min(lats), max(lons), max(lats)


def _streets(ring: Sequence[Point], names: Sequence[tuple[str, str]]) -> tuple[Street, ...]:
    # Inset from the bounding box so the streets stay inside the (nearly rectangular) district.
    x0, y0, x1, y1 = _bbox(ring)
    w, h = x1 - x0, y1 - y0
    ew = [(y0 + f * h, names[i]) for i, f in enumerate((0.28, 0.52, 0.76))]
    ns = [(x0 + f * w, names[3 + i]) for i, f in enumerate((0.33, 0.67))]
    streets = [Street(sid, zh, (x0 + 0.06 * w, y), (x1 - 0.06 * w, y)) for y, (sid, zh) in ew]
    streets += [Street(sid, zh, (x, y0 + 0.12 * h), (x, y1 - 0.12 * h)) for x, (sid, zh) in ns]
    return tuple(streets)


DISTRICTS: tuple[District, ...] = tuple(
    District(
        id=did,
        name=name,
        name_zh=zh,
        ring=(*_RINGS[did], _RINGS[did][0]),
        streets=_streets(_RINGS[did], streets),
        weight=weight,
    )
    for did, name, zh, weight, streets in _DISTRICTS
)


def locate(lat: NDArray[np.float64], lon: NDArray[np.float64]) -> NDArray[np.int64]:
    """Index into `DISTRICTS` of the district holding each point, or -1 outside the city."""
    lat = np.asarray(lat, dtype=np.float64)
    lon = np.asarray(lon, dtype=np.float64)
    found = np.full(lat.shape, -1, dtype=np.int64)
    for k, district in enumerate(DISTRICTS):
        inside = _inside(np.asarray(district.ring), lat, lon)
        found[(found < 0) & inside] = k
    return found


def _inside(
    ring: NDArray[np.float64], lat: NDArray[np.float64], lon: NDArray[np.float64]
) -> NDArray[np.bool_]:
    # Even-odd ray casting, every point against every edge at once.
    x1, y1 = ring[:-1, 0][:, None], ring[:-1, 1][:, None]
    x2, y2 = ring[1:, 0][:, None], ring[1:, 1][:, None]
    crosses = (y1 > lat) != (y2 > lat)
    with np.errstate(divide="ignore", invalid="ignore"):
        x_at = x1 + (lat - y1) * (x2 - x1) / (y2 - y1)
    hits = crosses & (lon < x_at)
    return np.asarray(np.count_nonzero(hits, axis=0) % 2 == 1)


# -- GeoJSON --------------------------------------------------------------------------------------


def district_geojson() -> dict[str, Any]:
    """The districts as a GeoJSON FeatureCollection of Polygons (RFC 7946: lon, lat; CCW rings)."""
    features = []
    for d in DISTRICTS:
        ring = list(d.ring)
        if _signed_area(ring) < 0:
            ring.reverse()
        lons = [p[0] for p in ring[:-1]]
        lats = [p[1] for p in ring[:-1]]
        features.append(
            {
                "type": "Feature",
                "id": d.id,
                "properties": {
                    "id": d.id,
                    "name": d.name,
                    "name_zh": d.name_zh,
                    "area": d.area,
                    "center": [round(sum(lons) / len(lons), 5), round(sum(lats) / len(lats), 5)],
                },
                "geometry": {"type": "Polygon", "coordinates": [[list(p) for p in ring]]},
            }
        )
    return {
        "type": "FeatureCollection",
        "properties": {"id": CITY_ID, "name": CITY_NAME, "name_zh": CITY_NAME_ZH},
        "features": features,
    }


def lines_geojson() -> dict[str, Any]:
    """The river and the streets as a GeoJSON FeatureCollection of LineStrings."""
    features: list[dict[str, Any]] = [
        {
            "type": "Feature",
            "id": RIVER_ID,
            "properties": {"kind": "river", "name": RIVER_NAME, "name_zh": RIVER_NAME_ZH},
            "geometry": {"type": "LineString", "coordinates": [list(p) for p in RIVER]},
        }
    ]
    for d in DISTRICTS:
        features.extend(
            {
                "type": "Feature",
                "id": f"{d.id}/{s.id}",
                "properties": {"kind": "street", "district": d.id, "name_zh": s.name_zh},
                "geometry": {"type": "LineString", "coordinates": [list(s.start), list(s.end)]},
            }
            for s in d.streets
        )
    return {"type": "FeatureCollection", "features": features}


def _signed_area(ring: Sequence[Point]) -> float:
    return 0.5 * sum(x1 * y2 - x2 * y1 for (x1, y1), (x2, y2) in itertools.pairwise(ring))


# -- devices ----------------------------------------------------------------------------------------

Placement = Literal["river", "river_band", "street", "road"]


@dataclass(frozen=True, slots=True)
class Kind:
    """One kind of demo device: id prefix, vendor, profile, how common, where it stands."""

    prefix: str
    vendor: str
    profile: str
    name_zh: str
    weight: float
    placement: Placement
    spread: float  # degrees of scatter off the river or street


GATEWAY = Kind("tgw", "trafix", "trafix-gw", "车检网关", 0.0, "road", 0.0)
DETECTORS_PER_GATEWAY = 20

KINDS: tuple[Kind, ...] = (
    Kind("wl", "hydrox", "hydrox-wl", "水位计", 0.05, "river", 0.0012),
    Kind("rg", "hydrox", "hydrox-rg", "雨量计", 0.02, "river_band", 0.02),
    Kind("rr", "rainco", "rainco-rg", "雨量站", 0.02, "river_band", 0.02),
    Kind("pp", "hydrox", "hydrox-pp", "管网压力计", 0.05, "river_band", 0.008),
    Kind("wq", "hydrox", "hydrox-wq", "水质站", 0.02, "river", 0.0012),
    # The detector share includes their gateways (one per DETECTORS_PER_GATEWAY detectors).
    Kind("tf", "trafix", "trafix-flow", "车流检测器", 0.25, "road", 0.0002),
    Kind("mc", "acme", "acme-mc", "井盖", 0.18, "street", 0.0012),
    Kind("sm", "acme", "acme-smoke", "烟感", 0.08, "street", 0.002),
    Kind("gs", "acme", "acme-gas", "燃气探测器", 0.06, "street", 0.0015),
    Kind("bn", "acme", "acme-bin", "垃圾桶", 0.09, "street", 0.0008),
    Kind("nz", "acme", "acme-noise", "噪声监测仪", 0.04, "street", 0.001),
    Kind("sl", "acme", "acme-light", "路灯", 0.10, "street", 0.0003),
    Kind("st", "acme", "acme-tilt", "结构位移计", 0.04, "street", 0.0015),
)
KIND_BY_PREFIX: dict[str, Kind] = {k.prefix: k for k in (*KINDS, GATEWAY)}

_DEVICES = pydantic.TypeAdapter(list[Device])


def kind_of(device_id: str) -> Kind | None:
    """The demo kind of a device id like ``wl-00001``, or None for another id."""
    return KIND_BY_PREFIX.get(device_id.split("-", 1)[0])


def demo_counts(n: int) -> dict[str, int]:
    """How many devices of each prefix `demo_devices` makes for ``n`` devices (they add up to n)."""
    if n < 0:
        msg = f"n must not be negative, not {n}"
        raise ValueError(msg)
    quotas = np.array([k.weight for k in KINDS]) * n
    counts = np.floor(quotas).astype(np.int64)
    # Largest remainder: the rounding never loses or adds a device.
    order = np.argsort(-(quotas - counts), kind="stable")
    counts[order[: n - int(counts.sum())]] += 1
    out = {k.prefix: int(c) for k, c in zip(KINDS, counts, strict=True)}
    block = out.pop("tf")
    gateways = math.ceil(block / (DETECTORS_PER_GATEWAY + 1)) if block >= 2 else 0
    out["mc"] += block if block < 2 else 0
    out["tgw"] = gateways
    out["tf"] = block - gateways if block >= 2 else 0
    return out


def demo_devices(n: int, seed: int = 7) -> list[Device]:
    """``n`` devices spread over Demo City, the same for the same ``n`` and ``seed``.

    Water devices follow the river, traffic detectors stand on streets in groups of about
    `DETECTORS_PER_GATEWAY` under a gateway (a device too, tagged with its detectors' count), and
    urban devices stand along the streets. Area paths are ``demo/<district>/<street>/<grid>``.
    """
    rng = np.random.default_rng(seed)
    counts = demo_counts(n)
    rows: list[dict[str, Any]] = []
    for kind in KINDS:
        count = counts[kind.prefix]
        if count == 0:
            continue
        if kind.placement in ("river", "river_band"):
            spots = _along_river(rng, count, kind.spread)
        else:
            spots = _along_streets(rng, count, kind.spread)
        if kind.prefix == "tf":
            rows += _traffic(kind, spots, counts["tgw"])
        else:
            rows += _rows(kind, spots)
    return _DEVICES.validate_python(rows)


@dataclass(frozen=True, slots=True)
class _Spots:
    """Where devices stand: coordinates, district and street indexes, position along the street."""

    lat: NDArray[np.float64]
    lon: NDArray[np.float64]
    district: NDArray[np.int64]
    street: NDArray[np.int64]  # -1: the river embankment
    pos: NDArray[np.float64]

    def take(self, index: NDArray[np.intp]) -> _Spots:
        return _Spots(
            self.lat[index],
            self.lon[index],
            self.district[index],
            self.street[index],
            self.pos[index],
        )


def _street_ends() -> NDArray[np.float64]:
    """Street ends by district and street: the last axis is x0, y0, x1, y1."""
    return np.array([[[*s.start, *s.end] for s in d.streets] for d in DISTRICTS])


def _along_river(rng: np.random.Generator, count: int, spread: float) -> _Spots:
    river = np.asarray(RIVER)
    seg = np.hypot(*np.diff(river, axis=0).T)
    cum = np.cumsum(seg)
    lat = np.empty(count)
    lon = np.empty(count)
    pos = np.empty(count)
    district = np.full(count, -1, dtype=np.int64)
    todo = np.arange(count)
    for _ in range(50):  # a few points scatter out of the city; draw those again
        if todo.size == 0:
            break
        at = rng.random(todo.size) * cum[-1]
        k = np.clip(np.searchsorted(cum, at), 0, len(seg) - 1)
        t = (at - (cum - seg)[k]) / seg[k]
        x = river[k, 0] + t * (river[k + 1, 0] - river[k, 0])
        y = river[k, 1] + t * (river[k + 1, 1] - river[k, 1])
        # Off the bank, across the river's direction.
        off = rng.normal(0.0, spread, todo.size)
        dx, dy = (river[k + 1] - river[k]).T / seg[k]
        lon[todo] = np.round(x - dy * off, 6)
        lat[todo] = np.round(y + dx * off, 6)
        pos[todo] = at / cum[-1]
        district[todo] = locate(lat[todo], lon[todo])
        todo = todo[district[todo] < 0]
    if todo.size:
        msg = "could not place devices inside the city"
        raise RuntimeError(msg)
    # The embankment for devices on the bank; far ones get their district's nearest street.
    street = _nearest_street(lat, lon, district)
    street[np.abs(lat - np.interp(lon, river[:, 0], river[:, 1])) < 0.003] = -1
    return _Spots(lat, lon, district, street, pos)


def _along_streets(rng: np.random.Generator, count: int, spread: float) -> _Spots:
    weights = np.array([d.weight for d in DISTRICTS])
    district = rng.choice(len(DISTRICTS), size=count, p=weights / weights.sum())
    street = rng.integers(0, len(DISTRICTS[0].streets), size=count)
    pos = rng.random(count)
    e = _street_ends()[district, street]
    on_lon = np.round(e[:, 0] + pos * (e[:, 2] - e[:, 0]), 6)
    on_lat = np.round(e[:, 1] + pos * (e[:, 3] - e[:, 1]), 6)
    lon = np.round(on_lon + rng.normal(0.0, spread, count), 6)
    lat = np.round(on_lat + rng.normal(0.0, spread, count), 6)
    # A point scattered over the district's border goes back onto its street (inset from borders).
    astray = locate(lat, lon) != district
    lon[astray], lat[astray] = on_lon[astray], on_lat[astray]
    return _Spots(lat, lon, district.astype(np.int64), street.astype(np.int64), pos)


def _nearest_street(
    lat: NDArray[np.float64], lon: NDArray[np.float64], district: NDArray[np.int64]
) -> NDArray[np.int64]:
    e = _street_ends()[district]  # (count, streets, 4)
    ax, ay, bx, by = e[..., 0], e[..., 1], e[..., 2], e[..., 3]
    px, py = lon[:, None], lat[:, None]
    t = ((px - ax) * (bx - ax) + (py - ay) * (by - ay)) / ((bx - ax) ** 2 + (by - ay) ** 2)
    t = np.clip(t, 0.0, 1.0)
    dist = np.hypot(px - (ax + t * (bx - ax)), py - (ay + t * (by - ay)))
    return np.asarray(np.argmin(dist, axis=1), dtype=np.int64)


def _grid(lat: float, lon: float) -> str:
    # City-wide grid cells of 0.01 degree (about 1 km): the unit of grid management (网格化管理).
    return f"g{int((lat - 30.20) // 0.01):02d}{int((lon - 120.05) // 0.01):02d}"


def _rows(
    kind: Kind,
    spots: _Spots,
    *,
    width: int = 5,
    tags: Sequence[dict[str, str]] | None = None,
) -> list[dict[str, Any]]:
    width = max(width, len(str(len(spots.lat))))
    rows = []
    for i, (y, x, k, s) in enumerate(
        zip(
            spots.lat.tolist(),
            spots.lon.tolist(),
            spots.district.tolist(),
            spots.street.tolist(),
            strict=True,
        )
    ):
        d = DISTRICTS[k]
        st = EMBANKMENT if s < 0 else d.streets[s]
        num = f"{i + 1:0{width}d}"
        row_tags = dict(tags[i]) if tags is not None else {}
        if kind.placement == "river":
            row_tags["river"] = RIVER_ID
        rows.append(
            {
                "id": f"{kind.prefix}-{num}",
                "vendor": kind.vendor,
                "profile": kind.profile,
                "name": f"{d.name_zh}{st.name_zh}{kind.name_zh}{num}",
                "lat": y,
                "lon": x,
                "area": f"{CITY_ID}/{d.id}/{st.id}/{_grid(y, x)}",
                "tags": row_tags,
            }
        )
    return rows


def _traffic(kind: Kind, spots: _Spots, gateways: int) -> list[dict[str, Any]]:
    # Detectors in street order, cut into runs, one gateway per run at the run's middle detector.
    spots = spots.take(np.lexsort((spots.pos, spots.street, spots.district)))
    runs = _runs(spots.district * 100 + spots.street, gateways)
    width = max(3, len(str(gateways)))
    mids = np.array([r[len(r) // 2] for r in runs], dtype=np.intp)
    gw_tags = [{"detectors": str(len(r))} for r in runs]
    rows = _rows(GATEWAY, spots.take(mids), width=width, tags=gw_tags)
    tags: list[dict[str, str]] = []
    for g, r in enumerate(runs):
        gw_id = f"{GATEWAY.prefix}-{g + 1:0{width}d}"
        tags += [{"gateway": gw_id, "lane": str(1 + j % 3)} for j in range(len(r))]
    return rows + _rows(kind, spots, tags=tags)


def _runs(street_key: NDArray[np.int64], gateways: int) -> list[NDArray[np.intp]]:
    """Cut detectors (sorted by street) into ``gateways`` runs; a run stays on one street if it can."""
    total = len(street_key)
    _, starts, counts = np.unique(street_key, return_index=True, return_counts=True)
    if gateways < len(counts):
        return list(np.array_split(np.arange(total), gateways))
    alloc = np.maximum(1, np.floor(gateways * counts / total)).astype(np.int64)
    while alloc.sum() > gateways:  # "at least one per street" overshot: the least loaded give one
        load = np.where(alloc > 1, counts / alloc, np.inf)
        alloc[int(np.argmin(load))] -= 1
    while alloc.sum() < gateways:  # the streets with the most detectors per gateway get one more
        load = np.where(alloc < counts, counts / alloc, 0.0)
        alloc[int(np.argmax(load))] += 1
    runs: list[NDArray[np.intp]] = []
    for start, count, n in zip(starts.tolist(), counts.tolist(), alloc.tolist(), strict=True):
        runs += np.array_split(np.arange(start, start + count), n)
    return runs
