"""Incidents, units and public warnings on the situation feed, through a served hub and a real websocket client.

The hub is the real app on uvicorn with a slice of Demo City and its response set-up (area tree,
units, accounts); incidents, dispatches and warnings go in through the HTTP API as people make them,
and come out the way a screen sees them: in the snapshot, then as deltas with the stream's next seq.
"""

from __future__ import annotations

from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import httpx
import pytest
from websockets.asyncio.client import ClientConnection

from devices.access import Principal, Role
from hub.feed_frames import Filter
from hub.feed_response import FeedResponse
from tests.conftest import Broker
from tests.hub.response_city import CREW, CREW_UNIT, RIVERSIDE_OFFICER, City, serve_city
from tests.hub.test_feed import Frame, closed_with, feed, frame, until

UNITS_PER_DISTRICT = 4
DISTRICTS = 6


@pytest.fixture
def city(private_broker: Broker, tmp_path: Path) -> Iterator[City]:
    yield from serve_city(private_broker, tmp_path)


def _token(client: httpx.Client) -> str:
    return str(client.headers["Authorization"].split()[1])


def _ok(r: httpx.Response, status: int = 200) -> Any:
    assert r.status_code == status, r.text
    return r.json()


def _open(city: City, area: str, title: str, level: str = "orange") -> dict[str, Any]:
    body = {"title": title, "type": "road_hazard", "level": level, "area": area}
    opened: dict[str, Any] = _ok(city["commander"].post("/api/v1/incidents", json=body), 201)
    return opened


def _warn(city: City, area: str, level: str) -> dict[str, Any]:
    until_ = (datetime.now(tz=UTC) + timedelta(hours=3)).isoformat()
    body = {
        "area": area,
        "kind": "rainstorm",
        "level": level,
        "reason": "50 mm in the last hour",
        "valid_until": until_,
    }
    w: dict[str, Any] = _ok(city["commander"].post("/api/v1/warnings", json=body), 201)
    return w


async def _snapshot(ws: ClientConnection) -> Frame:
    snap, _ = await until(ws, lambda f: f["type"] == "snapshot")
    return snap


async def _next(ws: ClientConnection, key: str, last_seq: int) -> tuple[Frame, int]:
    """The next delta carrying ``key``; every frame before it must follow on from ``last_seq``."""
    while True:
        f = await frame(ws, 10.0)
        assert f["type"] == "delta"
        assert f.get("first_seq", f["seq"]) == last_seq + 1, "a gap in the stream's seqs"
        last_seq = f["seq"]
        if key in f:
            return f, last_seq


async def test_incidents_units_and_warnings_in_the_snapshot_then_as_deltas(city: City) -> None:
    ws = await feed(city.hub, _token(city["commander"]))
    snap = await _snapshot(ws)
    # The demo's units are all there, available, with a place and no assignment; nothing is open.
    units = {u["id"]: u for u in snap["units"]}
    assert len(units) == UNITS_PER_DISTRICT * DISTRICTS
    assert units[CREW_UNIT]["status"] == "available"
    assert units[CREW_UNIT]["area"] == "demo/riverside"
    assert units[CREW_UNIT]["lat"] is not None
    assert units[CREW_UNIT]["incidents"] == []
    assert "account" not in units[CREW_UNIT]
    assert snap["incidents"] == []
    assert snap["warnings"] == []
    seq = snap["seq"]

    # An incident opened over HTTP arrives with its step, deadline and time limit.
    opened = _open(city, "demo/riverside/binjiang-rd", "Tree down on Binjiang Road")
    delta, seq = await _next(ws, "incidents", seq)
    [change] = delta["incidents"]
    assert (change["action"], change["incident"]["id"]) == ("open", opened["id"])
    item = change["incident"]
    assert (item["state"], item["step"], item["level"]) == ("reported", "register", "orange")
    assert item["area"] == "demo/riverside/binjiang-rd"
    assert item["deadline_at"] == opened["deadline_at"]
    assert item["limit_s"] > 0
    assert item["units"] == []
    assert item["lat"] is not None  # placed at its street's centre

    # Register, then dispatch Riverside's drainage crew: the incident names the unit, the unit the incident.
    iid = opened["id"]
    _ok(city["commander"].post(f"/api/v1/incidents/{iid}/register", json={"note": "on the list"}))
    delta, seq = await _next(ws, "incidents", seq)
    assert [c["incident"]["state"] for c in delta["incidents"]] == ["registered"]
    assert delta["incidents"][0]["incident"]["step"] == "dispatch"
    _ok(
        city["commander"].post(
            f"/api/v1/incidents/{iid}/dispatch",
            json={"units": [CREW_UNIT], "instructions": "clear the road"},
        )
    )
    seen: dict[str, list[dict[str, Any]]] = {"incidents": [], "units": []}
    while not (seen["incidents"] and seen["units"]):
        delta, seq = await _next(ws, "incidents" if not seen["incidents"] else "units", seq)
        for key, entries in seen.items():
            entries.extend(delta.get(key, []))
    dispatched = seen["incidents"][0]["incident"]
    assert (dispatched["state"], dispatched["step"], dispatched["units"]) == (
        "dispatched",
        "arrive",
        [CREW_UNIT],
    )
    unit = seen["units"][0]
    assert unit["action"] == "dispatched"
    assert (unit["unit"]["id"], unit["unit"]["status"], unit["unit"]["incidents"]) == (
        CREW_UNIT,
        "dispatched",
        [iid],
    )

    # The crew arrives: the unit is on scene, the incident in progress.
    _ok(city[CREW].post(f"/api/v1/incidents/{iid}/arrive", json={"note": "here"}))
    got: dict[str, list[dict[str, Any]]] = {"incidents": [], "units": []}
    while not (got["incidents"] and got["units"]):
        delta, seq = await _next(ws, "units" if got["incidents"] else "incidents", seq)
        for key, entries in got.items():
            entries.extend(delta.get(key, []))
    assert got["incidents"][0]["incident"]["state"] == "in_progress"
    assert got["units"][0]["unit"]["status"] == "on_scene"

    # Sent on to a second incident while on scene: its status stays, so no unit event of its own
    # comes; the feed still tells the screens the unit is on both now.
    second = _open(city, "demo/riverside/binjiang-rd", "Blocked drain")
    _ok(city["commander"].post(f"/api/v1/incidents/{second['id']}/register", json={}))
    _ok(
        city["commander"].post(
            f"/api/v1/incidents/{second['id']}/dispatch",
            json={"units": [CREW_UNIT], "instructions": "next one"},
        )
    )
    delta, seq = await _next(ws, "units", seq)
    [moved] = delta["units"]
    assert moved["action"] == "assignment"
    assert (moved["unit"]["status"], moved["unit"]["incidents"]) == (
        "on_scene",
        [iid, second["id"]],
    )

    # A warning published for a district, then lifted.
    w = _warn(city, "demo/riverside", "orange")
    delta, seq = await _next(ws, "warnings", seq)
    [published] = delta["warnings"]
    assert published["action"] == "publish"
    assert (published["warning"]["id"], published["warning"]["level"]) == (w["id"], "orange")
    assert published["warning"]["in_force"] is True
    _ok(city["commander"].post(f"/api/v1/warnings/{w['id']}/lift", json={"note": "over"}))
    delta, seq = await _next(ws, "warnings", seq)
    assert [(c["action"], c["warning"]["state"]) for c in delta["warnings"]] == [("lift", "lifted")]
    await ws.close()

    # A screen connecting now gets the picture as it stands (a filter of its own: a fresh snapshot,
    # not the stream's cached one followed by the deltas above).
    ws = await feed(city.hub, _token(city["officer"]), filt={"area": "demo"})
    snap = await _snapshot(ws)
    open_now = {i["id"]: i for i in snap["incidents"]}
    assert (open_now[iid]["state"], open_now[iid]["units"]) == ("in_progress", [CREW_UNIT])
    assert open_now[second["id"]]["state"] == "dispatched"
    crew = next(u for u in snap["units"] if u["id"] == CREW_UNIT)
    assert (crew["status"], crew["incidents"]) == ("on_scene", [iid, second["id"]])
    assert snap["warnings"] == []  # lifted
    await ws.close()


async def test_an_area_filter_and_an_area_bound_account_see_their_own(city: City) -> None:
    commander = _token(city["commander"])
    oldtown = await feed(city.hub, commander, filt={"area": "demo/oldtown"})
    province = await feed(city.hub, commander, filt={"area": "dp"})
    officer = await feed(city.hub, _token(city[RIVERSIDE_OFFICER]))
    crew = await feed(city.hub, _token(city[CREW]))
    snaps = {
        "oldtown": await _snapshot(oldtown),
        "province": await _snapshot(province),
        "officer": await _snapshot(officer),
        "crew": await _snapshot(crew),
    }
    # Units by area: a district's screen its district's, the province's all (the city is below it),
    # the riverside officer's only riverside's; a crew's login gets no casework on the feed.
    assert {u["area"] for u in snaps["oldtown"]["units"]} == {"demo/oldtown"}
    assert len(snaps["province"]["units"]) == UNITS_PER_DISTRICT * DISTRICTS
    assert {u["area"] for u in snaps["officer"]["units"]} == {"demo/riverside"}
    # ...and only riverside's devices and alerts, as the REST API shows that account.
    officer_areas = {d["area"] for d in snaps["officer"]["devices"]}
    assert officer_areas
    assert all(a == "demo/riverside" or a.startswith("demo/riverside/") for a in officer_areas)
    assert all(
        (a.get("area") or "").startswith("demo/riverside") for a in snaps["officer"]["alerts"]
    )
    assert snaps["crew"]["units"] == []
    seqs = {name: s["seq"] for name, s in snaps.items()}

    river = _open(city, "demo/riverside/binjiang-rd", "Flooded underpass")
    old = _open(city, "demo/oldtown/zhongshan-rd", "Cover missing", level="yellow")
    city_wide = _warn(city, "demo", "blue")  # the whole city's: shows on every screen in it
    riverside_only = _warn(city, "demo/riverside", "red")

    async def collect(ws: ClientConnection, name: str) -> dict[str, list[dict[str, Any]]]:
        got: dict[str, list[dict[str, Any]]] = {"incidents": [], "warnings": []}
        seq = seqs[name]
        while True:  # until both warnings' publications went by (the last change made)
            f = await frame(ws, 10.0)
            assert f.get("first_seq", f["seq"]) == seq + 1
            seq = f["seq"]
            for key, entries in got.items():
                entries.extend(f.get(key, []))
            if any(c["warning"]["id"] == riverside_only["id"] for c in got["warnings"]) or (
                name == "oldtown"
                and any(c["warning"]["id"] == city_wide["id"] for c in got["warnings"])
            ):
                return got

    shown = {
        "oldtown": await collect(oldtown, "oldtown"),
        "province": await collect(province, "province"),
        "officer": await collect(officer, "officer"),
        "crew": await collect(crew, "crew"),
    }

    def ids(name: str, key: str, inner: str) -> set[int]:
        return {c[inner]["id"] for c in shown[name][key]}

    assert ids("oldtown", "incidents", "incident") == {old["id"]}
    assert ids("oldtown", "warnings", "warning") == {city_wide["id"]}  # the city's, not Riverside's
    assert ids("province", "incidents", "incident") == {river["id"], old["id"]}
    assert ids("province", "warnings", "warning") == {city_wide["id"], riverside_only["id"]}
    assert ids("officer", "incidents", "incident") == {river["id"]}
    assert ids("crew", "incidents", "incident") == set()
    assert ids("crew", "warnings", "warning") == {city_wide["id"], riverside_only["id"]}

    # Snapshots agree with the deltas: the district screen shows the city's warning in force.
    again = await feed(city.hub, commander, filt={"area": "demo/oldtown/zhongshan-rd"})
    snap = await _snapshot(again)
    assert [i["id"] for i in snap["incidents"]] == [old["id"]]
    assert [w["id"] for w in snap["warnings"]] == [city_wide["id"]]
    for ws in (oldtown, province, officer, crew, again):
        await ws.close()


async def test_an_area_bound_account_asking_for_another_area_is_closed_with_4403(
    city: City,
) -> None:
    officer = _token(city[RIVERSIDE_OFFICER])
    elsewhere = await feed(city.hub, officer, filt={"area": "demo/oldtown"})
    assert await closed_with(elsewhere) == 4403
    # A part of its own area is fine, and narrows the view to that part.
    part = await feed(city.hub, officer, filt={"area": "demo/riverside/binjiang-rd"})
    snap = await _snapshot(part)
    await part.close()
    areas = {d["area"] for d in snap["devices"]}
    assert areas
    assert all(a.startswith("demo/riverside/binjiang-rd") for a in areas)


def test_the_snapshot_part_is_reused_between_events_and_read_again_after_one(city: City) -> None:
    """A screen reconnecting (a slow one, closed for falling behind) must not cost four queries each
    time; a response event makes the next snapshot read them again."""
    service = city.hub.server.config.app.state.components.response.service  # type: ignore[union-attr]
    part = FeedResponse(service)
    stop = part.attach(lambda: None)
    everyone = Filter.parse(None, Principal("commander", Role.ADMIN))
    try:
        assert part.snapshot(everyone)["incidents"] == []
        opened = _open(city, "demo/riverside/binjiang-rd", "Manhole cover missing")
        # The event arrived (on the response feed): the part is read again at once.
        assert [i["id"] for i in part.snapshot(everyone)["incidents"]] == [opened["id"]]
        # Without an event, the same part for a second (a copy: callers add their own keys).
        first, second = part.snapshot(everyone), part.snapshot(everyone)
        assert first == second
        assert first is not second
    finally:
        stop()
