"""Area outlines for the offline map (hub.areas, GET /api/v1/areas/geojson) and the screen's settings."""

from __future__ import annotations

import numpy as np
import pytest

from alerts.lifecycle import Action, State
from devices.access import Role
from devices.users import UserStore
from hub import democity
from hub.areas import Placed, area_collection, convex_hull, outline, ring_area
from hub.screen_api import actions_for
from tests.hub.conftest import ServedHub

PASSWORD = "a long enough password"


def _left_of_every_edge(ring: np.ndarray, pts: np.ndarray) -> bool:
    a, b = ring[:-1], ring[1:]
    cross = (b[:, 0] - a[:, 0])[:, None] * (pts[:, 1] - a[:, 1][:, None]) - (b[:, 1] - a[:, 1])[
        :, None
    ] * (pts[:, 0] - a[:, 0][:, None])
    return bool(np.all(cross >= -1e-12))


def test_hull_of_a_square_with_points_inside_is_its_corners() -> None:
    rng = np.random.default_rng(3)
    inside = rng.random((500, 2)) * 0.8 + 0.1
    corners = np.array([[0, 0], [1, 0], [1, 1], [0, 1]], dtype=float)
    hull = convex_hull(np.vstack([inside, corners]))
    assert len(hull) == 5
    assert np.array_equal(hull[0], hull[-1])  # closed
    assert {tuple(p) for p in hull[:-1].tolist()} == {tuple(p) for p in corners.tolist()}
    assert ring_area(hull) == pytest.approx(1.0)  # counter-clockwise: positive


@pytest.mark.parametrize("n", [3, 8, 50, 5000])
def test_hull_holds_every_point_and_is_made_of_them(n: int) -> None:
    rng = np.random.default_rng(n)
    pts = rng.normal(size=(n, 2))
    hull = convex_hull(pts)
    assert ring_area(hull) > 0
    assert _left_of_every_edge(hull, pts)
    as_set = {tuple(p) for p in pts.tolist()}
    assert all(tuple(v) in as_set for v in hull.tolist())


def test_degenerate_groups_get_a_padded_box() -> None:
    one = np.array([[120.1, 30.2]])
    ring, how = outline(one)
    assert how == "bbox"
    assert ring_area(ring) > 0
    line = np.array([[120.1, 30.2], [120.2, 30.2], [120.15, 30.2]])
    ring, how = outline(line)
    assert how == "bbox"
    assert ring[:, 1].min() < 30.2 < ring[:, 1].max()  # grown across the line
    spread = np.array([[120.1, 30.2], [120.2, 30.2], [120.15, 30.25]])
    assert outline(spread)[1] == "hull"


def test_demo_city_uses_its_own_district_and_street_outlines() -> None:
    devices = democity.demo_devices(400)
    placed = Placed(
        area=[d.area for d in devices],
        lat=np.array([d.lat for d in devices]),
        lon=np.array([d.lon for d in devices]),
    )
    fc = area_collection(placed, [d.area for d in devices])
    by_id = {f["id"]: f for f in fc["features"]}
    for d in democity.DISTRICTS:
        f = by_id[d.area]
        assert f["properties"]["source"] == "known"
        assert f["properties"]["name_zh"] == d.name_zh
        assert ring_area(np.array(f["geometry"]["coordinates"][0])) > 0  # RFC 7946: CCW
    street = by_id["demo/oldtown/zhongshan-rd"]
    assert street["properties"]["kind"] == "street"
    assert street["properties"]["name_zh"] == "中山路"
    # Devices placed along the demo's streets stand inside their street's outline (nearly all:
    # they scatter normally; water devices follow the river and only borrow a street's name).
    along = {k.prefix for k in democity.KINDS if k.placement in ("street", "road")} | {"tgw"}
    inside = total = 0
    for d in devices:
        f = by_id.get("/".join(d.area.split("/")[:3]))
        if f is None or d.id.split("-")[0] not in along:
            continue
        total += 1
        ring = np.array(f["geometry"]["coordinates"][0])
        inside += _left_of_every_edge(ring, np.array([[d.lon, d.lat]]))
    assert total > 200
    assert inside / total > 0.9, (inside, total)
    assert any(f["properties"].get("kind") == "river" for f in fc["features"])
    counted = sum(
        f["properties"]["devices"] for f in fc["features"] if f["properties"].get("level") == 2
    )
    assert counted == len(devices)


def test_the_api_outlines_registry_areas_from_their_devices(hub: ServedHub) -> None:
    r = hub.http.get("/api/v1/areas/geojson")
    assert r.status_code == 200
    fc = r.json()
    by_id = {f["id"]: f for f in fc["features"]}
    # tests/hub/conftest.py's city: bins on one meridian (a line: padded boxes), water levels with
    # no position (their street cannot be drawn), a decommissioned device left out.
    assert set(by_id) == {
        "sh/huangpu",
        "sh/xuhui",
        "sh/huangpu/street-0",
        "sh/huangpu/street-1",
        "sh/huangpu/street-2",
        "sh/xuhui/street-0",
        "sh/xuhui/street-1",
        "sh/xuhui/street-2",
    }
    assert fc["properties"]["unplaced"] == ["sh/huangpu/bund"]
    huangpu = by_id["sh/huangpu"]["properties"]
    assert (huangpu["source"], huangpu["devices"]) == ("bbox", 30)  # 20 bins and 10 gauges
    ring = np.array(by_id["sh/xuhui"]["geometry"]["coordinates"][0])
    assert ring[:, 1].min() < 31.220  # around bins 20-29
    assert ring[:, 1].max() > 31.229
    assert fc["properties"]["city"] is None  # not the demo city: no river


def test_screen_config_gives_each_role_the_lifecycle_s_actions(hub: ServedHub) -> None:
    users = UserStore(hub.settings.registry)
    users.create_user("duty", Role.OFFICER, password=PASSWORD)
    users.engine.dispose()
    officer = hub.client("duty", PASSWORD)
    body = officer.get("/api/v1/screen/config").json()
    assert (body["user"], body["role"], body["tile_url"]) == ("duty", "officer", None)
    assert body["actions"]["raised"]["firing"] == ["acknowledge", "assign", "comment"]
    assert "dispatch" not in body["actions"]["acknowledged"]["firing"]
    commander = actions_for(Role.COMMANDER)
    assert Action.DISPATCH in commander[State.RAISED]["firing"]
    # Closing waits for the condition to clear (unless forced, which the screen does not offer).
    assert Action.CLOSE not in commander[State.RESOLVED]["firing"]
    assert Action.CLOSE in commander[State.RESOLVED]["cleared"]
    assert all(not a["firing"] and not a["cleared"] for a in actions_for(Role.VIEWER).values())
