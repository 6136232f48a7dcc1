"""Incidents, units and public warnings on the command screen, in a real browser against a real hub.

The hub is the real app on uvicorn with a slice of Demo City and its response set-up (area tree,
units, accounts; `tests.hub.response_city`), its step limits tightened so a red report overruns in
six seconds. Incidents, dispatches and warnings go in through the HTTP API as people make them; the
screen (Debian's chromium driven by Playwright) must show them live over the websocket feed: the
incident in the list with its step and a running timer that turns red when the step overruns, its
triangle on the map, the unit's status as it is dispatched and arrives, and a warning as a band in
its colour, a badge on its district and an outline on the map, until it is lifted. Screenshots land
in ``tests/artifacts/``.
"""

from __future__ import annotations

import re
import time
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import httpx
import pytest
from playwright.sync_api import Browser, sync_playwright

from alerts.response_settings import ResponseSettings
from tests.conftest import Broker
from tests.hub.response_city import CREW, CREW_UNIT, City, serve_city
from tests.hub.test_screen import CHROMIUM, LAPTOP, Screen

RED = (0xF8, 0x51, 0x49)  # model.js COLOURS.red: a red incident's triangle, an overrun timer
ORANGE = (0xF0, 0x88, 0x3E)  # COLOURS.orange: an orange warning's band
UNIT_COLOURS = {"available": (0x56, 0xD4, 0xDD), "dispatched": (0xD2, 0xA8, 0xFF)}  # responsemap.js
UNITS = 24  # the demo's: four per district


@pytest.fixture
def city(private_broker: Broker, tmp_path: Path) -> Iterator[City]:
    limits = tmp_path / "incidents.yaml"
    # Minutes: a red report must be registered within 6 s (the shipped limit is 5 min).
    limits.write_text("limits:\n  red: {reported: 0.1}\n")
    settings = ResponseSettings(limits_file=limits, tick_s=0.5, photo_max_bytes=64 * 1024)
    yield from serve_city(private_broker, tmp_path, settings)


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


def _ok(r: httpx.Response, status: int = 200) -> Any:
    assert r.status_code == status, r.text
    return r.json()


def _near(rgb: tuple[int, int, int], want: tuple[int, int, int], tol: int = 12) -> bool:
    return all(abs(a - b) <= tol for a, b in zip(rgb, want, strict=True))


def _css_rgb(screen: Screen, selector: str, prop: str) -> tuple[int, int, int]:
    value: str = screen.page.eval_on_selector(selector, f"(el) => getComputedStyle(el).{prop}")
    r, g, b = (int(x) for x in re.findall(r"\d+", value)[:3])
    return (r, g, b)


def _marker(screen: Screen, kind: str, ident: str | int) -> dict[str, Any]:
    fn = "incidentMarker" if kind == "incident" else "unitMarker"
    screen.page.wait_for_function(f"() => !!window.hubScreen.{fn}({ident!r})", timeout=10_000)
    m: dict[str, Any] = screen.page.evaluate(f"window.hubScreen.{fn}({ident!r})")
    return m


def _look_at(screen: Screen, kind: str, ident: str | int) -> dict[str, Any]:
    """Centre the map on a marker at zoom 14.5 (no street labels yet) and return it as redrawn."""
    before = _marker(screen, kind, ident)
    frames = int(screen.status()["frames"])
    screen.page.evaluate(
        """([x, y]) => { const m = window.hubScreen.map; const [wx, wy] = m.toWorld(x, y);
             m.touched = true; m.cx = wx; m.cy = wy; m.z = 14.5; m.invalidate(); }""",
        [before["x"], before["y"]],
    )
    screen.wait_status(f"+s.frames > {frames} && s.zoom === '14.50'")
    return _marker(screen, kind, ident)


def _warn(city: City, area: str, level: str) -> dict[str, Any]:
    until = (datetime.now(tz=UTC) + timedelta(hours=3)).isoformat()
    body = {
        "area": area,
        "kind": "rainstorm",
        "level": level,
        "reason": "60 mm in the last hour",
        "valid_until": until,
    }
    w: dict[str, Any] = _ok(city["commander"].post("/api/v1/warnings", json=body), 201)
    return w


def test_an_incident_its_timer_a_unit_and_a_warning_follow_live(
    city: City, browser: Browser
) -> None:
    screen = Screen(browser, city.hub, "commander", LAPTOP)
    elsewhere = Screen(browser, city.hub, "commander", LAPTOP, "?area=demo/oldtown")
    try:
        _walk_through(city, screen, elsewhere)
    finally:
        screen.close()
        elsewhere.close()


def _walk_through(city: City, screen: Screen, elsewhere: Screen) -> None:
    page = screen.page
    screen.wait_status(f"s.mode === 'feed' && s.units === '{UNITS}' && +s.areas > 0")
    elsewhere.wait_status("s.mode === 'feed' && s.units === '4'")  # Old Town's own units
    page.click('.tabs [data-show="incidents"]')
    assert page.inner_text("#incident-list") == "No open incidents"
    assert page.inner_text("#incident-panel .unit-summary .ust-available b") == str(UNITS)

    # An incident opened through the API appears in the list with its step and a running timer.
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
    row = f'#incident-list li[data-id="{iid}"]'
    page.wait_for_selector(row, timeout=5000)
    assert "Tunnel flooding" in page.inner_text(f"{row} .head")
    assert page.inner_text(f"{row} .istate") == "reported"
    assert page.inner_text(f"{row} .await") == "awaiting registration"
    first = page.inner_text(f"{row} .timer")
    assert re.fullmatch(r"00:0[0-6] left", first), first
    page.wait_for_function(  # it runs: the next second shows another number
        f"() => document.querySelector('{row} .timer').textContent !== {first!r}", timeout=3000
    )
    assert page.inner_text("#incident-count") == "1"
    # Another district's screen does not list it.
    assert elsewhere.page.locator("#incident-list li[data-id]").count() == 0

    # On the map: a triangle in the incident's level colour at its place (beside the "!").
    mark = _look_at(screen, "incident", iid)
    assert mark["level"] == "red"
    r = 11 * float(page.evaluate("window.hubScreen.map.ui"))
    assert _near(screen.pixel(mark["x"] + 0.35 * r, mark["y"] + 0.35 * r), RED)

    # Six seconds on, nobody registered it: the timer counts the overrun, in red, and the hub's
    # tick hands the incident up to the district (its change comes over the feed).
    page.wait_for_selector(f"{row} .timer.over", timeout=12_000)
    assert page.inner_text(f"{row} .timer").startswith("overdue +")
    assert _near(_css_rgb(screen, f"{row} .timer", "color"), RED)
    assert "over" in (page.get_attribute("#incident-count", "class") or "")
    page.wait_for_selector(f"{row} .esc", timeout=10_000)
    assert "handed up" in page.inner_text(f"{row} .esc")
    screen.shot("screen-incident-overdue")

    # Registered: the next step (dispatch) has its own limit, and the timer is back in time.
    _ok(city["commander"].post(f"/api/v1/incidents/{iid}/register", json={"note": "on it"}))
    page.wait_for_function(
        f"() => document.querySelector('{row} .istate')?.textContent === 'registered'",
        timeout=5000,
    )
    assert page.inner_text(f"{row} .await") == "awaiting dispatch"
    assert re.fullmatch(r"\d\d:\d\d left", page.inner_text(f"{row} .timer"))

    # Dispatch Riverside's drainage crew: its status shows in the row, the summary and on the map.
    unit = _look_at(screen, "unit", CREW_UNIT)
    assert unit["status"] == "available"
    assert _near(screen.pixel(unit["x"] + 4, unit["y"] - 3), UNIT_COLOURS["available"])
    _ok(
        city["commander"].post(
            f"/api/v1/incidents/{iid}/dispatch",
            json={"units": [CREW_UNIT], "instructions": "pump out the tunnel"},
        )
    )
    crew_row = f'{row} .units [data-unit="{CREW_UNIT}"]'
    page.wait_for_selector(crew_row, timeout=5000)
    page.wait_for_function(
        f"() => document.querySelector('{crew_row} em')?.textContent === 'on the way'",
        timeout=5000,
    )
    assert page.inner_text(f"{row} .await") == "awaiting arrival on site"
    assert page.inner_text("#incident-panel .unit-summary .ust-dispatched b") == "1"
    page.wait_for_function(
        f"() => window.hubScreen.unitMarker({CREW_UNIT!r})?.status === 'dispatched'",
        timeout=5000,
    )
    unit = _marker(screen, "unit", CREW_UNIT)
    assert _near(screen.pixel(unit["x"] + 4, unit["y"] - 3), UNIT_COLOURS["dispatched"])
    _ok(city[CREW].post(f"/api/v1/incidents/{iid}/arrive", json={"note": "on site"}))
    page.wait_for_function(
        f"() => document.querySelector('{crew_row} em')?.textContent === 'on scene'",
        timeout=5000,
    )
    assert page.inner_text(f"{row} .istate") == "in progress"

    # A warning for Riverside: a band in its colour on this screen, a badge on its district and
    # its outline on the map; Old Town's screen does not show it.
    w = _warn(city, "demo/riverside", "orange")
    band = f'#warnings .wband[data-id="{w["id"]}"]'
    page.wait_for_selector(band, timeout=5000)
    assert "Orange rainstorm warning" in page.inner_text(band)
    assert _near(_css_rgb(screen, band, "backgroundColor"), ORANGE)
    badge = '#district-panel tr[data-area="demo/riverside"] .wbadge'
    page.wait_for_selector(f'{badge}[data-level="orange"]', state="attached", timeout=5000)
    assert page.locator('#district-panel tr[data-area="demo/oldtown"] .wbadge').count() == 0
    screen.wait_status("+s.warned > 0")
    assert elsewhere.page.locator("#warnings .wband").count() == 0
    # A warning for the whole city shows on both screens.
    city_wide = _warn(city, "demo", "blue")
    elsewhere.page.wait_for_selector(f'#warnings .wband[data-id="{city_wide["id"]}"]', timeout=5000)
    page.wait_for_selector(f'#warnings .wband[data-id="{city_wide["id"]}"]', timeout=5000)
    # In Chinese, the same screen in the same state.
    page.click("#lang")
    assert "暴雨橙色预警" in page.inner_text(band)
    assert page.inner_text(f"{row} .istate") == "处置中"
    assert page.inner_text(f"{crew_row} em") == "在现场"
    screen.shot("screen-incident-warning-zh")
    page.click("#lang")

    # Lifted: the band and the badge go.
    _ok(city["commander"].post(f"/api/v1/warnings/{w['id']}/lift", json={"note": "over"}))
    page.wait_for_selector(band, state="detached", timeout=5000)
    # Riverside's badge is now the city's blue warning's.
    page.wait_for_selector(f'{badge}[data-level="blue"]', state="attached", timeout=5000)
    _ok(city["commander"].post(f"/api/v1/warnings/{city_wide['id']}/lift", json={"note": "over"}))
    page.wait_for_selector("#warnings", state="hidden", timeout=5000)
    elsewhere.page.wait_for_selector("#warnings", state="hidden", timeout=5000)
    page.wait_for_selector("#district-panel .wbadge", state="detached", timeout=5000)
    screen.wait_status("s.warned === '0'")
    screen.shot("screen-incident-live")


def test_two_hundred_open_incidents_stay_cheap_to_draw_and_tick(
    city: City, browser: Browser
) -> None:
    screen = Screen(browser, city.hub, "commander", LAPTOP)
    try:
        screen.wait_status(f"s.mode === 'feed' && s.units === '{UNITS}' && +s.areas > 0")
        n = 200
        streets = ["demo/riverside/binjiang-rd", "demo/oldtown/zhongshan-rd", "demo/harbor"]
        t0 = time.monotonic()
        for k in range(n):
            _ok(
                city["commander"].post(
                    "/api/v1/incidents",
                    json={
                        "title": f"Blocked drain {k}",
                        "type": "waterlogging",
                        "level": ["blue", "yellow", "orange", "red"][k % 4],
                        "area": streets[k % 3],
                        "lat": 30.22 + (k % 20) * 0.004,
                        "lon": 120.10 + (k // 20) * 0.01,
                    },
                ),
                201,
            )
        opened_s = time.monotonic() - t0
        _warn(city, "demo", "yellow")  # every district outlined too
        screen.wait_status(f"s.incidents === '{n}' && +s.warned >= 6", timeout=20)
        shown_s = time.monotonic() - t0
        cost = screen.page.evaluate(
            """() => { const s = window.hubScreen, m = s.map, d = [], r = [], k = [];
                 for (let j = 0; j < 20; j++) { let t = performance.now(); m.draw(); d.push(performance.now() - t);
                   t = performance.now(); s.incidents.render(); r.push(performance.now() - t);
                   t = performance.now(); s.incidents.tick(); k.push(performance.now() - t); }
                 const L = s.responseLayer, l = [];   // the layer by itself: outlines, units, incidents
                 for (let j = 0; j < 20; j++) { const t = performance.now(); L.under(m.ctx, m); L.over(m.ctx, m); l.push(performance.now() - t); }
                 m.draw();
                 const lo = (a) => a.sort((x, y) => x - y)[0], mid = (a) => a.sort((x, y) => x - y)[10];
                 const drawn = [...s.response.incidents.keys()].filter((id) => s.incidentMarker(id)).length;
                 return {draw: lo(d), drawP50: mid(d), layer: lo(l), render: lo(r), tick: lo(k), drawn}; }"""
        )
        print(
            f"screen_incidents={n} open_s={opened_s:.2f} listed_s={shown_s:.2f} "
            f"draw_min_ms={cost['draw']:.2f} draw_p50_ms={cost['drawP50']:.2f} "
            f"response_layer_min_ms={cost['layer']:.2f} "
            f"list_render_min_ms={cost['render']:.2f} timer_tick_min_ms={cost['tick']:.2f}"
        )
        assert cost["drawn"] == n  # every one placed on the map (the whole city is in view)
        # A redraw with 600 devices, 24 units and 200 incidents fits a 60 Hz frame; the once-a-second
        # timer tick touches only the timers' text.
        assert cost["draw"] < 8, cost
        assert cost["tick"] < 8, cost
        assert screen.page.locator("#incident-list li[data-id]").count() == n
    finally:
        screen.close()
