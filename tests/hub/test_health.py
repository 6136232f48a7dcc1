"""Device health: devices publishing through the real broker, then per-device and per-vendor health.

The served hub's city (tests/hub/conftest.py): 30 acme bins (report every 1800 s; fill, temperature,
battery), 10 hydrox water levels (every 300 s; level, battery, signal), one decommissioned acme smoke
detector. Then a vendor of 7,500 devices on the components directly, for the vectorised path.
"""

from __future__ import annotations

import json
import time
from collections import Counter
from pathlib import Path

import httpx
import numpy as np
import pytest
from numpy.typing import NDArray

from devices.access import Role
from devices.loader import load_shipped
from devices.profiles import Device
from devices.registry import Registry
from devices.users import UserStore
from hub.health import DeviceState, HealthReport
from hub.state import LiveState
from ingest.batch import ReadingBatch
from ingest.codecs.base import DecodeError, DecodeReason, RawMessage
from ingest.columns import Rejection
from ingest.deadletter import DeadLetterStore
from ingest.store.filestore import FileStore
from tests.hub.conftest import ServedHub
from tests.publisher import Publisher

MIN = 60_000


def _bin(ts: int, *, bat: float = 90) -> str:
    """A full report of an acme bin: fill level, temperature, battery."""
    return json.dumps({"ts": ts, "fill": 40, "temp": 20, "bat": bat})


def _wl(ts_ms: int, *, signal: float) -> str:
    return json.dumps(
        [
            {"bn": "", "bt": ts_ms / 1000, "n": "water_level", "u": "cm", "v": 180},
            {"n": "battery", "v": 95},
            {"n": "signal", "v": signal},
        ]
    )


def _publish_city(hub: ServedHub) -> int:
    """The scenario; returns the number of readings it stores."""
    now = int(time.time() * 1000)
    up = "sensors/acme/{}/up"
    msgs: list[tuple[str, str | bytes]] = [
        # Two full reports in the hour: the expected rate.
        (up.format("bin-00000"), _bin(now - 40 * MIN)),
        (up.format("bin-00000"), _bin(now - 10 * MIN)),
        # One fill level only: a sixth of what is expected.
        (up.format("bin-00001"), json.dumps({"ts": now - 5 * MIN, "fill": 40})),
        # Last heard two hours ago: past 3 x 1800 s.
        (up.format("bin-00002"), _bin(now - 120 * MIN)),
        # Healthy rate, battery at 12 %.
        (up.format("bin-00003"), _bin(now - 45 * MIN, bat=13)),
        (up.format("bin-00003"), _bin(now - 15 * MIN, bat=12)),
        # Healthy rate, but two payloads it cannot get right.
        (up.format("bin-00004"), _bin(now - 35 * MIN)),
        (up.format("bin-00004"), _bin(now - 5 * MIN)),
        (up.format("bin-00004"), b"{fill: 40}"),
        (up.format("bin-00004"), b'{"ts": 1, "fill": 4'),
        # Reports fine, then says goodbye on its status topic.
        (up.format("bin-00005"), _bin(now - 30 * MIN)),
        (up.format("bin-00005"), _bin(now - 2 * MIN)),
        # Not registered.
        (up.format("ghost-00001"), _bin(now)),
    ]
    # Water levels: a report every 5 minutes for the last hour (12 x 3 readings: the expected 36).
    for k in range(12):
        ts = now - k * 5 * MIN - MIN
        msgs.append(("sensors/hydrox/wl-00000/up", _wl(ts, signal=-120 if k == 0 else -90)))
        msgs.append(("sensors/hydrox/wl-00001/up", _wl(ts, signal=-80)))
    broker = hub.settings.mqtt
    with Publisher(broker.host, broker.port) as pub:
        pub.send(msgs)
        pub.send(
            [
                ("sensors/acme/bin-00005/status", "offline"),
                ("sensors/acme/bin-00006/status", "online"),  # online, and never a reading
            ]
        )
    return 6 + 1 + 3 + 6 + 6 + 6 + 2 * 36


def _wait(hub: ServedHub, stored: int) -> None:
    hub.wait_stored(stored)
    deadline = time.monotonic() + 20
    while True:
        h = hub.health()
        b5 = hub.http.get("/api/v1/devices/bin-00005/health").json()
        b6 = hub.http.get("/api/v1/devices/bin-00006/health").json()
        if h["dead_letters"] >= 3 and b5["state_from"] == "status" and b6["state"] == "online":  # type: ignore[operator]
            return
        assert time.monotonic() < deadline, (h, b5, b6)
        time.sleep(0.05)


def _client(hub: ServedHub, name: str, role: Role, vendor: str | None = None) -> httpx.Client:
    password = f"{name}-password-1"
    users = UserStore(hub.settings.registry)
    users.create_user(name, role, vendor=vendor, password=password)
    users.engine.dispose()
    return hub.client(name, password)


@pytest.fixture
def city(hub: ServedHub) -> ServedHub:
    """The served hub after the scenario was published and taken in."""
    _wait(hub, _publish_city(hub))
    return hub


def test_device_health_from_the_broker(city: ServedHub) -> None:
    get = city.http.get

    ok = get("/api/v1/devices/bin-00000/health").json()
    assert (ok["state"], ok["state_from"]) == ("online", "last_seen")
    assert (ok["readings_1h"], ok["expected_1h"], ok["rate_ratio"]) == (6, 6.0, 1.0)
    assert (ok["report_interval_s"], ok["offline_after_s"]) == (1800.0, 5400.0)
    assert ok["problems"] == []
    assert ok["battery"]["value"] == 90.0
    assert ok["battery"]["unit"] == "%"
    assert ok["battery"]["low"] is False
    assert ok["signal"] is None  # the bin profile names no signal metric

    water = get("/api/v1/devices/wl-00001/health").json()
    assert (water["state"], water["readings_1h"], water["expected_1h"]) == ("online", 36, 36.0)
    assert water["rate_ratio"] == 1.0
    assert water["signal"]["value"] == -80.0
    assert water["signal"]["low"] is False
    assert water["problems"] == []

    slow = get("/api/v1/devices/bin-00001/health").json()
    assert slow["state"] == "online"
    assert slow["readings_1h"] == 1
    assert slow["problems"] == ["slow"]

    silent = get("/api/v1/devices/bin-00002/health").json()
    assert (silent["state"], silent["state_from"]) == ("offline", "last_seen")
    assert silent["readings_1h"] == 0
    assert "offline" in silent["problems"]
    assert silent["last_seen"] is not None

    never = get("/api/v1/devices/bin-00020/health").json()
    assert (never["state"], never["last_seen"], never["problems"]) == (
        "never_seen",
        None,
        ["never_seen"],
    )

    low = get("/api/v1/devices/bin-00003/health").json()
    assert low["battery"]["value"] == 12.0
    assert low["battery"]["low"] is True
    assert low["problems"] == ["low_battery"]

    weak = get("/api/v1/devices/wl-00000/health").json()
    assert weak["signal"]["value"] == -120.0  # the newest report
    assert weak["signal"]["low"] is True
    assert weak["problems"] == ["weak_signal"]

    said_bye = get("/api/v1/devices/bin-00005/health").json()
    assert (said_bye["state"], said_bye["state_from"]) == ("offline", "status")
    assert said_bye["readings_1h"] == 6

    only_status = get("/api/v1/devices/bin-00006/health").json()
    assert (only_status["state"], only_status["state_from"]) == ("online", "status")
    assert only_status["problems"] == ["slow"]  # online, but not one reading

    gone = get("/api/v1/devices/sm-00001/health").json()
    assert (gone["state"], gone["state_from"], gone["problems"]) == ("inactive", None, [])


def test_rejects_show_rate_and_reasons(city: ServedHub) -> None:
    h = city.http.get("/api/v1/devices/bin-00004/health").json()
    assert h["state"] == "online"
    assert (h["readings_1h"], h["rejects_1h"], h["rejects_24h"]) == (6, 2, 2)
    assert h["reject_rate"] == 0.25  # 2 rejected / (2 + 6 stored)
    assert h["reject_reasons_24h"] == {"malformed_json": 2}
    assert h["problems"] == ["rejects"]
    assert [r["reason"] for r in h["last_rejects"]] == ["malformed_json", "malformed_json"]
    assert h["last_rejects"][0]["payload"] == '{"ts": 1, "fill": 4'  # newest first
    assert h["last_rejects"][0]["detail"].startswith("payload is not JSON the hub can read")


def test_vendor_health_sums_match_the_devices(city: ServedHub) -> None:
    v = city.http.get("/api/v1/vendors/acme/health", params={"limit": 100}).json()
    assert v["devices"] == 31
    assert (v["online"], v["offline"], v["never_seen"], v["inactive"]) == (5, 2, 23, 1)
    assert v["online"] + v["offline"] + v["never_seen"] + v["inactive"] == v["devices"]
    # Slow: bin-00001 and bin-00006, and bin-00002, silent for two hours.
    assert (v["low_battery"], v["weak_signal"], v["slow"]) == (1, 0, 3)
    assert (v["with_rejects_24h"], v["rejects_24h"], v["unregistered_senders_24h"]) == (1, 3, 1)
    assert v["top_reasons"] == [
        {"reason": "malformed_json", "rejects": 2, "devices": 1},
        {"reason": "unknown_device", "rejects": 1, "devices": 1},
    ]
    worst = v["worst"]
    assert worst["total"] == 6 + 23  # six sick devices and the never-seen ones
    assert [d["device"] for d in worst["items"][:6]] == [
        "bin-00002",  # offline and, so, slow
        "bin-00005",  # offline
        "bin-00004",  # rejects
        "bin-00006",  # slow, no reading at all
        "bin-00001",  # slow
        "bin-00003",  # low battery
    ]
    assert {d["problems"][0] for d in worst["items"][6:]} == {"never_seen"}

    # The sum-up agrees with each device's own health.
    states: Counter[str] = Counter()
    problems: Counter[str] = Counter()
    for i in range(30):
        d = city.http.get(f"/api/v1/devices/bin-{i:05d}/health").json()
        states[d["state"]] += 1
        problems.update(d["problems"])
    states[city.http.get("/api/v1/devices/sm-00001/health").json()["state"]] += 1
    assert states == {"online": 5, "offline": 2, "never_seen": 23, "inactive": 1}
    assert (problems["low_battery"], problems["slow"], problems["rejects"]) == (1, 3, 1)
    assert problems["offline"] == v["offline"]

    page = city.http.get("/api/v1/vendors/acme/health", params={"offset": 2, "limit": 2}).json()
    assert [d["device"] for d in page["worst"]["items"]] == ["bin-00004", "bin-00006"]

    water = city.http.get("/api/v1/vendors/hydrox/health").json()
    assert (water["devices"], water["online"], water["never_seen"], water["weak_signal"]) == (
        10,
        2,
        8,
        1,
    )
    assert water["slow"] == 0


def test_vendors_see_only_their_own_health(city: ServedHub) -> None:
    with (
        _client(city, "acme-ops", Role.VENDOR, "acme") as acme,
        _client(city, "duty", Role.OFFICER) as officer,
    ):
        assert acme.get("/api/v1/vendors/acme/health").json()["devices"] == 31
        assert acme.get("/api/v1/devices/bin-00004/health").json()["rejects_24h"] == 2
        for url in ("/api/v1/vendors/hydrox/health", "/api/v1/devices/wl-00000/health"):
            r = acme.get(url)
            assert r.status_code == 404, url
            assert r.headers["content-type"] == "application/problem+json"
        assert officer.get("/api/v1/vendors/hydrox/health").json()["weak_signal"] == 1
        assert officer.get("/api/v1/devices/bin-00002/health").json()["state"] == "offline"
    assert city.http.get("/api/v1/vendors/nobody/health").status_code == 404
    assert city.http.get("/api/v1/devices/nope-1/health").status_code == 404
    assert city.anonymous.get("/api/v1/vendors/acme/health").status_code == 401


# -- thousands of devices, on the components ----------------------------------------------------


class CountingStore(FileStore):
    """The real store, counting grouped count queries (health must make one, not one per device)."""

    calls = 0

    def counts_since(
        self, since_ms: int, device: int | None = None
    ) -> tuple[NDArray[np.int32], NDArray[np.int64]]:
        self.calls += 1
        return super().counts_since(since_ms, device)


def test_vendor_health_of_7500_devices_is_one_pass(tmp_path: Path) -> None:
    n = 7500
    registry = Registry(f"sqlite:///{tmp_path / 'hub.db'}")
    load_shipped(registry)
    registry.put_devices(
        [Device(id=f"bin-{i:05d}", vendor="acme", profile="acme-bin") for i in range(n)]
    )
    now = int(time.time() * 1000)
    metrics = registry.interner.metrics
    fill, temp, bat = metrics["fill_level"], metrics["temperature"], metrics["battery"]
    index = np.array([registry.interner.devices[f"bin-{i:05d}"].index for i in range(n)])
    i = np.arange(n)
    reporting, silent = i % 3 == 0, i % 3 == 1  # i % 3 == 2: never seen
    # Reporting devices: two full reports in the hour (6 readings); battery 10 % on every 5th.
    rep = index[reporting]
    battery = np.where(i[reporting] % 5 == 0, 10.0, 90.0)
    device = np.concatenate([np.repeat(rep, 6), np.repeat(index[silent], 3)])
    metric = np.concatenate(
        [np.tile([fill, temp, bat] * 2, len(rep)), np.tile([fill, temp, bat], silent.sum())]
    )
    ts = np.concatenate(
        [
            np.tile([now - 40 * MIN] * 3 + [now - 10 * MIN] * 3, len(rep)),
            np.full(3 * silent.sum(), now - 120 * MIN),
        ]
    )
    value = np.concatenate(
        [
            np.column_stack(
                [np.full((len(rep), 2), 50.0), battery, np.full((len(rep), 2), 50.0), battery]
            ).ravel(),
            np.full(3 * silent.sum(), 50.0),
        ]
    )
    batch = ReadingBatch.from_columns(device, metric, ts, value)
    state = LiveState(registry.interner.device_count, registry.interner.metric_count)
    state.apply(batch)
    store = CountingStore(tmp_path / "readings.duckdb")
    store.write(batch)
    dead = DeadLetterStore(registry.engine.url.render_as_string(hide_password=False))
    rejected = [f"bin-{k:05d}" for k in range(0, n, 100)]
    dead.write(
        [
            Rejection(
                RawMessage(
                    topic=f"sensors/acme/{d}/up",
                    payload=b"{",
                    vendor="acme",
                    device_id=d,
                    received_ms=now - MIN,
                ),
                DecodeError(DecodeReason.MALFORMED_JSON, "payload is not JSON"),
            )
            for d in rejected
        ]
    )
    health = HealthReport(registry, state, store, dead)
    try:
        started = time.perf_counter()
        v = health.vendor("acme", now, limit=10)
        elapsed = time.perf_counter() - started

        assert store.calls == 1
        assert v.devices == n  # the shipped data registers no device
        assert v.online == int(reporting.sum())
        assert v.offline == int(silent.sum())
        assert v.never_seen == n - v.online - v.offline
        assert v.low_battery == int((reporting & (i % 5 == 0)).sum())
        assert v.with_rejects_24h == len(rejected)
        assert v.top_reasons[0].reason == "malformed_json"
        assert v.top_reasons[0].devices == len(rejected)
        # Silent ones are offline (and slow); reporting ones with rejects come next.
        assert v.slow == v.offline
        assert v.worst.state_of(0) is DeviceState.OFFLINE
        assert v.worst_total == n - int((reporting & (i % 5 != 0) & (i % 100 != 0)).sum())
        print(f"vendor health of {n} devices: {elapsed:.2f} s")  # a figure, not a test
    finally:
        store.close()
        registry.engine.dispose()
        dead.engine.dispose()
