"""The HTTP API over a real server: devices, latest values, readings raw and bucketed, rejects, errors."""

from __future__ import annotations

import json
import shutil
import subprocess
import time
from datetime import UTC, datetime
from pathlib import Path

import pytest

from tests.hub.conftest import ServedHub
from tests.publisher import Publisher

PROBLEM = "application/problem+json"
T0 = (int(time.time()) - 7200) // 3600 * 3600 * 1000  # a whole hour, two hours ago


def _iso(ms: int) -> str:
    return datetime.fromtimestamp(ms / 1000, tz=UTC).isoformat().replace("+00:00", "Z")


def _publish_bins(hub: ServedHub, minutes: int = 60) -> int:
    """bin-00000 reports fill 0..59 once a minute for an hour; the other bins report once."""
    msgs = [
        ("sensors/acme/bin-00000/up", json.dumps({"ts": T0 + i * 60_000, "fill": i, "bat": 90}))
        for i in range(minutes)
    ]
    msgs += [
        (f"sensors/acme/bin-{i:05d}/up", json.dumps({"ts": T0, "fill": 50, "bat": 80}))
        for i in range(1, 30)
    ]
    broker = hub.settings.mqtt
    with Publisher(broker.host, broker.port) as pub:
        pub.send(msgs)
    stored = minutes * 2 + 29 * 2
    hub.wait_stored(stored)
    return stored


def test_healthz_needs_no_login_and_status_reports_the_pipeline(hub: ServedHub) -> None:
    assert hub.anonymous.get("/healthz").json() == {"status": "ok", "broker_connected": True}
    assert hub.anonymous.get("/api/v1/status").status_code == 401
    h = hub.health()
    assert h["status"] == "ok"
    assert h["broker_connected"] is True
    assert h["devices"] == 41


def test_list_filters_and_pages(hub: ServedHub) -> None:
    page = hub.http.get("/api/v1/devices", params={"limit": 15}).json()
    assert page["total"] == 41
    assert len(page["items"]) == 15
    ids = [d["id"] for d in page["items"]]
    assert ids == sorted(ids)
    rest = hub.http.get("/api/v1/devices", params={"offset": 15, "limit": 100}).json()
    assert len(rest["items"]) == 26
    assert not set(ids) & {d["id"] for d in rest["items"]}

    by_type = hub.http.get("/api/v1/devices", params={"type": "water_level"}).json()
    assert by_type["total"] == 10
    assert {d["type"] for d in by_type["items"]} == {"water_level"}
    by_vendor = hub.http.get("/api/v1/devices", params={"vendor": "hydrox"}).json()
    assert by_vendor["total"] == 10
    by_area = hub.http.get("/api/v1/devices", params={"area": "sh/xuhui"}).json()
    assert by_area["total"] == 10
    assert all(d["area"].startswith("sh/xuhui/") for d in by_area["items"])
    both = hub.http.get("/api/v1/devices", params={"area": "sh/huangpu", "vendor": "acme"}).json()
    assert both["total"] == 20
    gone = hub.http.get("/api/v1/devices", params={"status": "decommissioned"}).json()
    assert [d["id"] for d in gone["items"]] == ["sm-00001"]


def test_device_detail_shows_latest_values_in_canonical_units(hub: ServedHub) -> None:
    broker = hub.settings.mqtt
    with Publisher(broker.host, broker.port) as pub:
        pub.send(
            [
                (
                    "sensors/hydrox/wl-00003/up",
                    json.dumps(
                        [
                            {
                                "bn": "wl-00003:",
                                "bt": T0 / 1000,
                                "n": "water_level",
                                "u": "cm",
                                "v": 250,
                            },
                            {"n": "water_level", "u": "cm", "v": 262, "t": 60},
                        ]
                    ),
                ),
            ]
        )
    hub.wait_stored(2)
    d = hub.http.get("/api/v1/devices/wl-00003").json()
    assert d["type"] == "water_level"
    assert d["tags"] == {"river": "huangpu"}
    assert d["latest"]["water_level"]["value"] == 2.62
    assert d["latest"]["water_level"]["unit"] == "m"
    assert d["latest"]["water_level"]["ts"] == _iso(T0 + 60_000)
    assert d["last_seen"] == _iso(T0 + 60_000)
    assert d["profile_detail"]["id"] == "hydrox-wl"
    listed = hub.http.get("/api/v1/devices", params={"area": "sh/huangpu/bund"}).json()
    by_id = {x["id"]: x for x in listed["items"]}
    assert by_id["wl-00003"]["latest"]["water_level"]["value"] == 2.62
    assert by_id["wl-00004"]["latest"] == {}


def test_readings_raw_and_downsampled(hub: ServedHub) -> None:
    _publish_bins(hub)
    base = "/api/v1/devices/bin-00000/readings"
    span = {"start": _iso(T0), "end": _iso(T0 + 3_600_000)}
    raw = hub.http.get(base, params={"metric": "fill_level", **span}).json()
    assert raw["unit"] == "%"
    assert raw["value"] == [float(i) for i in range(60)]
    assert raw["ts"][0] == _iso(T0)
    assert raw["ts"][-1] == _iso(T0 + 59 * 60_000)
    assert raw["truncated"] is False

    limited = hub.http.get(base, params={"metric": "fill_level", "limit": 10, **span}).json()
    assert limited["value"] == [float(i) for i in range(10)]
    assert limited["truncated"] is True

    buckets = hub.http.get(base, params={"metric": "fill_level", "every": "15m", **span}).json()
    assert buckets["every_ms"] == 900_000
    assert buckets["ts"] == [_iso(T0 + k * 900_000) for k in range(4)]
    assert buckets["min"] == [0.0, 15.0, 30.0, 45.0]
    assert buckets["max"] == [14.0, 29.0, 44.0, 59.0]
    assert buckets["mean"] == [7.0, 22.0, 37.0, 52.0]
    assert buckets["count"] == [15, 15, 15, 15]

    default_window = hub.http.get(base, params={"metric": "battery"}).json()
    assert len(default_window["value"]) == 60  # the last 24 h by default


def test_errors_are_problem_details(hub: ServedHub) -> None:
    r = hub.http.get("/api/v1/devices/nope-00001")
    assert r.status_code == 404
    assert r.headers["content-type"] == PROBLEM
    body = r.json()
    assert body["status"] == 404
    assert "nope-00001" in body["detail"]
    assert body["instance"] == "/api/v1/devices/nope-00001"

    bad_every = hub.http.get(
        "/api/v1/devices/bin-00000/readings", params={"metric": "fill_level", "every": "soon"}
    )
    assert bad_every.status_code == 400
    assert bad_every.headers["content-type"] == PROBLEM
    assert "every='soon'" in bad_every.json()["detail"]

    wrong_metric = hub.http.get(
        "/api/v1/devices/bin-00000/readings", params={"metric": "water_level"}
    )
    assert wrong_metric.status_code == 400
    assert "fill_level" in wrong_metric.json()["detail"]

    backwards = hub.http.get(
        "/api/v1/devices/bin-00000/readings",
        params={"metric": "fill_level", "start": _iso(T0), "end": _iso(T0 - 1000)},
    )
    assert backwards.status_code == 400

    invalid = hub.http.get("/api/v1/devices", params={"limit": 0})
    assert invalid.status_code == 422
    assert invalid.headers["content-type"] == PROBLEM
    assert invalid.json()["errors"][0]["loc"] == "query.limit"

    missing = hub.http.get("/api/v1/devices/bin-00000/readings")
    assert missing.status_code == 422
    assert "metric" in missing.json()["detail"]


def test_rejects_are_listed_with_reasons_and_filters(hub: ServedHub) -> None:
    broker = hub.settings.mqtt
    with Publisher(broker.host, broker.port) as pub:
        pub.send(
            [
                ("sensors/acme/bin-00001/up", "{not json"),
                ("sensors/acme/bin-00002/up", json.dumps({"ts": T0, "fill": "full"})),
                ("sensors/acme/ghost-00001/up", json.dumps({"ts": T0, "fill": 3})),
                ("sensors/hydrox/wl-00001/up", "[]"),
            ]
        )
    # Counted when decoded, listed once written (the next store write): wait for the list.
    deadline = time.monotonic() + 10
    while len((page := hub.http.get("/api/v1/rejects").json())["items"]) < 3:
        assert time.monotonic() < deadline
        time.sleep(0.05)
    reasons = {(x["device"], x["reason"]) for x in page["items"]}
    assert ("bin-00001", "malformed_json") in reasons
    assert ("ghost-00001", "unknown_device") in reasons
    assert page["total"] == len(page["items"])
    first = page["items"][0]
    assert set(first) >= {"ts", "vendor", "device", "topic", "reason", "detail", "payload"}

    only = hub.http.get("/api/v1/rejects", params={"reason": "unknown_device"}).json()
    assert [x["device"] for x in only["items"]] == ["ghost-00001"]
    by_device = hub.http.get("/api/v1/rejects", params={"device": "bin-00001"}).json()
    assert by_device["items"][0]["payload"] == "{not json"
    by_vendor = hub.http.get("/api/v1/rejects", params={"vendor": "hydrox"}).json()
    assert all(x["vendor"] == "hydrox" for x in by_vendor["items"])
    bad_reason = hub.http.get("/api/v1/rejects", params={"reason": "gremlins"})
    assert bad_reason.status_code == 422

    detail = hub.http.get("/api/v1/devices/bin-00001").json()
    assert detail["rejects"] == {"malformed_json": 1}


def test_openapi_and_docs_are_served(hub: ServedHub) -> None:
    spec = hub.http.get("/openapi.json").json()
    for path in (
        "/api/v1/devices",
        "/api/v1/devices/{device_id}",
        "/api/v1/devices/{device_id}/readings",
        "/api/v1/rejects",
        "/healthz",
    ):
        assert path in spec["paths"], path
    docs = hub.http.get("/docs")
    assert docs.status_code == 200
    assert "swagger" in docs.text.lower()


def test_first_page_is_served(hub: ServedHub) -> None:
    screen = hub.http.get("/")  # the command screen (tests/hub/test_screen.py drives it)
    assert screen.status_code == 200
    assert "screen/main.js" in screen.text
    page = hub.http.get("/devices.html")  # the device list it links to
    assert page.status_code == 200
    assert "/api/v1/devices" in page.text


CHROMIUM = shutil.which("chromium") or "/usr/bin/chromium"


def test_first_page_lists_devices_with_latest_values_in_a_browser(hub: ServedHub) -> None:
    if not Path(CHROMIUM).exists():  # not a skip: `make test` installs it
        pytest.fail("chromium is not installed: run scripts/ensure-system-packages test")
    broker = hub.settings.mqtt
    with Publisher(broker.host, broker.port) as pub:
        pub.send([("sensors/acme/bin-00000/up", json.dumps({"ts": T0, "fill": 42.5, "bat": 91}))])
    hub.wait_stored(2)
    token = hub.http.post("/api/v1/auth/tokens", json={"name": "wall screen"}).json()
    out = subprocess.run(
        [
            CHROMIUM,
            "--headless",
            "--no-sandbox",
            "--disable-gpu",
            "--virtual-time-budget=5000",
            "--dump-dom",
            f"{hub.url}/devices.html#token={token['access_token']}",
        ],
        capture_output=True,
        text=True,
        timeout=60,
        check=True,
    )
    dom = out.stdout
    row = dom[dom.index("bin-00000") :]
    row = row[: row.index("</tr>")]
    assert "42.5" in row
    assert "fill_level" in row
    assert "bin-00029" in dom  # the page lists the other devices too
    assert "connected" in dom  # the header read /api/v1/status
    assert "admin · admin" in dom  # and who is logged in


def test_first_page_without_a_token_asks_to_log_in(hub: ServedHub) -> None:
    out = subprocess.run(
        [
            CHROMIUM,
            "--headless",
            "--no-sandbox",
            "--disable-gpu",
            "--virtual-time-budget=3000",
            "--dump-dom",
            f"{hub.url}/devices.html",
        ],
        capture_output=True,
        text=True,
        timeout=60,
        check=True,
    )
    assert 'id="login" style="display: flex;"' in out.stdout
    assert "bin-00000" not in out.stdout
