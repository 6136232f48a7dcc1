"""Who sees which incident (a town's officer its own area's only; a unit only its dispatches), public
warnings on every screen of an area, and an overrun step escalating up the area tree, in a served hub."""

from __future__ import annotations

import time
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import pytest

from alerts.response_settings import OVERDUE_RULE, ResponseSettings
from tests.conftest import Broker
from tests.hub.response_city import CREW, OLDTOWN_OFFICER, RIVERSIDE_OFFICER, City, serve_city


@pytest.fixture
def city(private_broker: Broker, tmp_path: Path) -> Iterator[City]:
    yield from serve_city(private_broker, tmp_path)


def _ok(r: Any, status: int = 200) -> Any:
    assert r.status_code == status, r.text
    return r.json()


def test_a_town_sees_only_its_own_incidents(city: City) -> None:
    city.storm()
    alerts = city.wait_alerts("water-level-high", "demo/riverside", n=1)
    river, old, crew = city[RIVERSIDE_OFFICER], city[OLDTOWN_OFFICER], city[CREW]
    ours = _ok(river.post("/api/v1/incidents", json={"alerts": [alerts[0]["id"]]}), 201)
    theirs = _ok(
        city["commander"].post(
            "/api/v1/incidents",
            json={
                "title": "Cover missing on Zhongshan Road",
                "type": "road_hazard",
                "level": "yellow",
                "area": "demo/oldtown/zhongshan-rd",
            },
        ),
        201,
    )
    assert theirs["lat"] is not None  # placed at its street's centre, from the area tree
    listed = _ok(river.get("/api/v1/incidents"))
    assert [i["id"] for i in listed["items"]] == [ours["id"]]
    assert _ok(old.get("/api/v1/incidents"))["items"][0]["id"] == theirs["id"]
    assert _ok(river.get("/api/v1/incidents", params={"area": "demo/oldtown"}))["total"] == 0
    # Another area's incident is as if it did not exist: read, act, report, all 404.
    for method, path in (
        ("GET", f"/api/v1/incidents/{theirs['id']}"),
        ("POST", f"/api/v1/incidents/{theirs['id']}/register"),
        ("POST", f"/api/v1/incidents/{theirs['id']}/comment"),
        ("GET", f"/api/v1/incidents/{theirs['id']}/report.html"),
    ):
        r = river.request(method, path, json={"note": "mine?"} if method == "POST" else None)
        assert r.status_code == 404, (method, path, r.text)
    refused = river.post(
        "/api/v1/incidents",
        json={"type": "other", "level": "blue", "area": "demo/oldtown/zhongshan-rd"},
    )
    assert refused.status_code == 400
    # A unit sees no incident it was not sent to.
    assert _ok(crew.get("/api/v1/incidents"))["items"] == []
    assert crew.get(f"/api/v1/incidents/{ours['id']}").status_code == 404
    # The roll-up of the town's own area counts its incident; the city's is not the town's.
    rollup = _ok(river.get("/api/v1/areas/rollup"))
    assert rollup["area"] == "demo/riverside"
    assert rollup["total"]["incidents"] == {"reported": 1}
    assert sum(c["devices"] for c in rollup["children"]) == rollup["total"]["devices"] > 0
    assert river.get("/api/v1/areas/rollup", params={"area": "demo"}).status_code == 404
    city_view = _ok(city["commander"].get("/api/v1/areas/rollup", params={"area": "demo"}))
    by_area = {c["area"]: c for c in city_view["children"]}
    assert by_area["demo/riverside"]["alerts"]  # the storm's alerts roll up to the district
    assert by_area["demo/oldtown"]["incidents"] == {"reported": 1}
    assert by_area["demo/riverside"]["units"] == {"available": 4}


def test_a_warning_shows_on_every_screen_of_its_area(city: City) -> None:
    commander = city["commander"]
    until = (datetime.now(tz=UTC) + timedelta(hours=6)).isoformat()
    w = _ok(
        commander.post(
            "/api/v1/warnings",
            json={
                "area": "demo/riverside",
                "kind": "rainstorm",
                "level": "orange",
                "reason": "70 mm in the last hour upstream",
                "valid_until": until,
            },
        ),
        201,
    )
    assert w["in_force"]
    # An officer may not publish; a town's officer may not either, even for its own area.
    body = {
        "area": "demo/riverside",
        "kind": "flood",
        "level": "blue",
        "reason": "x",
        "valid_until": until,
    }
    assert city[RIVERSIDE_OFFICER].post("/api/v1/warnings", json=body).status_code == 403
    for area, shown in (
        ("demo/riverside/binjiang-rd", True),  # a street's screen shows its district's warning
        ("demo", True),  # the city's screen shows warnings within it
        ("demo/oldtown", False),
    ):
        listed = _ok(city[CREW].get("/api/v1/warnings", params={"area": area, "active": True}))
        assert ([x["id"] for x in listed] == [w["id"]]) is shown, (area, listed)
    raised = _ok(
        commander.patch(f"/api/v1/warnings/{w['id']}", json={"level": "red", "note": "worse"})
    )
    assert raised["level"] == "red"
    assert (
        _ok(commander.post(f"/api/v1/warnings/{w['id']}/lift", json={"note": "rain over"}))["state"]
        == "lifted"
    )
    history = _ok(commander.get(f"/api/v1/warnings/{w['id']}"))["history"]
    assert [(h["action"], h["level"]) for h in history] == [
        ("publish", "orange"),
        ("adjust", "red"),
        ("lift", "red"),
    ]


@pytest.fixture
def hurried_city(private_broker: Broker, tmp_path: Path) -> Iterator[City]:
    limits = tmp_path / "incidents.yaml"
    # Seconds instead of minutes: the report must be registered in 1.2 s, dispatched in 2.4 s.
    limits.write_text("limits:\n  red: {reported: 0.02, registered: 0.04}\n")
    yield from serve_city(
        private_broker, tmp_path, ResponseSettings(limits_file=limits, tick_s=0.1)
    )


def _wait(city: City, iid: int, owner: str, timeout: float = 15) -> dict[str, Any]:
    deadline = time.monotonic() + timeout
    while True:
        incident: dict[str, Any] = _ok(city["commander"].get(f"/api/v1/incidents/{iid}"))
        if incident["owner"] == owner:
            return incident
        assert time.monotonic() < deadline, incident
        time.sleep(0.1)


def test_an_overrun_step_escalates_up_the_tree_to_the_people_on_duty(hurried_city: City) -> None:
    city = hurried_city
    opened = _ok(
        city["commander"].post(
            "/api/v1/incidents",
            json={
                "title": "Tunnel flooding",
                "type": "waterlogging",
                "level": "red",
                "area": "demo/riverside/binjiang-rd",
            },
        ),
        201,
    )
    iid = opened["id"]
    incident = _wait(city, iid, "demo/riverside")
    assert incident["escalations"] == 1
    assert incident["overdue"] is True
    assert [h["action"] for h in incident["history"]][-2:] == ["overdue", "escalate"]
    assert incident["history"][-1]["target"] == "demo/riverside"
    # The overrun step raised its own alert, on the ordinary alert path.
    deadline = time.monotonic() + 10
    while not (
        found := _ok(city.hub.http.get("/api/v1/alerts", params={"rule": OVERDUE_RULE}))["items"]
    ):
        assert time.monotonic() < deadline
        time.sleep(0.1)
    (alert,) = found
    assert (alert["source"], alert["kind"], alert["condition"], alert["level"]) == (
        f"incident:{iid}",
        "overdue",
        "firing",
        "red",
    )
    # The people on duty for the district were told (the Riverside officer's shift): when the red
    # incident opened (nobody is on duty for the street itself) and when it was handed up; the
    # overdue alert is not told a third time.
    notices = _ok(city[RIVERSIDE_OFFICER].get("/api/v1/roster/notices"))
    assert [(n["subject"], n["reason"], n["area"]) for n in notices] == [
        (f"incident:{iid}", "escalated", "demo/riverside"),
        (f"incident:{iid}", "incident_opened", "demo/riverside"),
    ]
    on_duty = _ok(
        city["commander"].get(
            "/api/v1/roster/on-duty", params={"area": "demo/riverside/binjiang-rd"}
        )
    )
    assert on_duty["answered_by"] == "demo/riverside"
    # Registering ends the overrun step: its alert's condition clears.
    _ok(city[RIVERSIDE_OFFICER].post(f"/api/v1/incidents/{iid}/register", json={}))
    deadline = time.monotonic() + 10
    while _ok(city.hub.http.get(f"/api/v1/alerts/{alert['id']}"))["condition"] != "cleared":
        assert time.monotonic() < deadline
        time.sleep(0.1)
    # Nobody dispatches within 2.4 s either: the city takes it over, and its commander is told.
    incident = _wait(city, iid, "demo")
    assert incident["escalations"] == 2
    told = _ok(
        city["commander"].get("/api/v1/roster/notices", params={"subject": f"incident:{iid}"})
    )
    assert [(n["user"], n["area"]) for n in told] == [("commander", "demo")]
    assert _ok(city.hub.http.get(f"/api/v1/alerts/{alert['id']}"))["condition"] == "firing"


def test_a_town_sees_and_acts_on_only_its_own_alerts(city: City) -> None:
    city.storm()
    ours = city.wait_alerts("water-level-high", "demo/riverside", n=1)[0]
    river, old = city[RIVERSIDE_OFFICER], city[OLDTOWN_OFFICER]
    listed = _ok(river.get("/api/v1/alerts", params={"limit": 500}))["items"]
    assert listed
    assert all((a["area"] or "").startswith("demo/riverside/") for a in listed)
    assert river.get("/api/v1/alerts", params={"area": "demo/oldtown"}).status_code == 404
    assert old.get("/api/v1/alerts", params={"area": "demo/riverside"}).status_code == 404
    assert old.get(f"/api/v1/alerts/{ours['id']}").status_code == 404
    assert old.post(f"/api/v1/alerts/{ours['id']}/ack", json={}).status_code == 404
    assert river.post(f"/api/v1/alerts/{ours['id']}/ack", json={}).status_code == 200
