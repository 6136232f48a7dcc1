"""HTTP uplinks over a real served hub: device credentials, codecs, dead letters, exactly-once, alerts."""

from __future__ import annotations

import json
import time
from datetime import UTC, datetime

import httpx

from tests.hub.conftest import ServedHub

WL = "wl-00003"
URL = f"/api/v1/uplink/hydrox/{WL}"


def _secret(hub: ServedHub, device: str) -> tuple[str, str]:
    r = hub.http.post(f"/api/v1/devices/{device}/credential")
    assert r.status_code == 200, r.text
    body = r.json()
    return body["username"], body["secret"]


def _senml(level: float, ts_s: float) -> bytes:
    return json.dumps([{"bn": "", "n": "water_level", "u": "m", "v": level, "t": ts_s}]).encode()


def test_a_device_posts_its_readings_and_they_are_stored_once(hub: ServedHub) -> None:
    username, secret = _secret(hub, WL)
    assert username == f"hydrox/{WL}"
    now_s = time.time()
    payload = _senml(1.25, now_s - 60)
    r = hub.anonymous.post(URL, content=payload, auth=(username, secret))
    assert r.status_code == 200, r.text
    assert r.json() == {"device": WL, "readings": 1, "rejected": []}
    # Answered once durable: the reading is already readable through the API.
    start = datetime.fromtimestamp(now_s - 3600, UTC).isoformat()
    readings = hub.http.get(
        f"/api/v1/devices/{WL}/readings", params={"metric": "water_level", "start": start}
    ).json()
    assert readings["value"] == [1.25]
    # The bare device id works as the user too; a repeat POST stores nothing new.
    again = hub.anonymous.post(URL, content=payload, auth=(WL, secret))
    assert again.status_code == 200, again.text
    assert hub.health()["duplicates_skipped"] == 1
    readings = hub.http.get(
        f"/api/v1/devices/{WL}/readings", params={"metric": "water_level", "start": start}
    ).json()
    assert readings["value"] == [1.25]
    # And the live view has it, as for an MQTT reading.
    detail = hub.http.get(f"/api/v1/devices/{WL}").json()
    assert detail["latest"]["water_level"]["value"] == 1.25


def test_a_bad_payload_is_a_422_problem_and_a_dead_letter(hub: ServedHub) -> None:
    username, secret = _secret(hub, WL)
    r = hub.anonymous.post(URL, content=b"not json", auth=(username, secret))
    assert r.status_code == 422
    assert r.headers["content-type"] == "application/problem+json"
    problem = r.json()
    assert [x["reason"] for x in problem["reasons"]] == ["malformed_json"]
    assert problem["reasons"][0]["device"] == WL
    assert "malformed_json" in problem["detail"]
    # The very dead letter MQTT ingestion writes, naming the route it came by.
    rejects = hub.http.get("/api/v1/rejects", params={"device": WL}).json()["items"]
    assert [(x["reason"], x["topic"], x["payload"]) for x in rejects] == [
        ("malformed_json", URL, "not json")
    ]
    # A payload with a good and a bad reading keeps the good one and lists the bad one.
    mixed = json.dumps(
        [
            {"n": "water_level", "u": "m", "v": 1.5, "t": time.time() - 30},
            {"n": "salinity", "u": "ppt", "v": 3, "t": time.time() - 30},
        ]
    ).encode()
    r = hub.anonymous.post(URL, content=mixed, auth=(username, secret))
    assert r.status_code == 200, r.text
    assert r.json()["readings"] == 1
    assert [x["reason"] for x in r.json()["rejected"]] == ["unknown_metric"]


def test_credentials_are_checked_and_a_device_posts_only_for_itself(hub: ServedHub) -> None:
    username, secret = _secret(hub, WL)
    other_user, other_secret = _secret(hub, "wl-00004")
    payload = _senml(1.0, time.time())
    nobody = hub.anonymous.post(URL, content=payload)
    assert nobody.status_code == 401
    assert nobody.headers["www-authenticate"].startswith("Basic")
    wrong = hub.anonymous.post(URL, content=payload, auth=(username, other_secret))
    assert wrong.status_code == 401
    person = hub.http.post(URL, content=payload)  # a person's bearer token is no device credential
    assert person.status_code == 401
    other = hub.anonymous.post(URL, content=payload, auth=(other_user, other_secret))
    assert other.status_code == 403
    assert other.headers["content-type"] == "application/problem+json"
    assert "wl-00004" in other.json()["detail"]
    # Revoked: the secret stops working on HTTP as on MQTT.
    assert hub.http.delete(f"/api/v1/devices/{WL}/credential").status_code == 204
    revoked = hub.anonymous.post(URL, content=payload, auth=(username, secret))
    assert revoked.status_code == 401
    health = hub.health()
    assert health["readings_stored"] == 0
    assert health["http_uplink"] == {"requests": 0, "readings": 0, "rejected": 0, "timeouts": 0}


def test_an_oversized_payload_is_413_and_dead_lettered(hub: ServedHub) -> None:
    username, secret = _secret(hub, WL)
    limit = hub.settings.ingest.max_payload_bytes
    r = hub.anonymous.post(URL, content=b"[" + b" " * limit + b"]", auth=(username, secret))
    assert r.status_code == 413
    assert r.json()["reasons"][0]["reason"] == "oversized"
    rejects = hub.http.get("/api/v1/rejects", params={"reason": "oversized"}).json()["items"]
    assert [x["device"] for x in rejects] == [WL]


def test_posted_readings_raise_an_alert_through_the_rules(hub: ServedHub) -> None:
    username, secret = _secret(hub, WL)
    with httpx.Client(base_url=hub.url, auth=(username, secret), timeout=10) as device:
        # The shipped rule wants two readings in a row (repeat: 2).
        for ts_s, level in ((time.time() - 2, 6.3), (time.time() - 1, 6.4)):
            r = device.post(URL, content=_senml(level, ts_s))
            assert r.status_code == 200, r.text
    deadline = time.monotonic() + 10
    while True:
        alerts = hub.http.get("/api/v1/alerts", params={"device": WL}).json()["items"]
        if alerts:
            break
        assert time.monotonic() < deadline, "no alert from the posted reading"
        time.sleep(0.05)
    assert alerts[0]["rule"] == "water-level-high"
    assert alerts[0]["level"] == "red"
    assert hub.health()["http_uplink"]["readings"] == 2
