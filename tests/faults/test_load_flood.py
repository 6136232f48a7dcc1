"""A flooding device and devices with wrong clocks, through a real Mosquitto into a real served hub."""

from __future__ import annotations

import json
import time
from collections.abc import Iterator
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import pytest

from devices.loader import load_shipped
from devices.profiles import Device
from devices.registry import Registry
from hub.settings import HttpSettings, HubSettings, IngestSettings, MqttSettings
from ingest.batch import Quality
from tests.conftest import Broker, free_port
from tests.hub.conftest import ServedHub
from tests.publisher import Publisher

pytestmark = [pytest.mark.broker, pytest.mark.slow]

CALM = [f"calm-{i}" for i in range(5)]
NOISE_MS = 60_000  # acme-noise: one report a minute expected


@pytest.fixture
def limited_hub(private_broker: Broker, tmp_path: Path) -> Iterator[ServedHub]:
    """A hub with the rate limit on (10x over 10 intervals) and a few noise meters."""
    data = tmp_path / "hub"
    data.mkdir()
    settings = HubSettings(
        data_dir=data,
        mqtt=MqttSettings(embedded=False, host=private_broker.host, port=private_broker.port),
        http=HttpSettings(port=free_port()),
        # A clock behind is confirmed after 1 s of steady lag here (20 s by default).
        ingest=IngestSettings(
            rate_limit_factor=10, rate_limit_window_intervals=10, skew_confirm_s=1
        ),
    )
    registry = Registry(settings.registry)
    load_shipped(registry)
    names = ["flood-1", "behind-1", "ahead-1", *CALM]
    registry.put_devices(
        [Device(id=d, vendor="acme", profile="acme-noise", area="sh/huangpu") for d in names]
    )
    registry.engine.dispose()
    served = ServedHub(settings)
    try:
        yield served
    finally:
        served.stop()


def _noise(device: str, ts_ms: int) -> tuple[str, str]:
    return f"sensors/acme/{device}/up", json.dumps({"ts": ts_ms, "laeq": 55.0, "lamax": 70.0})


def _iso(ms: int) -> str:
    return datetime.fromtimestamp(ms / 1000, tz=UTC).isoformat()


def _readings(hub: ServedHub, device: str, start_ms: int, end_ms: int) -> dict[str, Any]:
    r = hub.http.get(
        f"/api/v1/devices/{device}/readings",
        params={"metric": "noise_laeq", "start": _iso(start_ms), "end": _iso(end_ms)},
    )
    r.raise_for_status()
    body: dict[str, Any] = r.json()
    return body


def _active(hub: ServedHub, rule: str, timeout: float = 15) -> list[dict[str, Any]]:
    """Active alerts of ``rule``, once the alert store has any (the applier writes them shortly)."""
    deadline = time.monotonic() + timeout
    while True:
        r = hub.http.get("/api/v1/alerts", params={"active": True, "limit": 500})
        r.raise_for_status()
        found = [a for a in r.json()["items"] if a["rule"] == rule]
        if found or time.monotonic() > deadline:
            return found
        time.sleep(0.2)


def _settle(hub: ServedHub, want_messages: int, timeout: float = 30) -> dict[str, Any]:
    # Messages are counted when decoded; the last of them may not be taken into a batch yet while
    # nothing is in flight: settled is also the stored count unchanged over one more poll.
    deadline = time.monotonic() + timeout
    last_stored = -1
    while (
        (h := hub.health())["messages"] < want_messages  # type: ignore[operator]
        or h["in_flight"]
        or h["readings_stored"] != last_stored
    ):
        assert time.monotonic() < deadline, h
        last_stored = h["readings_stored"]  # type: ignore[assignment]
        time.sleep(0.1)
    return h


def test_a_device_flooding_at_50x_is_limited_flagged_and_dead_lettered(
    limited_hub: ServedHub, private_broker: Broker
) -> None:
    hub = limited_hub
    now = int(time.time() * 1000)
    window = 10 * NOISE_MS
    start = (now // window - 3) * window  # three whole rate-limit windows, in the past
    step = NOISE_MS // 50  # 50x the expected rate
    flood = [_noise("flood-1", start + i * step) for i in range(1500)]
    calm = [_noise(d, start + i * NOISE_MS) for i in range(30) for d in CALM]
    with Publisher(private_broker.host, private_broker.port) as pub:
        # Interleaved, as on a real network: the calm devices' messages share the flood's batches.
        for k in range(10):
            pub.send(flood[150 * k : 150 * (k + 1)] + calm[15 * k : 15 * (k + 1)])
    health = _settle(hub, len(flood) + len(calm))
    # 100 reports (two readings each) per 10-minute window are kept: 3 windows.
    kept = 3 * 100
    assert health["rate_limited"] == 2 * (1500 - kept)
    end = start + 3 * window
    assert len(_readings(hub, "flood-1", start, end)["ts"]) == kept
    # The first 100 reports of each window are the ones kept.
    kept_ts = _readings(hub, "flood-1", start, start + window)["ts"]
    assert kept_ts[0] == _iso(start).replace("+00:00", "Z")
    assert kept_ts[-1] == _iso(start + 99 * step).replace("+00:00", "Z")
    for d in CALM:  # the other devices lose nothing
        assert len(_readings(hub, d, start, end)["ts"]) == 30
    # Dead letters a vendor can read, counting every rejected reading: one per device every
    # couple of seconds at most, not one per message (written even when no more batches come).
    deadline = time.monotonic() + 10
    while True:
        r = hub.http.get("/api/v1/rejects", params={"device": "flood-1", "reason": "rate_limited"})
        r.raise_for_status()
        letters = r.json()["items"]
        rejected = sum(json.loads(x["payload"])["rejected_readings"] for x in letters)
        if rejected == health["rate_limited"] or time.monotonic() > deadline:
            break
        time.sleep(0.2)
    assert rejected == health["rate_limited"]
    assert 1 <= len(letters) <= 10
    assert all("expects one report every 60 s" in x["detail"] for x in letters)
    # Flagged once: one alert for the device, whatever the number of batches it flooded in.
    flagged = _active(hub, "ingest.rate_limit")
    assert [(a["device"], a["source"]) for a in flagged] == [("flood-1", "ingest:flood-1")]
    assert flagged[0]["area"] == "sh/huangpu"
    assert not [a for a in _active(hub, "ingest.rate_limit", 0) if a["device"] != "flood-1"]


def test_clocks_two_hours_off_are_flagged_and_counted_not_misfiled_quietly(
    limited_hub: ServedHub, private_broker: Broker
) -> None:
    hub = limited_hub
    two_h = 2 * 3600_000
    skew = int(Quality.CLOCK_SKEW)
    with Publisher(private_broker.host, private_broker.port) as pub:
        sent = 0
        # Ahead: flagged per reading by the decoder at once.
        now = int(time.time() * 1000)
        sent += pub.send([_noise("ahead-1", now + two_h)])
        # Behind: three messages more than the confirmation time apart, each two hours old.
        for _ in range(3):
            now = int(time.time() * 1000)
            sent += pub.send([_noise("behind-1", now - two_h), _noise("calm-0", now)])
            _settle(hub, sent)
            time.sleep(1.2)
    health = _settle(hub, sent)
    t = int(time.time() * 1000)
    ahead = _readings(hub, "ahead-1", t, t + 3 * 3600_000)
    assert [q & skew for q in ahead["quality"]] == [skew]
    behind = _readings(hub, "behind-1", t - 3 * 3600_000, t)
    # The first message alone cannot be told from one late delivery; from the second on it can.
    assert [q & skew for q in behind["quality"]] == [0, skew, skew]
    calm = _readings(hub, "calm-0", t - 60_000, t + 60_000)
    assert [q & skew for q in calm["quality"]] == [0, 0, 0]
    # Counted (two metrics per reading flagged: 1 message ahead, 2 behind).
    assert health["clock_skewed"] == 2 * 3
    alerts = _active(hub, "ingest.clock_skew")
    deadline = time.monotonic() + 10
    while len(alerts) < 2 and time.monotonic() < deadline:
        alerts = _active(hub, "ingest.clock_skew")
    by_device = {a["device"]: a for a in alerts}
    assert set(by_device) == {"ahead-1", "behind-1"}
    assert "2.0 h ahead of" in by_device["ahead-1"]["summary"]
    assert "2.0 h behind" in by_device["behind-1"]["summary"]
