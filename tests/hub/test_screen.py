"""The command screen in a real browser: Debian's chromium driven by Playwright, against a real hub.

The hub is the real app on uvicorn with the demo city registered, its rule engine and situation
feed running, ingesting from a real Mosquitto; readings go in through a real paho publisher. The
screen is checked through what it exposes for tests (``#screen-status`` data attributes, and
``window.hubScreen.marker(id)``: where and in which state a device's marker was drawn) and through
the canvas pixels themselves. Screenshots land in ``tests/artifacts/`` (gitignored).
"""

from __future__ import annotations

import json
import math
import re
import threading
import time
from collections.abc import Callable, Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any

import cv2
import httpx
import numpy as np
import pytest
from playwright.sync_api import Browser, Page, sync_playwright

from devices.access import Role
from devices.loader import load_shipped
from devices.registry import Registry
from devices.users import UserStore
from hub.democity import demo_counts, demo_devices
from hub.settings import HttpSettings, HubSettings, MqttSettings
from tests.conftest import Broker, free_port
from tests.hub.conftest import ServedHub
from tests.publisher import Publisher

CHROMIUM = "/usr/bin/chromium"
ARTIFACTS = Path(__file__).resolve().parents[1] / "artifacts"
PASSWORD = "a long enough password"
LAPTOP = {"width": 1440, "height": 900}
WALL = {"width": 3840, "height": 2160}
DEMO_DEVICES = 600
GREEN = (0x3F, 0xB9, 0x50)  # model.js COLOURS.online
BLUE = (0x2F, 0x81, 0xF7)  # COLOURS.blue


class Cameras:
    """A camera registry of the test's own (the hub takes any `hub.feed.CameraSource`)."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._subscribers: list[Callable[[dict[str, Any]], None]] = []
        self.items = [
            {
                "id": f"cam-{k:03d}",
                "name": f"Camera {k}",
                "lat": 30.27 + k * 0.002,
                "lon": 120.16 + k * 0.002,
                "area": "demo/oldtown",
                "status": "fault" if k == 0 else "ok",
                "findings": ["blurred"] if k == 0 else [],
            }
            for k in range(5)
        ]

    def cameras(self) -> list[dict[str, Any]]:
        with self._lock:
            return [dict(c) for c in self.items]

    def subscribe(self, callback: Callable[[dict[str, Any]], None]) -> Callable[[], None]:
        with self._lock:
            self._subscribers.append(callback)
        return lambda: self._subscribers.remove(callback)

    def change(self, camera_id: str, status: str, findings: list[str]) -> None:
        """A camera's status changes (as the video patrol would report it)."""
        with self._lock:
            cam = next(c for c in self.items if c["id"] == camera_id)
            cam.update(status=status, findings=findings)
            change = {k: cam[k] for k in ("id", "status", "findings", "area")}
            subscribers = list(self._subscribers)
        for callback in subscribers:
            callback(change)


def _serve(
    broker: Broker,
    tmp_path: Path,
    devices: int,
    cameras: Cameras | None = None,
    tile_url: str | None = None,
) -> ServedHub:
    data = tmp_path / "hub"
    data.mkdir()
    settings = HubSettings(
        data_dir=data,
        mqtt=MqttSettings(embedded=False, host=broker.host, port=broker.port),
        http=HttpSettings(port=free_port(), tile_url=tile_url, tile_attribution="test tiles"),
    )
    registry = Registry(settings.registry)
    load_shipped(registry)
    registry.put_devices(demo_devices(devices))
    registry.engine.dispose()
    served = ServedHub(settings, cameras=cameras or Cameras())
    users = UserStore(settings.registry)
    for role in (Role.COMMANDER, Role.OFFICER, Role.VIEWER):
        users.create_user(role.value, role, password=PASSWORD)
    users.create_user("acme-ops", Role.VENDOR, vendor="acme", password=PASSWORD)
    users.engine.dispose()
    return served


@pytest.fixture
def cameras() -> Cameras:
    return Cameras()


@pytest.fixture
def demo_hub(private_broker: Broker, tmp_path: Path, cameras: Cameras) -> Iterator[ServedHub]:
    """The hub with a demo city of `DEMO_DEVICES` devices, five cameras, one account per role."""
    served = _serve(private_broker, tmp_path, DEMO_DEVICES, cameras)
    try:
        yield served
    finally:
        served.stop()


@pytest.fixture(scope="module")
def browser() -> Iterator[Browser]:
    if not Path(CHROMIUM).exists():  # not a skip: `make test` installs it
        pytest.fail("chromium is not installed: run scripts/ensure-system-packages test")
    with sync_playwright() as p:
        b = p.chromium.launch(
            executable_path=CHROMIUM,
            args=["--no-sandbox", "--autoplay-policy=no-user-gesture-required"],
        )
        try:
            yield b
        finally:
            b.close()


def _token(hub: ServedHub, user: str) -> str:
    r = hub.anonymous.post("/api/v1/auth/login", json={"username": user, "password": PASSWORD})
    r.raise_for_status()
    token: str = r.json()["access_token"]
    return token


class Screen:
    """One browser page on the command screen, logged in as someone."""

    def __init__(
        self,
        browser: Browser,
        hub: ServedHub,
        user: str,
        viewport: dict[str, int],
        query: str = "",
        *,
        refuse_feed: bool = False,
    ) -> None:
        self.context = browser.new_context(viewport=viewport)  # type: ignore[arg-type]
        if refuse_feed:  # as a proxy that does not pass websockets would
            self.context.route_web_socket(
                re.compile(r"/ws/situation$"), lambda ws: ws.close(code=1011, reason="no")
            )
        self.page: Page = self.context.new_page()
        self.errors: list[str] = []
        self.page.on("pageerror", lambda e: self.errors.append(str(e)))
        self.page.goto(f"{hub.url}/{query}#token={_token(hub, user)}")

    def status(self) -> dict[str, str]:
        data: dict[str, str] = self.page.evaluate(
            "Object.assign({}, document.getElementById('screen-status').dataset)"
        )
        return data

    def wait_status(self, predicate: str, timeout: float = 15) -> None:
        """Wait until ``predicate`` (JS over ``s``, the status dataset) holds."""
        self.page.wait_for_function(
            f"() => {{ const s = document.getElementById('screen-status').dataset; return {predicate}; }}",
            timeout=timeout * 1000,
        )

    def marker(self, device: str) -> dict[str, Any]:
        m: dict[str, Any] = self.page.evaluate(f"window.hubScreen.marker({json.dumps(device)})")
        return m

    def pixel(self, x: float, y: float) -> tuple[int, int, int]:
        rgb: list[int] = self.page.evaluate(
            """([x, y]) => { const m = window.hubScreen.map;
                 const d = m.ctx.getImageData(Math.round(x * m.dpr), Math.round(y * m.dpr), 1, 1).data;
                 return [d[0], d[1], d[2]]; }""",
            [x, y],
        )
        return (rgb[0], rgb[1], rgb[2])

    def click_marker(self, device: str) -> None:
        """Bring the device into view at street zoom and click its marker with the mouse."""
        self.page.evaluate(f"window.hubScreen.map.focusDevice({json.dumps(device)})")
        self.page.wait_for_function(
            f"() => {{ const m = window.hubScreen.marker({json.dumps(device)}); return m && m.drawn; }}"
        )
        m = self.marker(device)
        box = self.page.locator("#map canvas.overlay").bounding_box()
        assert box is not None
        self.page.mouse.click(box["x"] + m["x"], box["y"] + m["y"])
        self.page.wait_for_selector(f'#device-panel[data-device="{device}"]')

    def shot(self, name: str) -> Path:
        ARTIFACTS.mkdir(exist_ok=True)
        path = ARTIFACTS / f"{name}.png"
        self.page.screenshot(path=str(path))
        return path

    def close(self) -> None:
        assert not self.errors, self.errors
        self.context.close()


@pytest.fixture
def open_screen(browser: Browser, demo_hub: ServedHub) -> Iterator[Callable[..., Screen]]:
    screens: list[Screen] = []

    def open_(
        user: str = "commander", viewport: dict[str, int] = LAPTOP, query: str = ""
    ) -> Screen:
        s = Screen(browser, demo_hub, user, viewport, query)
        screens.append(s)
        return s

    yield open_
    for s in screens:
        s.close()


def _bin(device: str, fill: float) -> tuple[str, str]:
    return f"sensors/acme/{device}/up", json.dumps(
        {"ts": int(time.time() * 1000), "fill": fill, "temp": 21.5, "bat": 88}
    )


def _smoke_alarm(device: str) -> tuple[str, str]:
    return f"sensors/acme/{device}/up", json.dumps(
        {"ts": int(time.time() * 1000), "smoke": 14.0, "alarm": 1, "bat": 90}
    )


def _publish(hub: ServedHub, *messages: tuple[str, str]) -> None:
    with Publisher(hub.settings.mqtt.host, hub.settings.mqtt.port, client_id="screen-test") as pub:
        pub.send(messages)


def _history(hub: ServedHub, alert_id: int) -> list[dict[str, Any]]:
    r = hub.http.get(f"/api/v1/alerts/{alert_id}")
    r.raise_for_status()
    history: list[dict[str, Any]] = r.json()["history"]
    return history


# -- tests ----------------------------------------------------------------------------------------


def test_screen_loads_the_demo_city_over_the_feed(
    demo_hub: ServedHub, cameras: Cameras, open_screen: Callable[..., Screen]
) -> None:
    screen = open_screen("commander", LAPTOP)
    screen.wait_status(f"s.mode === 'feed' && s.devices === '{DEMO_DEVICES}' && +s.areas > 0")
    s = screen.status()
    # Outlines from /api/v1/areas/geojson: six districts, their streets, the river.
    assert int(s["areas"]) >= 6 + 30 + 1
    # Every demo device is on the map: drawn alone or counted in a cluster, none lost.
    counted = screen.page.evaluate(
        """() => { const m = window.hubScreen.map; let alone = 0, inClusters = 0, hidden = 0;
             for (let i = 0; i < m.drawnAs.length; i++) { const k = m.drawnAs[i];
               if (k === -1) alone++; else if (k >= 0) inClusters++; else hidden++; }
             return {alone, inClusters, hidden, clusterTotal: m.clusters.reduce((n, c) => n + c.count, 0)}; }"""
    )
    assert counted["hidden"] == 0, counted  # the whole city is in view
    assert counted["alone"] + counted["inClusters"] == DEMO_DEVICES
    assert counted["clusterTotal"] == counted["inClusters"]
    assert int(s["drawn"]) == counted["alone"]
    # Nothing has reported yet: every device is "never seen", and the header says so.
    assert screen.marker("bn-00001")["state"] == "unknown"
    screen.page.wait_for_function(  # the header and district panel recount at most twice a second
        f"() => document.getElementById('h-devices').textContent === '{DEMO_DEVICES:,}'"
    )
    assert screen.page.inner_text("#h-unknown") == f"{DEMO_DEVICES:,}"
    # Cameras come from the feed too, as squares in their status colour; a change follows live.
    assert int(s["cameras"]) == 5
    cameras.change("cam-002", "fault", ["covered"])
    screen.page.wait_for_function(
        "() => window.hubScreen.model.cameraIndex.get('cam-002').status === 'fault'", timeout=5000
    )
    # The district panel lists the six districts by name with their device counts.
    rows = screen.page.locator("#district-panel tbody tr")
    assert rows.count() == 6
    assert "Old Town" in screen.page.inner_text("#district-panel tbody")
    total = sum(int(rows.nth(k).locator("td").nth(0).inner_text()) for k in range(6))
    assert total == DEMO_DEVICES
    screen.shot("screen-laptop")


def test_the_screen_fills_a_4k_wall(
    demo_hub: ServedHub, open_screen: Callable[..., Screen]
) -> None:
    screen = open_screen("commander", WALL)
    screen.wait_status(f"s.mode === 'feed' && s.devices === '{DEMO_DEVICES}' && +s.frames > 0")
    page = screen.page
    # Video-wall layout: map, alerts, districts and device side by side, no tabs, text scaled up.
    boxes = {sel: page.locator(sel).bounding_box() for sel in ("#map", "#alerts-panel", "#side")}
    assert all(b is not None for b in boxes.values())
    assert boxes["#map"]["width"] > 0.5 * WALL["width"]  # type: ignore[index]
    assert boxes["#map"]["x"] < boxes["#alerts-panel"]["x"] < boxes["#side"]["x"]  # type: ignore[index]
    assert page.locator(".tabs").is_hidden()
    assert page.locator("#district-panel").is_visible()
    font = page.evaluate("parseFloat(getComputedStyle(document.documentElement).fontSize)")
    assert font >= 22  # readable from across the room
    # The canvas is drawn at the wall's resolution, and the city fills the map.
    canvas_px = page.evaluate("window.hubScreen.map.base.width")
    assert canvas_px >= boxes["#map"]["width"] - 2  # type: ignore[index]
    fill = page.evaluate(
        """() => { const m = window.hubScreen.map; let b = null;
             for (const f of m.features) if (f.kind === 'district') b = b ? [Math.min(b[0], f.box[0]),
               Math.min(b[1], f.box[1]), Math.max(b[2], f.box[2]), Math.max(b[3], f.box[3])] : f.box;
             const [x0, y0] = m.toScreen(b[0], b[1]), [x1, y1] = m.toScreen(b[2], b[3]);
             return Math.max((x1 - x0) / m.w, (y1 - y0) / m.h); }"""
    )
    assert 0.8 < fill <= 1.0, fill
    screen.shot("screen-4k")


def test_a_reading_changes_the_marker_and_the_open_device_panel(
    demo_hub: ServedHub, open_screen: Callable[..., Screen]
) -> None:
    screen = open_screen("officer", LAPTOP)
    screen.wait_status(f"s.mode === 'feed' && s.devices === '{DEMO_DEVICES}'")
    device = "bn-00001"
    screen.click_marker(device)
    before = screen.marker(device)
    assert before["state"] == "unknown"
    assert screen.pixel(before["x"], before["y"]) != GREEN
    # A reading over MQTT: the device is online now, with its value in the open panel.
    _publish(demo_hub, _bin(device, 42.5))
    screen.page.wait_for_function(
        f"() => window.hubScreen.marker('{device}').state === 'online'", timeout=5000
    )
    screen.page.wait_for_function(
        "() => document.querySelector('#device-panel tr[data-metric=fill_level] td.v')"
        "?.textContent === '42.50'",
        timeout=5000,
    )
    after = screen.marker(device)
    assert after["drawn"]
    assert screen.pixel(after["x"], after["y"]) == GREEN  # the canvas really shows it
    assert screen.page.inner_text("#device-panel .badge") == "online"
    # A fuller bin breaches the shipped blue level: the marker turns blue, the panel follows,
    # the chart of the last 24 h takes the live reading.
    _publish(demo_hub, _bin(device, 85))
    screen.page.wait_for_function(
        f"() => window.hubScreen.marker('{device}').state === 'blue'", timeout=5000
    )
    screen.page.wait_for_function(
        "() => document.querySelector('#device-panel tr[data-metric=fill_level] td.v')"
        "?.textContent === '85.00'",
        timeout=5000,
    )
    blue = screen.marker(device)
    assert screen.pixel(blue["x"], blue["y"]) == BLUE
    assert "fill level" in screen.page.inner_text("#device-panel .device-alerts")
    assert int(screen.page.get_attribute("#device-panel", "data-chart-live") or 0) >= 1
    screen.shot("screen-device-panel")


def test_a_red_alert_appears_within_a_second_and_is_acknowledged_from_the_screen(
    demo_hub: ServedHub, open_screen: Callable[..., Screen]
) -> None:
    screen = open_screen("officer", LAPTOP)
    screen.wait_status(f"s.mode === 'feed' && s.devices === '{DEMO_DEVICES}'")
    page = screen.page
    device = "sm-00001"
    published_ms = time.time() * 1000
    _publish(demo_hub, _smoke_alarm(device))
    seen_ms = page.wait_for_function(
        f"""() => {{ const li = [...document.querySelectorAll('#alert-list li[data-level=red]')]
                 .find((el) => el.textContent.includes('{device}'));
               return li ? Date.now() : null; }}""",
        timeout=5000,
    ).json_value()
    latency_ms = seen_ms - published_ms
    print(f"screen_alert_latency_ms={latency_ms:.0f}")
    assert latency_ms < 1000, f"the red alert took {latency_ms:.0f} ms to show"
    row = page.locator(f'#alert-list li[data-level=red]:has-text("{device}")')
    alert_id = int(row.get_attribute("data-alert") or 0)
    # The cue: a banner naming it, a flashing frame, a beep (autoplay allowed in this browser).
    screen.wait_status(f"s.banner === '{alert_id}' && +s.cues >= 1")
    assert page.locator("#banner").is_visible()
    assert device in page.inner_text("#banner")
    assert int(screen.status()["beeps"]) >= 1
    assert page.evaluate("document.body.classList.contains('flash')")
    screen.shot("screen-red-alert")
    # An officer may acknowledge but not dispatch.
    assert row.locator("button[data-action=acknowledge]").count() == 1
    assert row.locator("button[data-action=dispatch]").count() == 0
    row.locator("button[data-action=acknowledge]").click()
    page.wait_for_selector(f'#alert-list li[data-alert="{alert_id}"][data-state=acknowledged]')
    assert "officer" in page.inner_text(f'#alert-list li[data-alert="{alert_id}"] .who')
    assert page.locator("#banner").is_hidden()
    # The API's history says who did it.
    ack = [e for e in _history(demo_hub, alert_id) if e["action"] == "acknowledge"]
    assert len(ack) == 1
    assert ack[0]["actor"] == "officer"
    assert ack[0]["to_state"] == "acknowledged"


def test_alert_buttons_follow_the_role_and_dispatch_asks_for_the_unit(
    demo_hub: ServedHub, open_screen: Callable[..., Screen]
) -> None:
    commander = open_screen("commander", LAPTOP)
    viewer = open_screen("viewer", LAPTOP)
    for s in (commander, viewer):
        s.wait_status(f"s.mode === 'feed' && s.devices === '{DEMO_DEVICES}'")
    _publish(demo_hub, _smoke_alarm("sm-00002"))
    row_sel = '#alert-list li[data-level=red]:has-text("sm-00002")'
    for s in (commander, viewer):
        s.page.wait_for_selector(row_sel, timeout=5000)
    assert viewer.page.locator(f"{row_sel} button").count() == 0  # viewers only watch
    row = commander.page.locator(row_sel)
    assert {b.get_attribute("data-action") for b in row.locator("button").all()} == {
        "acknowledge",
        "dispatch",
    }
    row.locator("button[data-action=dispatch]").click()
    dialog = commander.page.locator("#dispatch")
    dialog.locator("input[name=unit]").fill("fire team 2")
    dialog.locator("input[name=note]").fill("smoke in the stairwell")
    dialog.locator("button[value=send]").click()
    alert_id = int(row.get_attribute("data-alert") or 0)
    commander.page.wait_for_selector(
        f'#alert-list li[data-alert="{alert_id}"][data-state=dispatched]'
    )
    # Dispatched: now it may be resolved; the viewer's screen follows over its own feed.
    assert row.locator("button[data-action=resolve]").count() == 1
    viewer.page.wait_for_selector(f'#alert-list li[data-alert="{alert_id}"][data-state=dispatched]')
    assert "fire team 2" in viewer.page.inner_text(f'#alert-list li[data-alert="{alert_id}"]')
    entry = next(e for e in _history(demo_hub, alert_id) if e["action"] == "dispatch")
    assert (entry["actor"], entry["target"], entry["note"]) == (
        "commander",
        "fire team 2",
        "smoke in the stairwell",
    )
    # Sorting: newest first puts the latest raised alert on top.
    _publish(demo_hub, _bin("bn-00003", 97))
    commander.page.wait_for_selector('#alert-list li:has-text("bn-00003")', timeout=5000)
    commander.page.select_option("#alert-sort", "newest")
    first = commander.page.locator("#alert-list li").first
    assert "bn-00003" in first.inner_text()
    commander.page.select_option("#alert-sort", "severity")
    assert commander.page.locator("#alert-list li").first.get_attribute("data-level") == "red"


def test_chinese_toggle_changes_the_labels(
    demo_hub: ServedHub, open_screen: Callable[..., Screen]
) -> None:
    screen = open_screen("commander", LAPTOP)
    screen.wait_status(f"s.mode === 'feed' && s.devices === '{DEMO_DEVICES}'")
    page = screen.page
    assert page.inner_text("header h1 [data-i18n=title]") == "City operations"
    page.click("#lang")
    assert page.evaluate("document.documentElement.lang") == "zh-CN"
    assert page.inner_text("header h1 [data-i18n=title]") == "城市运行监测"
    assert page.inner_text("#alerts-panel h2 [data-i18n=alerts]") == "告警"
    assert page.inner_text("#live .label") == "实时"
    districts = page.inner_text("#district-panel tbody")
    assert "老城" in districts
    assert "Old Town" not in districts
    screen.shot("screen-zh")
    page.reload()  # the choice sticks
    screen.wait_status("s.mode === 'feed'")
    assert page.inner_text("header h1 [data-i18n=title]") == "城市运行监测"
    page.click("#lang")
    assert page.inner_text("header h1 [data-i18n=title]") == "City operations"
    assert "Old Town" in page.inner_text("#district-panel tbody")


def test_vendors_are_sent_to_their_device_list(
    demo_hub: ServedHub, open_screen: Callable[..., Screen]
) -> None:
    screen = open_screen("acme-ops", LAPTOP)
    screen.page.wait_for_selector("#staff-only", state="visible")
    assert screen.page.locator("#staff-only a[href='devices.html']").count() == 1
    assert screen.status().get("mode") is None  # no feed was opened


def test_a_district_screen_subscribes_to_its_district_only(
    demo_hub: ServedHub, open_screen: Callable[..., Screen]
) -> None:
    city = demo_devices(DEMO_DEVICES)
    riverside = sum(d.area.startswith("demo/riverside/") for d in city)
    screen = open_screen("commander", LAPTOP, "?area=demo/riverside")
    screen.wait_status(f"s.mode === 'feed' && s.devices === '{riverside}'")
    districts = screen.page.evaluate(
        "[...new Set(window.hubScreen.model.areas.map((a) => a.split('/')[1]))]"
    )
    assert districts == ["riverside"]
    # An alert elsewhere does not reach it; one in its district does.
    smoke = [d for d in city if d.id.startswith("sm-")]
    elsewhere = next(d.id for d in smoke if "/riverside/" not in d.area)
    here = next(d.id for d in smoke if "/riverside/" in d.area)
    _publish(demo_hub, _smoke_alarm(elsewhere), _smoke_alarm(here))
    screen.page.wait_for_selector(f'#alert-list li:has-text("{here}")', timeout=5000)
    assert screen.page.locator(f'#alert-list li:has-text("{elsewhere}")').count() == 0


def test_without_the_feed_the_screen_polls_the_api(demo_hub: ServedHub, browser: Browser) -> None:
    screen = Screen(browser, demo_hub, "officer", LAPTOP, refuse_feed=True)
    try:
        screen.wait_status(f"s.mode === 'polling' && s.devices === '{DEMO_DEVICES}'")
        assert screen.page.inner_text("#live .label") == "polling"
        _publish(demo_hub, _bin("bn-00004", 55), _smoke_alarm("sm-00003"))
        screen.page.wait_for_selector('#alert-list li[data-level=red]:has-text("sm-00003")')
        screen.wait_status("+s.cues >= 1")  # the red cue works from polled changes too
        screen.page.wait_for_function(  # devices are re-read every few seconds
            "() => window.hubScreen.marker('bn-00004').state === 'online'", timeout=15_000
        )
    finally:
        screen.close()


class TileServer:
    """A tile server of the machine room's own: every tile is one colour; requests are recorded."""

    COLOUR = (90, 20, 160)

    def __init__(self) -> None:
        tile = np.zeros((256, 256, 3), dtype=np.uint8)
        tile[:] = self.COLOUR[::-1]  # OpenCV writes BGR
        png = cv2.imencode(".png", tile)[1].tobytes()
        self.paths: list[str] = []
        paths = self.paths

        class Handler(BaseHTTPRequestHandler):
            def do_GET(self) -> None:
                paths.append(self.path)
                self.send_response(200)
                self.send_header("Content-Type", "image/png")
                self.send_header("Access-Control-Allow-Origin", "*")
                self.send_header("Content-Length", str(len(png)))
                self.end_headers()
                self.wfile.write(png)

            def log_message(self, *args: object) -> None:
                pass

        self.server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.url = f"http://127.0.0.1:{self.server.server_address[1]}/{{z}}/{{x}}/{{y}}.png"
        self.thread = threading.Thread(target=self.server.serve_forever, daemon=True)
        self.thread.start()

    def close(self) -> None:
        self.server.shutdown()
        self.server.server_close()


def test_base_map_tiles_when_a_tile_url_is_set(
    private_broker: Broker, tmp_path: Path, browser: Browser
) -> None:
    tiles = TileServer()
    hub = _serve(private_broker, tmp_path, 100, tile_url=tiles.url)
    screen: Screen | None = None
    try:
        screen = Screen(browser, hub, "commander", LAPTOP)
        screen.wait_status("s.mode === 'feed' && +s.frames > 0")
        r, g, b = TileServer.COLOUR
        screen.page.wait_for_function(  # tiles arrive, and the map draws them under the outlines
            "() => { const m = window.hubScreen.map; const d = m.ctx.getImageData(2, 2, 1, 1).data;"
            f" return d[0] === {r} && d[1] === {g} && d[2] === {b}; }}",
            timeout=10_000,
        )
        zoom = round(float(screen.page.evaluate("window.hubScreen.map.z")))
        assert len(tiles.paths) >= 4
        z, x, y = (int(v) for v in tiles.paths[-1].removesuffix(".png").strip("/").split("/"))
        assert z == zoom
        # Demo City is at about 120.17 E, 30.27 N: the tiles asked for are around it.
        assert abs(x - int((120.17 + 180) / 360 * 2**z)) <= 3
        lat = math.radians(30.27)
        assert abs(y - int((1 - math.asinh(math.tan(lat)) / math.pi) / 2 * 2**z)) <= 3
        screen.shot("screen-tiles")
    finally:
        if screen is not None:
            screen.close()
        hub.stop()
        tiles.close()


@pytest.mark.slow
def test_ten_thousand_devices_render_and_update_smoothly(
    private_broker: Broker, tmp_path: Path, browser: Browser
) -> None:
    from hub.simulator import Simulator  # noqa: PLC0415

    n = 10_000
    hub = _serve(private_broker, tmp_path, n)
    screen: Screen | None = None
    try:
        t0 = time.monotonic()
        screen = Screen(browser, hub, "commander", LAPTOP)
        screen.wait_status(f"s.mode === 'feed' && s.devices === '{n}' && +s.frames > 0", 60)
        load_s = time.monotonic() - t0
        page = screen.page
        # Record every frame's drawing time and long tasks while a burst of readings comes in.
        page.evaluate(
            """() => { const m = window.hubScreen.map; window.__draws = []; const draw = m.draw.bind(m);
                 m.draw = () => { draw(); window.__draws.push(m.lastMs); };
                 window.__long = []; new PerformanceObserver((l) => { for (const e of l.getEntries())
                   window.__long.push(e.duration); }).observe({entryTypes: ['longtask']}); }"""
        )
        sim = Simulator(demo_devices(n))
        messages: list[tuple[str, str]] = []
        for _ in range(2):  # every sender twice: about 15,000 messages, 30,000 readings
            sim.step(sim.senders, sim.moment(2000), lambda t, p: messages.append((t, p.decode())))
        t1 = time.monotonic()
        _publish(hub, *messages)
        publish_s = time.monotonic() - t1
        # Every device reported: none is "never seen" on the screen but the traffic gateways,
        # which carry their detectors' readings and have none of their own.
        gateways = demo_counts(n)["tgw"]
        page.wait_for_function(
            f"() => document.getElementById('h-unknown').textContent === '{gateways:,}'",
            timeout=60_000,
        )
        settle_s = time.monotonic() - t1
        stats = page.evaluate(
            """() => { const d = [...window.__draws].sort((a, b) => a - b);
                 return {frames: d.length, p50: d[d.length >> 1], p95: d[Math.floor(d.length * 0.95)],
                         max: d[d.length - 1], long: window.__long.length,
                         longMax: Math.max(0, ...window.__long)}; }"""
        )
        print(
            f"screen_10k_load_s={load_s:.2f} screen_10k_publish_s={publish_s:.2f} "
            f"screen_10k_all_online_s={settle_s:.2f} screen_10k_frames={stats['frames']} "
            f"screen_10k_draw_p50_ms={stats['p50']:.2f} screen_10k_draw_p95_ms={stats['p95']:.2f} "
            f"screen_10k_draw_max_ms={stats['max']:.2f} long_tasks={stats['long']} "
            f"long_task_max_ms={stats['longMax']:.0f}"
        )
        # What one redraw of 10,000 devices costs by itself: the quickest of 30 and their median
        # (the quickest is the cost without other processes taking the CPU away mid-frame).
        alone = page.evaluate(
            """() => { const m = window.hubScreen.map, d = [];
                 for (let k = 0; k < 30; k++) { const t0 = performance.now(); m.draw(); d.push(performance.now() - t0); }
                 d.sort((a, b) => a - b); return {min: d[0], p50: d[15]}; }"""
        )
        print(
            f"screen_10k_redraw_min_ms={alone['min']:.2f} screen_10k_redraw_p50_ms={alone['p50']:.2f}"
        )
        # Redraws are batched per animation frame (many deltas, few frames), and a redraw of 10,000
        # devices fits well inside a 60 Hz frame. The live tail (p95, long tasks) is printed, not
        # asserted: on a shared two-core test machine it measures the machine's load.
        assert stats["frames"] >= 2
        assert alone["min"] < 8, alone
        # The screen kept up: every device's first reading was on it soon after the burst was sent.
        assert settle_s - publish_s < 5, (publish_s, settle_s)
        screen.shot("screen-10k")
    finally:
        if screen is not None:
            screen.close()
        hub.stop()


def test_areas_geojson_is_staff_only(demo_hub: ServedHub) -> None:
    assert demo_hub.anonymous.get("/api/v1/areas/geojson").status_code == 401
    vendor = httpx.Client(
        base_url=demo_hub.url, headers={"Authorization": f"Bearer {_token(demo_hub, 'acme-ops')}"}
    )
    with vendor:
        assert vendor.get("/api/v1/areas/geojson").status_code == 403
        assert vendor.get("/api/v1/screen/config").status_code == 403
    r = demo_hub.http.get("/api/v1/areas/geojson")
    assert r.headers["content-type"] == "application/geo+json"
