"""The snapshot's device list: spliced from cached heads and one encoding of states, it must read as
plain rows would."""

from __future__ import annotations

import json
from typing import Any

import numpy as np

from hub.feed_devices import FeedDevices, Scope
from hub.feed_frames import Filter
from hub.feed_snapshot import capture, device_parts
from hub.state import LiveState
from ingest.batch import ReadingBatch

NOW = 1_800_000_000_000


def _devices(ids: list[str]) -> FeedDevices:
    n = len(ids)
    return FeedDevices(
        version=0,
        ids=np.array(ids, dtype=object),
        active=np.array([bool(i) for i in ids]),
        vendor=np.array(["acme", "hydrox", "acme", "acme"], dtype=object),
        type=np.array(["water_level", "bin_fill", "water_level", "smoke"], dtype=object),
        area=np.array(["sh/黄浦/x", "sh/xuhui", "sh", "sh/xuhui/y"]),
        lat=np.array([31.23, np.nan, 31.0, 30.5]),
        lon=np.array([121.47, np.nan, 121.0, 120.5]),
        interval_ms=np.full(n, 60_000.0),
        metrics=np.array(["level", "battery"], dtype=object),
    )


def _state() -> LiveState:
    state = LiveState(4, 2)
    rows = [(0, 0, NOW - 1_000, 1.5), (0, 1, NOW - 2_000, 87.0), (2, 0, NOW - 900_000, -0.25)]
    d, m, t, v = (np.array(c) for c in zip(*rows, strict=True))
    state.apply(
        ReadingBatch.from_columns(device=d, metric=m, ts=t, value=v, quality=np.zeros(len(d)))
    )
    state.mark_online(3, False, NOW - 5_000)
    return state


def _decoded(devices: FeedDevices, state: LiveState, mask: list[bool]) -> Any:
    cap = capture(
        seq=1, now_ms=NOW, filt=Filter(Scope()), devices=devices, mask=np.array(mask), state=state
    )
    return json.loads(b"".join(device_parts(cap)))


def test_device_rows_carry_head_state_and_values_as_plain_rows_would() -> None:
    devices = _devices(['d"1', "d\\2", "d-3", "d4"])
    assert _decoded(devices, _state(), [True, True, True, True]) == [
        {
            "id": 'd"1', "vendor": "acme", "type": "water_level", "lat": 31.23, "lon": 121.47,
            "area": "sh/黄浦/x", "online": True, "last_seen": NOW - 1_000,
            "values": {"level": 1.5, "battery": 87.0},
        },
        {
            "id": "d\\2", "vendor": "hydrox", "type": "bin_fill", "lat": None, "lon": None,
            "area": "sh/xuhui", "online": None, "last_seen": None, "values": {},
        },
        {
            "id": "d-3", "vendor": "acme", "type": "water_level", "lat": 31.0, "lon": 121.0,
            "area": "sh", "online": False, "last_seen": NOW - 900_000, "values": {"level": -0.25},
        },
        {
            "id": "d4", "vendor": "acme", "type": "smoke", "lat": 30.5, "lon": 120.5,
            "area": "sh/xuhui/y", "online": False, "last_seen": None, "values": {},
        },
    ]  # fmt: skip


def test_a_subset_one_device_or_none_is_a_well_formed_list() -> None:
    devices = _devices(["a", "b", "c", "d"])
    state = _state()
    assert [r["id"] for r in _decoded(devices, state, [False, True, False, True])] == ["b", "d"]
    assert [r["id"] for r in _decoded(devices, state, [False, False, True, False])] == ["c"]
    assert _decoded(devices, state, [False] * 4) == []


def test_a_new_device_table_gets_new_heads() -> None:
    state = _state()
    before = _decoded(_devices(["a", "b", "c", "d"]), state, [True] * 4)
    after = _decoded(_devices(["a", "b2", "c", "d"]), state, [True] * 4)
    assert [r["id"] for r in before] == ["a", "b", "c", "d"]
    assert [r["id"] for r in after] == ["a", "b2", "c", "d"]
