"""End to end: a station registered through the API sends SL 651 frames over real TCP to a running hub."""

from __future__ import annotations

import datetime as dt
import socket
import time
from collections.abc import Iterator
from pathlib import Path
from zoneinfo import ZoneInfo

import pytest

from hub.settings import HttpSettings, HubSettings, MqttSettings
from ingest.sl651 import frame as fr
from ingest.sl651 import station as sta
from ingest.sl651.settings import Sl651Settings
from tests.conftest import Broker, free_port
from tests.hub.conftest import ServedHub

STATION = "0061500101"
ZONE = ZoneInfo("Asia/Shanghai")


@pytest.fixture
def hub(private_broker: Broker, tmp_path: Path) -> Iterator[ServedHub]:
    data = tmp_path / "hub"
    data.mkdir()
    settings = HubSettings(
        data_dir=data,
        mqtt=MqttSettings(embedded=False, host=private_broker.host, port=private_broker.port),
        http=HttpSettings(port=free_port()),
        sl651=Sl651Settings(enabled=True, port=free_port()),
    )
    served = ServedHub(settings)
    try:
        yield served
    finally:
        served.stop()


def read_frame(sock: socket.socket, timeout: float = 10) -> bytes:
    sock.settimeout(timeout)
    reader = fr.FrameReader()
    while True:
        data = sock.recv(4096)
        assert data, "the hub closed the connection"
        frames, _ = reader.feed(data)
        if frames:
            return frames[0]


def test_station_frames_reach_the_store_and_the_readings_api(hub: ServedHub) -> None:
    r = hub.http.post(
        "/api/v1/devices",
        json={"id": STATION, "vendor": "hydrotel", "profile": "sl651-river", "name": "Xi River"},
    )
    assert r.status_code == 201, r.text
    observed = dt.datetime.now(ZONE).replace(second=0, microsecond=0, tzinfo=None)
    observed -= dt.timedelta(minutes=10)
    report = sta.report(
        station=STATION,
        function=fr.Function.TIMED,
        serial=301,
        observed=observed,
        category=sta.RIVER,
        readings=[sta.Reading(0x39, 3.215, 3, 4), sta.Reading(0x38, 12.6, 2, 2)],
    )
    bad = bytearray(report)
    bad[-2] ^= 0xFF
    with socket.create_connection(("127.0.0.1", hub.settings.sl651.port), timeout=10) as sock:
        # A corrupted copy and the good report in one write, then the good one again.
        sock.sendall(bytes(bad) + report)
        reply = read_frame(sock)
        sock.sendall(report)
        again = read_frame(sock)
    for frame in (reply, again):
        head = fr.header(frame)
        assert head.downlink
        assert (head.station, head.function, head.end) == (STATION, 0x32, fr.EOT)
        assert frame[14:16] == (301).to_bytes(2, "big")  # the report's serial, echoed
        assert fr.crc16(frame[:-2]) == int.from_bytes(frame[-2:], "big")

    hub.wait_stored(2)
    start = (observed - dt.timedelta(minutes=1)).replace(tzinfo=ZONE).isoformat()
    got = hub.http.get(
        f"/api/v1/devices/{STATION}/readings", params={"metric": "water_level", "start": start}
    )
    assert got.status_code == 200, got.text
    body = got.json()
    assert body["value"] == [3.215]  # sent twice, stored once
    assert body["unit"] == "m"
    ts = dt.datetime.fromisoformat(body["ts"][0].replace("Z", "+00:00"))
    assert ts == observed.replace(tzinfo=ZONE)
    volts = hub.http.get(
        f"/api/v1/devices/{STATION}/readings", params={"metric": "supply_voltage", "start": start}
    ).json()
    assert volts["value"] == [12.6]
    health = hub.health()
    assert health["readings_stored"] == 2
    sl651 = health["sl651"]
    assert isinstance(sl651, dict)
    assert sl651["frames"] == 3
    assert sl651["confirmations"] == 2
    assert sl651["bad_checksums"] == 1

    deadline = time.monotonic() + 10
    while True:
        rejects = hub.http.get("/api/v1/rejects", params={"device": STATION}).json()
        if rejects["items"]:
            break
        assert time.monotonic() < deadline, "the corrupted frame left no dead letter"
        time.sleep(0.05)
    assert [d["reason"] for d in rejects["items"]] == ["bad_checksum"]
