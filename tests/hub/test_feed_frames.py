"""The feed's pure parts: coalescing, merging, filters, and a screen's bounded queue."""

from __future__ import annotations

import asyncio
import json

import numpy as np
import pytest

from alerts.events import Level
from alerts.lifecycle import Alert, State
from devices.access import Principal, Role
from hub.feed_clients import FeedClient
from hub.feed_devices import FeedDevices, in_area
from hub.feed_frames import DeltaFrame, Filter, FilterError, FilterWire, Readings, SnapshotFrame


def _devices() -> FeedDevices:
    n = 4
    return FeedDevices(
        version=0,
        ids=np.array(["a", "b", "c", ""], dtype=object),
        active=np.array([True, True, True, False]),
        vendor=np.array(["acme", "acme", "hydrox", ""], dtype=object),
        type=np.array(["bin_fill", "bin_fill", "water_level", ""], dtype=object),
        area=np.array(["sh/huangpu/x", "sh/xuhui/y", "sh/huangpu", ""]),
        lat=np.full(n, np.nan),
        lon=np.full(n, np.nan),
        interval_ms=np.full(n, 60_000.0),
        metrics=np.array(["level", "battery"], dtype=object),
    )


def _readings(rows: list[tuple[int, int, int, float]]) -> Readings:
    d, m, t, v = zip(*rows, strict=True)
    return Readings(
        np.array(d, np.int32), np.array(m, np.int16), np.array(t, np.int64), np.array(v)
    )


def _frame(seq: int, rows: list[tuple[int, int, int, float]], alerts: int = 0) -> DeltaFrame:
    return DeltaFrame.build(
        seq=seq,
        ts=seq,
        readings=_readings(rows),
        alerts=[{"id": f"{seq}-{i}"} for i in range(alerts)],
        status=[],
        cameras=[],
        devices=_devices(),
    )


def test_latest_keeps_the_newest_reading_per_series_and_the_last_of_equal_times() -> None:
    r = _readings(
        [(1, 0, 10, 1.0), (0, 0, 5, 2.0), (1, 0, 30, 3.0), (1, 0, 20, 4.0), (0, 0, 5, 5.0)]
    )
    latest = r.latest()
    assert latest.rows(_devices()) == [("a", "level", 5.0, 5), ("b", "level", 3.0, 30)]


def test_a_merged_frame_covers_its_seqs_coalesces_readings_and_keeps_every_alert() -> None:
    frames = [
        _frame(11, [(0, 0, 1, 1.0), (1, 1, 1, 9.0)], alerts=1),
        _frame(12, [(0, 0, 2, 2.0)], alerts=2),
        _frame(13, [(0, 0, 3, 3.0)]),
    ]
    merged = DeltaFrame.merge(frames, _devices())
    body = json.loads(merged.text)
    assert body["first_seq"] == 11
    assert body["seq"] == 13
    assert body["readings"] == [["a", "level", 3.0, 3], ["b", "battery", 9.0, 1]]
    assert [a["id"] for a in body["alerts"]] == ["11-0", "12-0", "12-1"]
    assert "first_seq" not in json.loads(frames[0].text)
    assert list(json.loads(frames[0].text))[:4] == ["type", "seq", "ts", "readings"]


def test_area_paths_match_themselves_and_below_only() -> None:
    areas = np.array(["sh", "sh/huangpu", "sh/huangpu/bund", "sh/huangpuqu", ""])
    assert in_area(areas, "sh/huangpu").tolist() == [False, True, True, False, False]
    assert in_area(areas, "sh/huangpu/").tolist() == [False, True, True, False, False]


STAFF = Principal("ops", Role.OFFICER)
ACME = Principal("acme-ops", Role.VENDOR, vendor="acme")


def test_a_vendor_filter_is_forced_to_its_own_vendor() -> None:
    assert Filter.parse(None, ACME).scope.vendor == "acme"
    assert Filter.parse(FilterWire(vendor="acme"), ACME).scope.vendor == "acme"
    with pytest.raises(FilterError) as refused:
        Filter.parse(FilterWire(vendor="hydrox"), ACME)
    assert refused.value.code == 4403
    assert Filter.parse(FilterWire(vendor="hydrox"), STAFF).scope.vendor == "hydrox"


def test_unknown_levels_are_refused_and_equal_filters_are_one_stream() -> None:
    with pytest.raises(FilterError) as refused:
        Filter.parse(FilterWire(levels=["purple"]), STAFF)
    assert refused.value.code == 4400
    one = Filter.parse(FilterWire(types=["b", "a"], area="/sh/"), STAFF)
    two = Filter.parse(FilterWire(types=["a", "b"], area="sh"), STAFF)
    assert one == two
    assert hash(one) == hash(two)


def _alert(level: Level, device: str | None, area: str | None, vendor: str | None) -> Alert:
    return Alert(
        id=1,
        rule="r",
        source="s",
        kind="threshold",
        level=level,
        state=State.RAISED,
        firing=True,
        summary="",
        first_ms=0,
        last_ms=0,
        updated_ms=0,
        seq=1,
        state_ms=0,
        device=device,
        area=area,
        vendor=vendor,
    )


def test_alert_filters_by_level_before_or_after_area_type_and_vendor() -> None:
    devices = _devices()
    red_only = Filter.parse(FilterWire(levels=["red"]), STAFF)
    assert red_only.wants_alert(_alert(Level.RED, "a", None, "acme"), devices)
    assert not red_only.wants_alert(_alert(Level.ORANGE, "a", None, "acme"), devices)
    assert red_only.wants_alert(_alert(Level.ORANGE, "a", None, "acme"), devices, "red")
    huangpu = Filter.parse(FilterWire(area="sh/huangpu"), STAFF)
    assert huangpu.wants_alert(_alert(Level.RED, "a", None, "acme"), devices)  # device's area
    assert not huangpu.wants_alert(_alert(Level.RED, "b", None, "acme"), devices)
    assert not huangpu.wants_alert(_alert(Level.RED, "a", "sh/xuhui", "acme"), devices)
    assert huangpu.wants_alert(_alert(Level.RED, None, None, None), devices)  # city-wide
    bins = Filter.parse(FilterWire(types=["bin_fill"]), STAFF)
    assert not bins.wants_alert(_alert(Level.RED, "c", None, "hydrox"), devices)
    assert Filter.parse(None, ACME).wants_alert(_alert(Level.RED, "a", None, "acme"), devices)
    assert not Filter.parse(None, ACME).wants_alert(_alert(Level.RED, None, None, None), devices)


async def test_a_screen_behind_gets_shared_frames_then_merged_then_is_too_slow() -> None:
    devices = _devices()
    client = FeedClient(
        "ops", max_queue=5, merge_after=2, merger=lambda fs: DeltaFrame.merge(fs, devices)
    )
    snap = SnapshotFrame(10, '{"type":"snapshot"}')
    f11, f12, f13 = (_frame(s, [(0, 0, s, float(s))]) for s in (11, 12, 13))
    client.restart([snap, f11, f12])
    plan = client.plan()
    assert plan == [snap.text, f11.text, f12.text]  # the shared texts, as they are
    for f in (f11, f12, f13):
        client.offer(f)
    plan = client.plan()
    assert plan == [[f11, f12, f13]]  # more than merge_after: to be merged by the sender
    sent: list[str] = []
    got = asyncio.Event()

    async def send(text: str) -> None:
        sent.append(text)
        got.set()

    pump = asyncio.create_task(client.pump(send))
    for f in (f11, f12, f13):
        client.offer(f)
    await asyncio.wait_for(got.wait(), 5)
    pump.cancel()
    assert json.loads(sent[0])["first_seq"] == 11
    assert client.merged == 1
    for s in range(14, 20):
        client.offer(_frame(s, [(0, 0, s, 1.0)]))
    assert client.too_slow.is_set()
    assert client.queued == 0
