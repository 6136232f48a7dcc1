"""Citizens' reports on the command screen, in a real browser (Debian's chromium) against a real hub.

A report entered before the screen opens comes with the feed's snapshot; one entered while it is open
comes as a delta; both are drawn as pins in the reports' colour where they were made, and the one
linked to a sensor alert carries the white ring. Screenshots land in ``tests/artifacts/``.
"""

from __future__ import annotations

import json
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from playwright.sync_api import Browser, sync_playwright

from tests.conftest import Broker
from tests.hub.conftest import ServedHub
from tests.hub.test_screen import CHROMIUM, LAPTOP, Cameras, Screen, _serve
from tests.publisher import Publisher

PINK = (0xF7, 0x78, 0xBA)  # reports.js REPORT_COLOUR
DEVICES = 200


@pytest.fixture
def demo_hub(private_broker: Broker, tmp_path: Path) -> Iterator[ServedHub]:
    served = _serve(private_broker, tmp_path, DEVICES, Cameras())
    try:
        yield served
    finally:
        served.stop()


@pytest.fixture(scope="module")
def browser() -> Iterator[Browser]:
    if not Path(CHROMIUM).exists():  # not a skip: `make test` installs it
        pytest.fail("chromium is not installed: run scripts/ensure-system-packages test")
    with sync_playwright() as p:
        b = p.chromium.launch(executable_path=CHROMIUM, args=["--no-sandbox"])
        try:
            yield b
        finally:
            b.close()


def _device(hub: ServedHub, kind: str) -> dict[str, Any]:
    page = hub.http.get("/api/v1/devices", params={"type": kind, "limit": 1}).json()
    device: dict[str, Any] = page["items"][0]
    return device


def _report(hub: ServedHub, lat: float, lon: float, category: str) -> dict[str, Any]:
    body = {"source": "12345", "category": category, "text": "seen", "lat": lat, "lon": lon}
    r = hub.http.post("/api/v1/reports", json=body)
    assert r.status_code == 201, r.text
    created: dict[str, Any] = r.json()["created"][0]
    return created


def _marker(screen: Screen, report_id: int) -> dict[str, Any]:
    screen.page.wait_for_function(f"() => !!window.hubScreen.reportMarker({report_id})")
    m: dict[str, Any] = screen.page.evaluate(f"window.hubScreen.reportMarker({report_id})")
    return m


def _pink(screen: Screen, m: dict[str, Any]) -> bool:
    # Left of the pin head's centre: inside the head, clear of its letter.
    rgb = screen.pixel(m["x"] - m["r"] * 0.75, m["y"])
    return all(abs(a - b) <= 12 for a, b in zip(rgb, PINK, strict=True))


def test_reports_appear_on_the_map_from_the_snapshot_and_live(
    demo_hub: ServedHub, browser: Browser
) -> None:
    gauge = _device(demo_hub, "water_level")
    # The gauge alarms (two readings in a row over red), so a report next to it links to its alert.
    now = time.time()
    m = demo_hub.settings.mqtt
    with Publisher(m.host, m.port) as pub:
        pub.send(
            [
                (
                    f"sensors/{gauge['vendor']}/{gauge['id']}/up",
                    json.dumps([{"n": "water_level", "u": "m", "v": v, "t": t}]),
                )
                for v, t in ((9.0, now - 2), (9.1, now - 1))
            ]
        )
    deadline = time.monotonic() + 15
    while not demo_hub.http.get("/api/v1/alerts", params={"device": gauge["id"]}).json()["items"]:
        assert time.monotonic() < deadline, "the gauge raised no alert"
        time.sleep(0.1)
    before = _report(demo_hub, gauge["lat"] + 0.0005, gauge["lon"], "flooding")
    assert [lk["kind"] for lk in before["links"]] == ["alert"]

    screen = Screen(browser, demo_hub, "commander", LAPTOP)
    try:
        screen.wait_status(f"s.mode === 'feed' && s.devices === '{DEVICES}'")
        first = _marker(screen, before["id"])
        assert first["linked"] is True
        screen.page.wait_for_function(  # drawn: the frame after the layer learned of it
            f"() => window.hubScreen.reportMarker({before['id']}).x > 0"
        )
        assert _pink(screen, _marker(screen, before["id"]))
        # A grid worker's report while the screen is open arrives as a delta and is drawn too.
        other = _device(demo_hub, "manhole_cover")
        during = _report(demo_hub, other["lat"], other["lon"] + 0.0005, "open_manhole")
        live = _marker(screen, during["id"])
        assert live["linked"] is False
        assert _pink(screen, live)
        tip = screen.page.evaluate(
            f"window.hubScreen.map.items.find((i) => i.kind === 'report' && i.id === {during['id']}).tip"
        )
        assert f"#{during['id']}" in tip
        assert "open manhole" in tip
        assert "Citizen report" in screen.page.inner_text("#legend")
        screen.shot("screen-reports")
    finally:
        screen.close()
