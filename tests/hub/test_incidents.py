"""From a rain storm's alerts to a closed incident, through a served hub, real MQTT and the HTTP API.

The storm's readings go over Mosquitto into the hub; its rule engine raises water-level alerts in
Riverside; an officer opens an incident from them, registers it; a commander takes the nearest
drainage crew the hub suggests and dispatches it; the crew reports arrival, progress with a photo and
completion through its own login (and cannot close); the officer verifies; the commander closes. The
record comes out as HTML and PDF, the period figures count it, and every change reached the
response feed (the hook the situation screen subscribes to).
"""

from __future__ import annotations

from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import cv2
import numpy as np
import pytest

from tests.conftest import Broker
from tests.hub.response_city import CREW, CREW_UNIT, City, events_of, serve_city


@pytest.fixture
def city(private_broker: Broker, tmp_path: Path) -> Iterator[City]:
    yield from serve_city(private_broker, tmp_path)


def _jpeg() -> bytes:
    frame = np.zeros((120, 160, 3), dtype=np.uint8)
    frame[:, :80] = (200, 120, 40)
    ok, buf = cv2.imencode(".jpg", frame)
    assert ok
    return bytes(buf)


def _hours_ago(hours: float) -> str:
    return (datetime.now(tz=UTC) - timedelta(hours=hours)).isoformat()


def _ok(r: Any, status: int = 200) -> dict[str, Any]:
    assert r.status_code == status, r.text
    body: dict[str, Any] = r.json()
    return body


def test_from_a_storm_s_alerts_to_a_closed_incident(city: City) -> None:
    events = events_of(city)
    city.storm()
    alerts = city.wait_alerts("water-level-high", "demo/riverside", n=3)
    assert all(a["area"].startswith("demo/riverside/") for a in alerts)
    officer, commander, crew = city["officer"], city["commander"], city[CREW]

    # The officer opens one incident from the storm's water-level alerts.
    ids = [a["id"] for a in alerts]
    incident = _ok(officer.post("/api/v1/incidents", json={"alerts": ids}), 201)
    iid = incident["id"]
    assert incident["type"] == "waterlogging"
    assert incident["area"] == "demo/riverside/yudai-embankment"
    assert incident["level"] == max(
        (a["level"] for a in alerts), key=["blue", "yellow", "orange", "red"].index
    )
    assert incident["state"] == "reported"
    assert incident["lat"] is not None  # the mean place of the alerts' gauges
    assert set(incident["allowed_actions"]) == {"register", "comment", "link"}  # an officer's
    taken = [city.hub.http.get(f"/api/v1/alerts/{a}").json()["state"] for a in ids]
    assert set(taken) == {"acknowledged"}  # the incident took them on
    _ok(officer.post(f"/api/v1/incidents/{iid}/register", json={"note": "underpass at risk"}))

    # The commander sends the nearest drainage crew the hub suggests.
    suggested = _ok(commander.get(f"/api/v1/incidents/{iid}/suggestions", params={"k": 3}))
    assert suggested, "no unit suggested"
    assert {s["unit"]["kind"] for s in suggested} == {"drainage"}
    distances = [s["distance_m"] for s in suggested]
    assert distances == sorted(distances)
    assert suggested[0]["unit"]["id"] == CREW_UNIT  # Riverside's own crew is the nearest
    sent = _ok(
        commander.post(
            f"/api/v1/incidents/{iid}/dispatch",
            json={"units": [CREW_UNIT], "instructions": "pump out the embankment underpass"},
        )
    )
    assert sent["state"] == "dispatched"

    # The crew sees its incident, and only through its own login's reports moves it on.
    mine = _ok(crew.get("/api/v1/incidents"))
    assert [i["id"] for i in mine["items"]] == [iid]
    assert crew.post(f"/api/v1/incidents/{iid}/close", json={}).status_code == 403
    assert (
        _ok(crew.post(f"/api/v1/incidents/{iid}/arrive", json={"note": "on site"}))["state"]
        == "in_progress"
    )
    photo = _jpeg()
    progress = crew.post(
        f"/api/v1/incidents/{iid}/progress",
        data={"note": "two pumps running", "caption": "underpass east"},
        files=[("photos", ("east.jpg", photo, "image/jpeg"))],
    )
    assert _ok(progress)["state"] == "in_progress"
    refused = crew.post(
        f"/api/v1/incidents/{iid}/progress",
        data={"note": "not a picture"},
        files=[("photos", ("x.jpg", b"<html>not a jpeg</html>", "image/jpeg"))],
    )
    assert refused.status_code == 415, refused.text
    assert refused.headers["content-type"] == "application/problem+json"
    huge = b"\xff\xd8\xff" + b"\0" * (65 * 1024)
    too_big = crew.post(
        f"/api/v1/incidents/{iid}/progress", files=[("photos", ("big.jpg", huge, "image/jpeg"))]
    )
    assert too_big.status_code == 413, too_big.text
    assert crew.post(f"/api/v1/incidents/{iid}/verify", json={}).status_code == 403
    assert (
        _ok(crew.post(f"/api/v1/incidents/{iid}/complete", data={"note": "water gone"}))["state"]
        == "in_progress"
    )
    assert crew.post(f"/api/v1/incidents/{iid}/close", json={}).status_code == 403
    unit = _ok(commander.get(f"/api/v1/units/{CREW_UNIT}"))
    assert unit["status"] == "available"

    # The officer checks the result, the commander closes the case.
    assert (
        _ok(officer.post(f"/api/v1/incidents/{iid}/verify", json={"note": "road dry"}))["state"]
        == "verified"
    )
    assert officer.post(f"/api/v1/incidents/{iid}/close", json={}).status_code == 403
    closed = _ok(commander.post(f"/api/v1/incidents/{iid}/close", json={"note": "handled"}))
    assert (closed["state"], closed["outcome"]) == ("closed", "handled")

    detail = _ok(officer.get(f"/api/v1/incidents/{iid}"))
    assert [h["action"] for h in detail["history"]] == [
        "open",
        "register",
        "dispatch",
        "arrive",
        "progress",
        "complete",
        "verify",
        "close",
    ]
    assert [h["actor"] for h in detail["history"]][3:6] == [CREW, CREW, CREW]
    (d,) = detail["dispatches"]
    assert (d["unit"], d["status"]) == (CREW_UNIT, "completed")
    (p,) = detail["photos"]
    assert detail["history"][4]["photos"] == [p["id"]]
    got = officer.get(p["url"])
    assert got.status_code == 200
    assert (got.headers["content-type"], got.content) == ("image/jpeg", photo)
    assert sorted(a["id"] for a in detail["alerts"]) == sorted(ids)

    # The record, as HTML and PDF.
    page = officer.get(f"/api/v1/incidents/{iid}/report.html")
    assert page.status_code == 200
    assert "<svg" in page.text
    assert "<polyline" in page.text
    assert "pump out the embankment underpass" in page.text
    assert "data:image/jpeg;base64," in page.text  # the crew's photo
    pdf = officer.get(f"/api/v1/incidents/{iid}/report.pdf")
    assert pdf.status_code == 200
    assert pdf.headers["content-type"] == "application/pdf"
    assert pdf.content.startswith(b"%PDF-")

    # The period's figures count it, with its times to respond.
    figures = _ok(commander.get("/api/v1/statistics/incidents", params={"since": _hours_ago(1)}))
    (river,) = [a for a in figures["areas"] if a["area"] == "demo/riverside"]
    assert (river["opened"], river["closed"], river["open_at_end"]) == (1, 1, 0)
    assert river["times"]["arrive"]["count"] == 1

    # Every change reached the response feed: incidents with their history line, units' statuses.
    incident_actions = [e["action"] for e in events if e["type"] == "incident"]
    assert incident_actions == [
        "open",
        "register",
        "dispatch",
        "arrive",
        "progress",
        "complete",
        "verify",
        "close",
    ]
    unit_moves = [e["unit"]["status"] for e in events if e["type"] == "unit"]
    assert unit_moves == ["dispatched", "on_scene", "available"]
    last = [e for e in events if e["type"] == "incident"][-1]
    assert last["incident"]["state"] == "closed"
    assert last["entry"]["actor"] == "commander"
