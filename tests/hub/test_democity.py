"""Demo City: its districts as GeoJSON, and the devices placed in them."""

from __future__ import annotations

import collections
import itertools
import math
import re
from pathlib import Path

import pytest

from devices.loader import Definitions, import_definitions, load_shipped, shipped_definitions
from devices.profiles import Device
from devices.registry import DeviceQuery, Registry
from hub import democity
from hub.democity import demo_counts, demo_devices, district_geojson, lines_geojson

N = 5000


@pytest.fixture(scope="module")
def city() -> list[Device]:
    return demo_devices(N)


def _inside(ring: list[list[float]], lon: float, lat: float) -> bool:
    # Plain even-odd ray casting, independent of the module's numpy version.
    inside = False
    for (x1, y1), (x2, y2) in itertools.pairwise(ring):
        if (y1 > lat) != (y2 > lat) and lon < x1 + (lat - y1) * (x2 - x1) / (y2 - y1):
            inside = not inside
    return inside


def _rings() -> dict[str, list[list[float]]]:
    return {f["id"]: f["geometry"]["coordinates"][0] for f in district_geojson()["features"]}


@pytest.mark.parametrize("n", [0, 1, 2, 7, 21, 22, 100, 1234, N])
def test_count_is_exact(n: int) -> None:
    assert sum(demo_counts(n).values()) == n
    assert len(demo_devices(n)) == n


def test_mix_is_realistic(city: list[Device]) -> None:
    counts = collections.Counter(d.id.split("-")[0] for d in city)
    assert set(counts) == {k.prefix for k in democity.KINDS} | {"tgw"}
    assert counts == demo_counts(N)
    assert 0.2 < counts["tf"] / N < 0.3
    assert counts["mc"] > counts["wl"] > counts["wq"]
    assert counts["tgw"] == math.ceil((counts["tf"] + counts["tgw"]) / 21)


def test_ids_unique_and_well_formed(city: list[Device]) -> None:
    ids = [d.id for d in city]
    assert len(set(ids)) == len(ids)
    assert all(re.fullmatch(r"[a-z]{2}-\d{5}|tgw-\d{3}", i) for i in ids)
    assert "wl-00001" in ids
    assert "tgw-001" in ids


def test_profiles_and_vendors_follow_the_prefix(city: list[Device]) -> None:
    for d in city:
        kind = democity.kind_of(d.id)
        assert kind is not None
        assert (d.vendor, d.profile) == (kind.vendor, kind.profile)


def test_every_device_is_inside_its_district(city: list[Device]) -> None:
    rings = _rings()
    for d in city:
        assert d.lat is not None
        assert d.lon is not None
        city_id, district, street, grid = d.area.split("/")
        assert city_id == "demo"
        assert re.fullmatch(r"g\d{4}", grid)
        assert street
        assert _inside(rings[district], d.lon, d.lat), d


def test_water_devices_follow_the_river(city: list[Device]) -> None:
    river = democity.RIVER
    for d in city:
        if d.id[:2] in ("wl", "wq"):
            assert d.lat is not None
            assert d.lon is not None
            nearest = min(
                _segment_distance(d.lon, d.lat, a, b) for a, b in itertools.pairwise(river)
            )
            assert nearest < 0.01, d
            assert d.tags["river"] == democity.RIVER_ID


def _segment_distance(x: float, y: float, a: tuple[float, float], b: tuple[float, float]) -> float:
    dx, dy = b[0] - a[0], b[1] - a[1]
    t = max(0.0, min(1.0, ((x - a[0]) * dx + (y - a[1]) * dy) / (dx * dx + dy * dy)))
    return math.hypot(x - (a[0] + t * dx), y - (a[1] + t * dy))


def test_detectors_are_grouped_under_gateways(city: list[Device]) -> None:
    gateways = {d.id: d for d in city if d.profile == "trafix-gw"}
    members = collections.Counter(d.tags["gateway"] for d in city if d.profile == "trafix-flow")
    assert set(members) == set(gateways)
    for gw_id, count in members.items():
        assert 10 <= count <= 30
        assert gateways[gw_id].tags["detectors"] == str(count)
    # A gateway serves a stretch of road: its detectors are mostly on its own street.
    streets: dict[str, set[str]] = collections.defaultdict(set)
    for d in city:
        if d.profile == "trafix-flow":
            streets[d.tags["gateway"]].add("/".join(d.area.split("/")[:3]))
    assert all(len(s) == 1 for s in streets.values())


def test_deterministic_by_seed() -> None:
    assert demo_devices(300) == demo_devices(300)
    assert demo_devices(300, seed=8) != demo_devices(300)


def test_every_district_gets_devices(city: list[Device]) -> None:
    districts = collections.Counter(d.area.split("/")[1] for d in city)
    assert set(districts) == {d.id for d in democity.DISTRICTS}
    assert districts["oldtown"] > districts["northhill"]


def test_district_geojson_is_valid() -> None:
    fc = district_geojson()
    assert fc["type"] == "FeatureCollection"
    assert len(fc["features"]) == 6
    names = {f["properties"]["name_zh"] for f in fc["features"]}
    assert names == {"滨江", "老城", "港区", "高新", "北山", "东湖"}
    for f in fc["features"]:
        ring = f["geometry"]["coordinates"][0]
        assert f["geometry"]["type"] == "Polygon"
        assert ring[0] == ring[-1]
        assert len(ring) >= 5
        for lon, lat in ring:
            assert 120.05 <= lon <= 120.30
            assert 30.20 <= lat <= 30.35
        # RFC 7946: exterior rings are counter-clockwise (positive shoelace area).
        area = sum(x1 * y2 - x2 * y1 for (x1, y1), (x2, y2) in itertools.pairwise(ring))
        assert area > 0
        assert f["properties"]["area"] == f"demo/{f['id']}"


def test_districts_tile_the_city_without_overlap() -> None:
    rings = _rings()
    outside = 0
    for i, j in itertools.product(range(1, 50), range(1, 50)):
        lon, lat = 120.05 + 0.25 * i / 50, 30.20 + 0.15 * j / 50
        holders = [name for name, ring in rings.items() if _inside(ring, lon, lat)]
        assert len(holders) <= 1, (lon, lat, holders)
        outside += not holders
    assert outside == 0


def test_lines_geojson_has_river_and_streets() -> None:
    fc = lines_geojson()
    kinds = collections.Counter(f["properties"]["kind"] for f in fc["features"])
    assert kinds == {"river": 1, "street": 30}


def test_demo_city_imports_with_the_shipped_profiles(tmp_path: Path, city: list[Device]) -> None:
    registry = Registry(f"sqlite:///{tmp_path / 'registry.db'}")
    load_shipped(registry)
    shipped = {p.id for p in shipped_definitions().profiles}
    assert {d.profile for d in city} <= shipped
    result = import_definitions(registry, Definitions(devices=tuple(city)))
    assert result.devices_new == N
    assert registry.devices(DeviceQuery(area="demo/oldtown"))[1] > 0
