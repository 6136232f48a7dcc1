"""The situation feed through a real hub (uvicorn, Mosquitto) and a real websocket client.

Readings are published over MQTT, alerts applied to the hub's own store or acted on over HTTP, and
everything is observed the way a screen observes it: frames on ``/ws/situation``.
"""

from __future__ import annotations

import asyncio
import json
import socket
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest
from websockets.asyncio.client import ClientConnection, connect
from websockets.exceptions import ConnectionClosed

from alerts.events import ConditionEvent, Level
from devices.access import Role
from devices.loader import load_shipped
from devices.profiles import Device, DeviceProfile, MetricSpec
from devices.registry import Registry
from devices.users import UserStore
from hub.settings import FeedSettings, HttpSettings, HubSettings, MqttSettings
from tests.conftest import Broker, free_port
from tests.hub.conftest import CITY, ServedHub
from tests.publisher import Publisher

PASSWORD = "a long enough password"
Frame = dict[str, Any]


class Cameras:
    """A camera source held in memory (the video package will provide the real one)."""

    def __init__(self, cameras: list[dict[str, Any]]) -> None:
        self._cameras = {c["id"]: c for c in cameras}
        self._subscribers: list[Callable[[dict[str, Any]], None]] = []

    def cameras(self) -> list[dict[str, Any]]:
        return list(self._cameras.values())

    def subscribe(self, callback: Callable[[dict[str, Any]], None]) -> Callable[[], None]:
        self._subscribers.append(callback)
        return lambda: self._subscribers.remove(callback)

    def change(self, camera_id: str, status: str, findings: list[str]) -> None:
        camera = {**self._cameras[camera_id], "status": status, "findings": findings}
        self._cameras[camera_id] = camera
        for callback in self._subscribers:
            callback(camera)


CAMERAS = [
    {
        "id": "cam-bund-1",
        "name": "Bund north",
        "lat": 31.24,
        "lon": 121.49,
        "area": "sh/huangpu/bund",
        "status": "ok",
        "findings": [],
    },
    {
        "id": "cam-xh-1",
        "name": "Xuhui gate",
        "lat": 31.19,
        "lon": 121.43,
        "area": "sh/xuhui/street-0",
        "status": "fault",
        "findings": ["blur"],
    },
]


def _settings(broker: Broker, tmp_path: Path, feed: FeedSettings) -> HubSettings:
    data = tmp_path / "hub"
    data.mkdir()
    return HubSettings(
        data_dir=data,
        mqtt=MqttSettings(embedded=False, host=broker.host, port=broker.port),
        http=HttpSettings(port=free_port()),
        feed=feed,
    )


@pytest.fixture
def cameras() -> Cameras:
    return Cameras(CAMERAS)


@pytest.fixture
def hub(private_broker: Broker, tmp_path: Path, cameras: Cameras) -> Iterator[ServedHub]:
    """The test city with two cameras; deltas every 50 ms."""
    settings = _settings(private_broker, tmp_path, FeedSettings(interval_ms=50))
    registry = Registry(settings.registry)
    load_shipped(registry)
    registry.put_devices(CITY)
    registry.engine.dispose()
    served = ServedHub(settings, cameras=cameras)
    try:
        yield served
    finally:
        served.stop()


def token(
    hub: ServedHub, user: str = "admin", role: Role = Role.ADMIN, vendor: str | None = None
) -> str:
    if user == "admin":
        header = hub.http.headers["Authorization"]
        return str(header.split()[1])
    UserStore(hub.settings.registry).create_user(user, role, vendor=vendor, password=PASSWORD)
    client = hub.client(user, PASSWORD)
    return str(client.headers["Authorization"].split()[1])


async def feed(
    hub: ServedHub,
    tok: str,
    *,
    since: int | None = None,
    filt: dict[str, Any] | None = None,
    **options: Any,
) -> ClientConnection:
    ws = await connect(f"ws://127.0.0.1:{hub.settings.http.port}/ws/situation", **options)
    await ws.send(json.dumps({"type": "hello", "token": tok, "since": since, "filter": filt}))
    return ws


async def frame(ws: ClientConnection, within: float = 5.0) -> Frame:
    body: Frame = json.loads(await asyncio.wait_for(ws.recv(), within))
    return body


async def until(
    ws: ClientConnection, wanted: Callable[[Frame], bool], within: float = 10.0
) -> tuple[Frame, list[Frame]]:
    """The first frame ``wanted`` accepts, and every frame before it."""
    seen: list[Frame] = []
    deadline = time.monotonic() + within
    while True:
        left = deadline - time.monotonic()
        assert left > 0, f"no wanted frame in {within} s; saw {[f['type'] for f in seen]}"
        f = await frame(ws, left)
        if wanted(f):
            return f, seen
        seen.append(f)


async def _read_to_the_end(ws: ClientConnection) -> None:
    while True:
        await ws.recv()


async def closed_with(ws: ClientConnection, within: float = 10.0) -> int | None:
    """Read until the server closes; its close code."""
    with pytest.raises(ConnectionClosed):
        await asyncio.wait_for(_read_to_the_end(ws), within)
    assert ws.close_code is not None
    return ws.close_code


def publish(hub: ServedHub, messages: list[tuple[str, str]]) -> None:
    m = hub.settings.mqtt
    with Publisher(m.host, m.port, client_id=f"feed-test-{time.monotonic_ns()}") as pub:
        pub.send(messages)


def bin_reading(i: int, fill: float, ts: int) -> tuple[str, str]:
    return (f"sensors/acme/bin-{i:05d}/up", json.dumps({"ts": ts, "fill": fill, "bat": 90}))


def wl_reading(i: int, level: float, ts: int) -> tuple[str, str]:
    body = [{"bn": f"wl-{i:05d}:", "bt": ts / 1000, "n": "water_level", "u": "m", "v": level}]
    return (f"sensors/hydrox/wl-{i:05d}/up", json.dumps(body))


def fire(hub: ServedHub, device: str, level: Level, area: str | None = None) -> int:
    store = hub.server.config.app.state.alert_store  # type: ignore[attr-defined]
    change = store.apply(
        ConditionEvent(
            rule=f"r-{device}",
            source=f"device:{device}",
            kind="threshold",
            level=level,
            firing=True,
            at_ms=int(time.time() * 1000),
            summary=f"{device} at {level.label}",
            device=device,
            area=area,
            metric="water_level",
            value=5.3,
        )
    )
    assert change is not None
    return int(change.alert.id)


def readings(f: Frame) -> dict[tuple[str, str], float]:
    return {(d, m): v for d, m, v, _ in f.get("readings", [])}


# -- snapshot -------------------------------------------------------------------------------------


async def test_snapshot_has_devices_alerts_cameras_and_counts(hub: ServedHub) -> None:
    now = int(time.time() * 1000)
    publish(hub, [bin_reading(3, 42.5, now), wl_reading(1, 3.25, now)])
    hub.wait_stored(3)
    alert_id = fire(hub, "wl-00001", Level.ORANGE, area="sh/huangpu/bund")

    ws = await feed(hub, token(hub))
    snap = await frame(ws)
    await ws.close()

    assert snap["type"] == "snapshot"
    assert isinstance(snap["seq"], int)
    devices = {d["id"]: d for d in snap["devices"]}
    # 30 bins and 10 water levels; the decommissioned smoke detector is not on the map.
    assert set(devices) == {d.id for d in CITY if d.status.value == "active"}
    assert len(devices) == 40
    b3 = devices["bin-00003"]
    assert b3 == {
        "id": "bin-00003",
        "vendor": "acme",
        "type": "bin_fill",
        "lat": pytest.approx(31.203),
        "lon": 121.4,
        "area": "sh/huangpu/street-0",
        "online": True,  # seen within three report intervals
        "last_seen": now,
        "values": {"fill_level": 42.5, "battery": 90.0},
    }
    assert devices["wl-00001"]["values"] == {"water_level": 3.25}
    never = devices["bin-00004"]
    assert never["online"] is None
    assert never["last_seen"] is None
    assert never["values"] == {}

    assert [a["id"] for a in snap["alerts"]] == [alert_id]
    alert = snap["alerts"][0]
    assert alert["level"] == "orange"
    assert alert["device"] == "wl-00001"
    assert alert["state"] == "raised"

    assert {c["id"] for c in snap["cameras"]} == {"cam-bund-1", "cam-xh-1"}
    xh = next(c for c in snap["cameras"] if c["id"] == "cam-xh-1")
    assert xh == {**CAMERAS[1]}

    counts = snap["counts"]
    assert counts["sh"]["devices"] == 40
    assert counts["sh/huangpu"]["devices"] == 30
    assert counts["sh/xuhui"]["devices"] == 10
    assert counts["sh/huangpu/bund"]["devices"] == 10
    assert counts["sh/huangpu/street-0"]["online"] == 1
    assert counts["sh"]["online"] == 2
    assert counts["sh"]["alerts"] == {"blue": 0, "yellow": 0, "orange": 1, "red": 0}
    assert counts["sh/huangpu/bund"]["alerts"]["orange"] == 1
    assert counts["sh/xuhui"]["alerts"]["orange"] == 0


# -- deltas ---------------------------------------------------------------------------------------


async def test_a_reading_published_over_mqtt_arrives_as_a_delta(hub: ServedHub) -> None:
    ws = await feed(hub, token(hub))
    snap = await frame(ws)
    now = int(time.time() * 1000)
    sent = time.monotonic()
    publish(hub, [wl_reading(2, 4.5, now), bin_reading(7, 12.0, now)])
    delta, _ = await until(ws, lambda f: ("wl-00002", "water_level") in readings(f))
    latency = time.monotonic() - sent
    await ws.close()

    assert delta["type"] == "delta"
    assert delta["seq"] > snap["seq"]
    rows = {(d, m): (v, ts) for d, m, v, ts in delta["readings"]}
    assert rows[("wl-00002", "water_level")] == (4.5, now)
    assert latency < 2.0, latency


async def test_readings_in_one_interval_are_coalesced_to_the_latest(hub: ServedHub) -> None:
    ws = await feed(hub, token(hub))
    await frame(ws)
    now = int(time.time() * 1000)
    # One message with three readings of one series: the frame carries the newest only.
    body = [
        {"bn": "wl-00003:", "bt": now / 1000 - 2, "n": "water_level", "u": "m", "v": 1.0},
        {"bn": "wl-00003:", "bt": now / 1000, "n": "water_level", "u": "m", "v": 3.0},
        {"bn": "wl-00003:", "bt": now / 1000 - 1, "n": "water_level", "u": "m", "v": 2.0},
    ]
    publish(hub, [("sensors/hydrox/wl-00003/up", json.dumps(body))])
    delta, _ = await until(ws, lambda f: ("wl-00003", "water_level") in readings(f))
    await ws.close()
    rows = [r for r in delta["readings"] if r[0] == "wl-00003"]
    assert rows == [["wl-00003", "water_level", 3.0, now]]


async def test_device_status_and_camera_changes_arrive(hub: ServedHub, cameras: Cameras) -> None:
    ws = await feed(hub, token(hub))
    await frame(ws)
    publish(hub, [("sensors/hydrox/wl-00004/status", "offline")])
    delta, _ = await until(ws, lambda f: bool(f.get("status")))
    assert delta["status"][0]["id"] == "wl-00004"
    assert delta["status"][0]["online"] is False
    cameras.change("cam-bund-1", "fault", ["occluded"])
    delta, _ = await until(ws, lambda f: bool(f.get("cameras")))
    await ws.close()
    assert delta["cameras"] == [{"id": "cam-bund-1", "status": "fault", "findings": ["occluded"]}]


async def test_alert_changes_arrive_in_order(hub: ServedHub) -> None:
    ws = await feed(hub, token(hub))
    await frame(ws)
    alert_id = fire(hub, "wl-00005", Level.RED, area="sh/huangpu/bund")
    created, _ = await until(ws, lambda f: bool(f.get("alerts")))
    change = created["alerts"][0]
    assert change["change"] == "created"
    assert change["alert_id"] == alert_id
    assert change["alert"]["level"] == "red"

    r = hub.http.post(f"/api/v1/alerts/{alert_id}/ack", json={"note": "on it"})
    assert r.status_code == 200, r.text
    acked, _ = await until(ws, lambda f: bool(f.get("alerts")))
    await ws.close()
    change = acked["alerts"][0]
    assert change["action"] == "acknowledge"
    assert change["actor"] == "admin"
    assert change["alert"]["state"] == "acknowledged"


# -- reconnecting ---------------------------------------------------------------------------------


@pytest.mark.parametrize("away", [3, 12])
async def test_reconnect_with_since_gets_the_missed_frames(hub: ServedHub, away: int) -> None:
    tok = token(hub)
    ws = await feed(hub, tok)
    await frame(ws)
    now = int(time.time() * 1000)
    publish(hub, [wl_reading(6, 1.0, now)])
    delta, _ = await until(ws, lambda f: ("wl-00006", "water_level") in readings(f))
    last = delta["seq"]
    await ws.close()

    # While away: a frame per round (rounds are further apart than the 50 ms interval).
    for k in range(away):
        publish(hub, [wl_reading(6, 2.0 + k, now + 1000 * (k + 1))])
        await asyncio.sleep(0.12)
    publish(hub, [wl_reading(7, 9.0, now)])
    await asyncio.sleep(0.3)

    ws = await feed(hub, tok, since=last)
    end, frames = await until(ws, lambda f: ("wl-00007", "water_level") in readings(f))
    await ws.close()
    frames.append(end)
    assert all(f["type"] == "delta" for f in frames)
    for f in frames:  # contiguous: each frame starts right after the one before
        assert f.get("first_seq", f["seq"]) == last + 1
        last = f["seq"]
    latest = [readings(f)[k] for f in frames if (k := ("wl-00006", "water_level")) in readings(f)]
    assert latest[-1] == 2.0 + away - 1
    if away > 8:  # more than a few frames missed: one merged frame, readings coalesced
        assert len(frames) == 1
        assert frames[0]["first_seq"] < frames[0]["seq"]
        assert latest == [2.0 + away - 1]
    else:
        assert len(frames) >= away


async def test_reconnect_with_a_too_old_since_gets_a_snapshot(hub: ServedHub) -> None:
    tok = token(hub)
    ws = await feed(hub, tok)
    snap = await frame(ws)
    await ws.close()
    for since in (5, snap["seq"] - 10_000, snap["seq"] + 1_000_000):
        ws = await feed(hub, tok, since=since)
        again = await frame(ws)
        await ws.close()
        assert again["type"] == "snapshot", since
        assert len(again["devices"]) == 40


async def test_a_new_filter_on_an_open_connection_gets_a_fresh_snapshot(hub: ServedHub) -> None:
    ws = await feed(hub, token(hub))
    first = await frame(ws)
    assert len(first["devices"]) == 40
    await ws.send(json.dumps({"type": "filter", "filter": {"area": "sh/xuhui"}}))
    snap, _ = await until(ws, lambda f: f["type"] == "snapshot")
    await ws.close()
    assert {d["area"].split("/")[1] for d in snap["devices"]} == {"xuhui"}
    assert len(snap["devices"]) == 10


# -- refusals -------------------------------------------------------------------------------------


async def test_a_bad_token_is_closed_with_4401(hub: ServedHub) -> None:
    ws = await feed(hub, "hub_forged")
    assert await closed_with(ws) == 4401


@pytest.mark.parametrize(
    "hello",
    [
        "not json",
        json.dumps({"type": "hello"}),  # no token
        json.dumps({"type": "filter", "filter": {}}),  # not a hello first
        json.dumps({"type": "hello", "token": "x", "filter": {"levels": ["purple"]}}),
        json.dumps({"type": "hello", "token": "x", "filter": {"colour": "red"}}),
    ],
)
async def test_a_malformed_hello_is_closed_with_4400(hub: ServedHub, hello: str) -> None:
    if "token" in hello:
        hello = hello.replace('"x"', json.dumps(token(hub)))
    ws = await connect(f"ws://127.0.0.1:{hub.settings.http.port}/ws/situation")
    await ws.send(hello)
    assert await closed_with(ws) == 4400


async def test_a_vendor_asking_for_another_vendor_is_closed_with_4403(hub: ServedHub) -> None:
    tok = token(hub, "acme-ops", Role.VENDOR, vendor="acme")
    ws = await feed(hub, tok, filt={"vendor": "hydrox"})
    assert await closed_with(ws) == 4403


# -- who sees what --------------------------------------------------------------------------------


async def test_a_vendor_sees_only_its_own_devices_and_alerts(hub: ServedHub) -> None:
    fire(hub, "wl-00001", Level.RED)  # hydrox's
    own = fire(hub, "bin-00002", Level.YELLOW)  # acme's
    ws = await feed(hub, token(hub, "acme-ops", Role.VENDOR, vendor="acme"))
    snap = await frame(ws)
    assert {d["vendor"] for d in snap["devices"]} == {"acme"}
    assert len(snap["devices"]) == 30
    assert [a["id"] for a in snap["alerts"]] == [own]
    assert snap["cameras"] == []  # the city's cameras are not a vendor's business
    assert "hydrox" not in json.dumps(snap)

    now = int(time.time() * 1000)
    publish(hub, [wl_reading(8, 7.0, now), bin_reading(9, 55.0, now)])
    fire(hub, "wl-00009", Level.RED)
    delta, before = await until(ws, lambda f: ("bin-00009", "fill_level") in readings(f))
    await asyncio.sleep(0.3)  # the hydrox alert's frame, if it leaked, would be here by now
    fire(hub, "bin-00011", Level.BLUE)
    last, more = await until(ws, lambda f: bool(f.get("alerts")))
    await ws.close()
    for f in [*before, delta, *more, last]:
        assert "hydrox" not in json.dumps(f)
        assert all(r[0].startswith("bin-") for r in f["readings"])
    assert last["alerts"][0]["alert"]["device"] == "bin-00011"


async def test_filters_by_area_type_and_level(hub: ServedHub) -> None:
    tok = token(hub)
    by_area = await feed(hub, tok, filt={"area": "sh/xuhui"})
    by_type = await feed(hub, tok, filt={"types": ["water_level"]})
    by_level = await feed(hub, tok, filt={"levels": ["red"]})
    snaps = [await frame(ws) for ws in (by_area, by_type, by_level)]
    assert {d["id"] for d in snaps[0]["devices"]} == {f"bin-{i:05d}" for i in range(20, 30)}
    assert snaps[0]["cameras"] == [{**CAMERAS[1]}]
    assert {d["type"] for d in snaps[1]["devices"]} == {"water_level"}
    assert snaps[1]["cameras"] == []  # "camera" is not among the types
    assert len(snaps[2]["devices"]) == 40  # levels filter alerts only

    now = int(time.time() * 1000)
    publish(hub, [bin_reading(1, 10.0, now), bin_reading(21, 20.0, now), wl_reading(1, 2.0, now)])
    orange = fire(hub, "wl-00002", Level.ORANGE, area="sh/huangpu/bund")
    red = fire(hub, "bin-00022", Level.RED, area="sh/xuhui/street-1")

    f, before = await until(by_area, lambda f: any(a["alert_id"] == red for a in f["alerts"]))
    seen = [*before, f]
    got = {k for x in seen for k in readings(x)}
    assert ("bin-00021", "fill_level") in got
    assert not any(d.startswith("wl-") or d == "bin-00001" for d, _ in got)
    assert all(a["alert_id"] != orange for x in seen for a in x["alerts"])

    f, before = await until(by_type, lambda f: any(a["alert_id"] == orange for a in f["alerts"]))
    seen = [*before, f]
    assert {d for x in seen for d, _ in readings(x)} <= {f"wl-{i:05d}" for i in range(10)}
    assert all(a["alert_id"] != red for x in seen for a in x["alerts"])

    f, before = await until(by_level, lambda f: any(a["alert_id"] == red for a in f["alerts"]))
    assert all(a["alert_id"] != orange for x in [*before, f] for a in x["alerts"])
    # Leaving red is news to a red-only screen: the change from red to orange arrives.
    store = hub.server.config.app.state.alert_store  # type: ignore[attr-defined]
    store.apply(
        ConditionEvent(
            rule="r-bin-00022",
            source="device:bin-00022",
            kind="threshold",
            level=Level.ORANGE,
            firing=True,
            at_ms=int(time.time() * 1000),
            summary="lower",
            device="bin-00022",
            area="sh/xuhui/street-1",
        )
    )
    f, _ = await until(by_level, lambda f: bool(f["alerts"]))
    assert f["alerts"][0]["from_level"] == "red"
    assert f["alerts"][0]["to_level"] == "orange"
    for ws in (by_area, by_type, by_level):
        await ws.close()


# -- back-pressure --------------------------------------------------------------------------------

GATEWAY_DEVICES = 3000
PER_MESSAGE = 500


@pytest.fixture
def busy_hub(private_broker: Broker, tmp_path: Path) -> Iterator[ServedHub]:
    """A city of 3,000 devices reporting through gateways, so frames are big; screens may lag 8 frames."""
    settings = _settings(private_broker, tmp_path, FeedSettings(interval_ms=50, max_client_queue=8))
    registry = Registry(settings.registry)
    load_shipped(registry)
    registry.put_profiles(
        [
            DeviceProfile(
                id="feed-gw",
                name="gateway of many levels",
                type="water_level",
                domain="water",
                vendor="acme",
                metrics=(MetricSpec(name="water_level", unit="m", min=-5, max=60),),
                report_interval_s=60,
                codec={
                    "codec": "mapping",
                    "records": "/data",
                    "device": "/id",
                    "time": {"path": "/t", "format": "epoch_ms"},
                    "fields": [{"path": "/v", "metric": "water_level", "unit": "m"}],
                },
            )
        ]
    )
    registry.put_devices(
        [
            Device(
                id=f"gw-{i:05d}",
                vendor="acme",
                profile="feed-gw",
                lat=31.0 + i / 10_000,
                lon=121.0,
                area=f"sh/pudong/g-{i % 10}",
            )
            for i in range(GATEWAY_DEVICES)
        ]
    )
    registry.engine.dispose()
    served = ServedHub(settings)
    try:
        yield served
    finally:
        served.stop()


def _round(k: int) -> list[tuple[str, str]]:
    """Every gateway device once, at a time that tells when the round was published."""
    ts = int(time.time() * 1000)
    out = []
    for start in range(0, GATEWAY_DEVICES, PER_MESSAGE):
        data = [
            {"id": f"gw-{i:05d}", "t": ts, "v": (k % 50) / 10 + i / 10_000}
            for i in range(start, start + PER_MESSAGE)
        ]
        out.append((f"sensors/acme/gw-{start:05d}/up", json.dumps({"data": data})))
    return out


def _stuck_socket() -> socket.socket:
    """A client socket with a tiny receive buffer, so a screen that never reads fills up fast."""
    sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 4096)
    return sock


async def test_a_stuck_screen_is_closed_with_4408_and_others_keep_up(busy_hub: ServedHub) -> None:
    hub = busy_hub
    tok = token(hub)
    sock = _stuck_socket()
    sock.connect(("127.0.0.1", hub.settings.http.port))
    # max_queue=1: the client library stops reading its socket after one unread frame.
    stuck = await feed(hub, tok, sock=sock, max_queue=1, max_size=None)
    normal = await feed(hub, tok, max_size=None)
    assert (await frame(normal))["type"] == "snapshot"

    latencies: list[float] = []
    gaps: list[float] = []
    m = hub.settings.mqtt
    with Publisher(m.host, m.port, client_id="feed-load") as pub:
        deadline = time.monotonic() + 40
        last_frame = time.monotonic()
        k = 0
        while hub.http.get("/api/v1/feed/status").json()["closed_slow"] == 0:
            assert time.monotonic() < deadline, "the stuck screen was never closed"
            pub.send(_round(k))
            k += 1
            # Drain the normal screen between rounds, timing each reading from its publish time.
            while True:
                try:
                    f = json.loads(await asyncio.wait_for(normal.recv(), 0.05))
                except TimeoutError:
                    break
                now = time.monotonic()
                gaps.append(now - last_frame)
                last_frame = now
                wall = time.time() * 1000
                latencies.extend(wall - r[3] for r in f.get("readings", []))
    status = hub.http.get("/api/v1/feed/status").json()
    assert status["closed_slow"] == 1
    assert status["screens"] == 1  # the normal screen is still on

    # The stuck screen finally reads: everything queued before the close, then 4408.
    code = await closed_with(stuck, within=20)
    assert code == 4408
    assert stuck.close_reason == "too slow: reconnect with since"

    # The normal screen kept receiving all along, promptly.
    assert len(latencies) > 1000
    latencies.sort()
    p95 = latencies[int(len(latencies) * 0.95)]
    assert p95 < 1000, f"p95 latency {p95:.0f} ms"
    assert max(gaps) < 2.0, f"the normal screen waited {max(gaps):.2f} s for a frame"
    await normal.close()
