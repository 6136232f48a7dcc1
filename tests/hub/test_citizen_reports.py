"""Citizens' reports over a real served hub: entry, photos, CSV import, linking, correlation alerts."""

from __future__ import annotations

import base64
import json
import time
from collections.abc import Callable
from datetime import UTC, datetime
from typing import Any

import httpx

from devices.access import Role
from devices.users import UserStore
from tests.hub.conftest import ServedHub
from tests.hub.test_feed import feed, until
from tests.publisher import Publisher

# A water level gauge the tests place on the river bank; reports land 50-300 m from it.
GAUGE = "wl-00006"
LAT, LON = 31.3, 121.5
M = 1 / 111_195  # degrees of latitude per metre
PASSWORD = "a long enough password"
PNG = b"\x89PNG\r\n\x1a\n" + b"\x00\x00\x00\rIHDR" + bytes(range(64))


def _iso(ms: float) -> str:
    return datetime.fromtimestamp(ms / 1000, UTC).isoformat()


def _place_gauge(hub: ServedHub, device: str = GAUGE, lat: float = LAT) -> None:
    r = hub.http.patch(f"/api/v1/devices/{device}", json={"lat": lat, "lon": LON})
    assert r.status_code == 200, r.text


def _report(hub: ServedHub, north_m: float, **extra: Any) -> dict[str, Any]:
    body = {
        "source": "12345",
        "category": "flooding",
        "text": "water up to the knees",
        "lat": LAT + north_m * M,
        "lon": LON,
        **extra,
    }
    r = hub.http.post("/api/v1/reports", json=body)
    assert r.status_code == 201, r.text
    created: dict[str, Any] = r.json()["created"][0]
    return created


def _wait(what: Callable[[], Any], timeout: float = 15) -> Any:
    deadline = time.monotonic() + timeout
    while not (found := what()):
        assert time.monotonic() < deadline, "timed out"
        time.sleep(0.1)
    return found


def _alerts(hub: ServedHub, rule: str) -> list[dict[str, Any]]:
    items: list[dict[str, Any]] = hub.http.get("/api/v1/alerts", params={"rule": rule}).json()[
        "items"
    ]
    return items


def test_a_report_with_photos_is_kept_listed_and_read(hub: ServedHub) -> None:
    seen = int(time.time() * 1000) - 60_000
    photo = {"data": base64.b64encode(PNG).decode(), "content_type": "image/png"}
    mine = _report(hub, 0, time=_iso(seen), address="Riverside Rd 1", photos=[photo])
    assert mine["source"] == "12345"
    assert mine["at"].startswith(_iso(seen)[:19])
    assert mine["reporter"] == "admin"
    assert mine["cluster"] == mine["id"]
    assert [p["n"] for p in mine["photos"]] == [1]
    picture = hub.http.get(mine["photos"][0]["url"])
    assert picture.status_code == 200
    assert picture.headers["content-type"] == "image/png"
    assert picture.content == PNG
    # A grid worker's report as a multipart form with a photo file, an address only.
    r = hub.http.post(
        "/api/v1/reports",
        data={"source": "grid_worker", "category": "open_manhole", "address": "Elm St 5"},
        files=[("photos", ("cover.png", PNG, "image/png"))],
    )
    assert r.status_code == 201, r.text
    worker = r.json()["created"][0]
    assert (worker["lat"], worker["address"], len(worker["photos"])) == (None, "Elm St 5", 1)
    assert worker["cluster"] is None  # no position: not on the map, not linked
    # Read back and filtered.
    assert hub.http.get(f"/api/v1/reports/{mine['id']}").json()["text"] == "water up to the knees"
    page = hub.http.get("/api/v1/reports", params={"source": "grid_worker"}).json()
    assert [x["id"] for x in page["items"]] == [worker["id"]]
    assert hub.http.get("/api/v1/reports", params={"placed": "true"}).json()["total"] == 1
    assert hub.http.get("/api/v1/reports/999").status_code == 404


def test_bad_reports_are_problems(hub: ServedHub) -> None:
    cases = [
        ({"source": "12345", "category": "aliens", "address": "x"}, "category"),
        ({"source": "12345", "category": "flooding"}, "place"),
        ({"source": "12345", "category": "flooding", "lat": 31.2}, "lat and lon"),
        (
            {
                "source": "12345",
                "category": "flooding",
                "address": "x",
                "time": "2999-01-01T00:00Z",
            },
            "future",
        ),
        (
            {"source": "12345", "category": "flooding", "address": "x", "photos": [{"data": "!!"}]},
            "base64",
        ),
        ({"source": "12 345", "category": "flooding", "address": "x"}, "source"),
    ]
    for body, words in cases:
        r = hub.http.post("/api/v1/reports", json=body)
        assert r.status_code == 422, (body, r.text)
        assert r.headers["content-type"] == "application/problem+json"
        assert words in r.json()["detail"], (words, r.json()["detail"])
    not_a_photo = {"data": base64.b64encode(b"GIF89a...").decode()}
    r = hub.http.post(
        "/api/v1/reports",
        json={"source": "12345", "category": "flooding", "address": "x", "photos": [not_a_photo]},
    )
    assert r.status_code == 415
    assert hub.http.get("/api/v1/reports").json()["total"] == 0


def test_a_hotline_export_imports_once_and_links_near_reports(hub: ServedHub) -> None:
    now = time.time() * 1000
    rows = [
        "source,external_id,category,text,lat,lon,address,time",
        f"12345,T-1,flooding,water at the gate,{LAT},{LON},,{_iso(now - 600_000)}",
        f"12345,T-2,flooding,street under water,{LAT + 100 * M},{LON},,{_iso(now - 300_000)}",
        f"12345,T-3,blocked_drain,drain blocked,{LAT + 5000 * M},{LON},,{_iso(now - 200_000)}",
        f"12345,T-4,flooding,far too early,{LAT},{LON},,{_iso(now - 3 * 3600_000)}",
        f"12345,T-5,volcano,lava,{LAT},{LON},,{_iso(now)}",
        f"12345,T-6,flooding,no place,,,,{_iso(now)}",
    ]
    csv = ("\n".join(rows) + "\n").encode()
    r = hub.http.post("/api/v1/reports/import", content=csv, headers={"content-type": "text/csv"})
    assert r.status_code == 200, r.text
    done = r.json()
    assert [e["row"] for e in done["errors"]] == [6, 7]
    assert "volcano" in done["errors"][0]["reason"]
    by_ticket = {x["external_id"]: x for x in done["created"]}
    assert sorted(by_ticket) == ["T-1", "T-2", "T-3", "T-4"]
    one, two = by_ticket["T-1"], by_ticket["T-2"]
    # T-1 and T-2: 100 m and 5 min apart: linked both ways, one cluster. T-3 is 5 km off, T-4
    # three hours earlier: alone.
    assert [(lk["kind"], lk["id"]) for lk in one["links"]] == [("report", two["id"])]
    assert [(lk["kind"], lk["id"]) for lk in two["links"]] == [("report", one["id"])]
    assert 95 < one["links"][0]["distance_m"] < 105
    assert one["links"][0]["dt_s"] == 300
    assert one["cluster"] == two["cluster"] == one["id"]
    assert by_ticket["T-3"]["links"] == by_ticket["T-4"]["links"] == []
    assert by_ticket["T-3"]["cluster"] == by_ticket["T-3"]["id"]
    # Importing the export again adds nothing; a later report near T-2 joins their cluster and
    # links to both.
    again = hub.http.post(
        "/api/v1/reports/import", content=csv, headers={"content-type": "text/csv"}
    ).json()
    assert again["created"] == []
    assert again["duplicates"] == [2, 3, 4, 5]
    late = _report(hub, 150, time=_iso(now - 60_000))
    assert late["cluster"] == one["id"]
    assert sorted(lk["id"] for lk in late["links"]) == sorted([one["id"], two["id"]])
    assert {lk["id"] for lk in hub.http.get(f"/api/v1/reports/{one['id']}").json()["links"]} == {
        two["id"],
        late["id"],
    }
    members = hub.http.get("/api/v1/reports", params={"cluster": one["id"]}).json()
    assert members["total"] == 3


def test_reports_where_a_sensor_alarms_confirm_its_alert(hub: ServedHub) -> None:
    _place_gauge(hub)
    now = time.time()
    m = hub.settings.mqtt
    with Publisher(m.host, m.port) as pub:
        pub.send(
            [
                (f"sensors/hydrox/{GAUGE}/up", json.dumps([{"n": "water_level", "v": v, "t": t}]))
                for v, t in ((6.2, now - 2), (6.3, now - 1))
            ]
        )
    sensor = _wait(lambda: _alerts(hub, "water-level-high"))[0]
    assert sensor["device"] == GAUGE
    first = _report(hub, 50)
    assert [(lk["kind"], lk["id"]) for lk in first["links"]] == [("alert", sensor["id"])]
    _report(hub, -80, source="grid_worker")
    third = _report(hub, 120)
    assert third["cluster"] == first["id"]
    confirm = _wait(lambda: _alerts(hub, "citizen-reports-confirm"))[0]
    assert confirm["source"] == f"report-cluster:{first['id']}"
    assert confirm["level"] == sensor["level"]
    assert confirm["device"] == GAUGE
    assert "3 citizens' reports of flooding" in confirm["summary"]
    assert "confirm water-level-high" in confirm["summary"]
    assert _alerts(hub, "citizen-reports-sensors-quiet") == []
    # Reports linked to the sensor's alert are found by it.
    linked = hub.http.get("/api/v1/reports", params={"alert": sensor["id"]}).json()
    assert linked["total"] == 3


def test_reports_where_sensors_stay_quiet_suspect_a_sensor_then_it_alarms(hub: ServedHub) -> None:
    _place_gauge(hub)
    _place_gauge(hub, "wl-00007", LAT + 5000 * M)  # too far to count
    for north in (0, 60, 130):
        _report(hub, north + 200)
    quiet = _wait(lambda: _alerts(hub, "citizen-reports-sensors-quiet"))[0]
    assert quiet["level"] == "yellow"
    assert quiet["device"] == GAUGE
    assert "a sensor may be broken" in quiet["summary"]
    assert "wl-00007" not in quiet["summary"]
    # Reports far from any flooding sensor raise nothing.
    for north in (0, 60, 130):
        _report(hub, 20_000 + north)
    time.sleep(0.5)
    assert len(_alerts(hub, "citizen-reports-sensors-quiet")) == 1
    # The gauge starts alarming: the cluster's alert turns into a confirmation (the clock task).
    now = time.time()
    with httpx.Client(base_url=hub.url, timeout=10) as client:
        cred = hub.http.post(f"/api/v1/devices/{GAUGE}/credential").json()
        for v, t in ((6.2, now - 2), (6.3, now - 1)):
            payload = json.dumps([{"n": "water_level", "v": v, "t": t}])
            r = client.post(
                f"/api/v1/uplink/hydrox/{GAUGE}",
                content=payload,
                auth=(cred["username"], cred["secret"]),
            )
            assert r.status_code == 200, r.text
    confirm = _wait(lambda: _alerts(hub, "citizen-reports-confirm"), timeout=20)[0]
    assert confirm["source"] == quiet["source"]
    cleared = _wait(
        lambda: [
            a for a in _alerts(hub, "citizen-reports-sensors-quiet") if a["condition"] == "cleared"
        ]
    )
    assert cleared[0]["id"] == quiet["id"]


def test_vendors_may_not_read_or_enter_reports(hub: ServedHub) -> None:
    users = UserStore(hub.settings.registry)
    users.create_user("acme-ops", Role.VENDOR, vendor="acme", password=PASSWORD)
    users.engine.dispose()
    acme = hub.client("acme-ops", PASSWORD)
    assert acme.get("/api/v1/reports").status_code == 403
    r = acme.post("/api/v1/reports", json={"source": "x", "category": "flooding", "address": "y"})
    assert r.status_code == 403


async def test_reports_ride_the_situation_feed(hub: ServedHub) -> None:
    before = _report(hub, 0)
    _report(hub, 0, address="no place", lat=None, lon=None)  # not on the map: not on the feed
    token = str(hub.http.headers["Authorization"].split()[1])
    ws = await feed(hub, token)
    try:
        snap, _ = await until(ws, lambda f: f["type"] == "snapshot")
        assert [r["id"] for r in snap["reports"]] == [before["id"]]
        assert snap["reports"][0]["lat"] == before["lat"]
        after = _report(hub, 40, category="blocked_drain")
        delta, _ = await until(ws, lambda f: f["type"] == "delta" and "reports" in f)
        (entry,) = delta["reports"]
        assert entry["action"] == "reported"
        assert entry["report"]["id"] == after["id"]
        assert entry["report"]["category"] == "blocked_drain"
        assert [lk["id"] for lk in entry["report"]["links"]] == [before["id"]]
    finally:
        await ws.close()


def test_an_area_bound_officer_sees_and_enters_only_their_area(hub: ServedHub) -> None:
    users = UserStore(hub.settings.registry)
    users.create_user("hp-officer", Role.OFFICER, password=PASSWORD, area="sh/huangpu")
    users.engine.dispose()
    officer = hub.client("hp-officer", PASSWORD)
    mine = _report(hub, 0, area="sh/huangpu/bund")
    theirs = _report(hub, 3000, area="sh/huangpu2")  # a prefix of the name, not of the path
    page = officer.get("/api/v1/reports").json()
    assert [x["id"] for x in page["items"]] == [mine["id"]]
    assert officer.get(f"/api/v1/reports/{theirs['id']}").status_code == 404
    assert officer.get("/api/v1/reports", params={"area": "sh"}).json()["total"] == 1
    r = officer.post(
        "/api/v1/reports",
        json={"source": "12345", "category": "other", "address": "x", "area": "sh/xuhui"},
    )
    assert r.status_code == 422
    assert "outside your area" in r.json()["detail"]
