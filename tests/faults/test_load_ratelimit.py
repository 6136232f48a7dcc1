"""The per-device rate limiter and the clock watch on real registries and batches (no broker)."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest

from devices.loader import load_shipped
from devices.profiles import Device
from devices.registry import Registry
from ingest.batch import Quality, ReadingBatch
from ingest.codecs.base import DecodeReason
from ingest.flags import FlagKind
from ingest.ratelimit import RateLimiter, RateLimits
from ingest.skew import SkewWatch

NOW = 1_780_000_000_000
NOISE_S = 60  # acme-noise: one report a minute expected


@pytest.fixture
def registry(tmp_path: Path) -> Registry:
    reg = Registry(f"sqlite:///{tmp_path / 'registry.db'}")
    load_shipped(reg)
    reg.put_devices(
        [Device(id=f"noise-{i}", vendor="acme", profile="acme-noise") for i in range(4)]
        + [Device(id="bin-1", vendor="acme", profile="acme-bin")]
    )
    return reg


def _index(registry: Registry, device: str) -> int:
    return registry.interner.devices[device].index


def _reports(
    registry: Registry, device: str, start_ms: int, step_ms: int, n: int, metrics: int = 2
) -> ReadingBatch:
    """``n`` reports of ``metrics`` readings each, ``step_ms`` apart in device time."""
    ts = np.repeat(start_ms + step_ms * np.arange(n, dtype=np.int64), metrics)
    dev = np.full(len(ts), _index(registry, device))
    metric = np.tile(np.arange(metrics), n)
    return ReadingBatch.from_columns(dev, metric, ts, np.ones(len(ts)))


def test_a_device_at_its_expected_rate_is_never_limited(registry: Registry) -> None:
    limiter = RateLimiter(registry, RateLimits(factor=10, window_intervals=10))
    batch = _reports(registry, "noise-0", NOW - 3600_000, NOISE_S * 1000, 60)
    result = limiter.apply(batch, NOW)
    assert len(result.batch) == len(batch)
    assert result.rejections == []
    assert result.flags == []
    assert result.rejected == 0


def test_a_backlog_with_its_original_times_is_not_a_flood(registry: Registry) -> None:
    """Six hours buffered offline, sent at once: spread out in device time, so all kept."""
    limiter = RateLimiter(registry, RateLimits(factor=10, window_intervals=10))
    backlog = _reports(registry, "noise-1", NOW - 6 * 3600_000, NOISE_S * 1000, 360)
    assert len(limiter.apply(backlog, NOW).batch) == len(backlog)


def test_a_flood_at_50x_is_cut_to_the_limit_flagged_once_and_dead_lettered(
    registry: Registry,
) -> None:
    limiter = RateLimiter(registry, RateLimits(factor=10, window_intervals=10))
    window_ms = NOISE_S * 10 * 1000
    start = (NOW // window_ms - 3) * window_ms  # three whole windows, aligned
    step = NOISE_S * 1000 // 50
    flood = _reports(registry, "noise-2", start, step, 1500)  # 3 windows at 50x
    calm = _reports(registry, "noise-3", start, NOISE_S * 1000, 30)
    # Delivered in slices, as flushes would see them; the calm device shares every batch.
    kept = rejected = 0
    flags = []
    letters = []
    for k in range(10):
        part = ReadingBatch.concat(
            [
                flood.select(np.arange(300 * k, 300 * (k + 1))),
                calm.select(np.arange(6 * k, 6 * (k + 1))),
            ]
        )
        result = limiter.apply(part, NOW)
        calm_rows = result.batch.device == _index(registry, "noise-3")
        assert calm_rows.sum() == 6  # the calm device loses nothing
        kept += int((~calm_rows).sum())
        rejected += result.rejected
        flags += result.flags
        letters += result.rejections
    letters += limiter.letters(NOW)  # what was cut since the first batch's letters
    # 100 reports (of 2 readings) per 10-minute window are allowed: 3 windows.
    assert kept == 3 * 100 * 2
    assert rejected == 3000 - kept
    assert limiter.rejected_by_device() == {"noise-2": rejected}
    assert [(f.kind, f.device, f.raised) for f in flags] == [(FlagKind.RATE_LIMIT, "noise-2", True)]
    assert "60 s" in flags[0].summary
    assert {r.error.reason for r in letters} == {DecodeReason.RATE_LIMITED}
    assert sum(json.loads(r.raw.payload)["rejected_readings"] for r in letters) == rejected
    assert "expects one report every 60 s" in letters[0].error.detail
    assert letters[0].raw.topic == "sensors/acme/noise-2/up"
    # The excess is the latest of each window: the first 100 reports of a window are kept.
    assert limiter.flagged_devices() == ["noise-2"]


def test_the_flag_clears_after_a_whole_window_under_the_limit(registry: Registry) -> None:
    limiter = RateLimiter(registry, RateLimits(factor=10, window_intervals=10))
    window_ms = NOISE_S * 10 * 1000
    start = (NOW // window_ms - 5) * window_ms
    limiter.apply(_reports(registry, "noise-0", start, 600, 200), NOW)
    assert limiter.flagged_devices() == ["noise-0"]
    # The next window at the expected rate: still flagged (the flood window was the last one).
    result = limiter.apply(_reports(registry, "noise-0", start + window_ms, 60_000, 10), NOW)
    assert result.flags == []
    # Two windows on: cleared, once.
    result = limiter.apply(_reports(registry, "noise-0", start + 2 * window_ms, 60_000, 10), NOW)
    assert [(f.device, f.raised) for f in result.flags] == [("noise-0", False)]
    assert limiter.flagged_devices() == []


def test_limits_follow_the_profile_interval(registry: Registry) -> None:
    """A bin (one report every 30 min) flooding once a minute is limited; a noise meter is not."""
    limiter = RateLimiter(registry, RateLimits(factor=5, window_intervals=2))
    start = NOW - 3 * 3600_000
    both = ReadingBatch.concat(
        [
            _reports(registry, "bin-1", start, 60_000, 180),
            _reports(registry, "noise-0", start, 60_000, 180),
        ]
    )
    result = limiter.apply(both, NOW)
    assert set(limiter.rejected_by_device()) == {"bin-1"}
    assert result.rejected > 0


def test_no_limit_for_a_device_the_registry_no_longer_has(registry: Registry) -> None:
    limiter = RateLimiter(registry, RateLimits())
    ghost = ReadingBatch.from_columns([999] * 5, [0] * 5, [NOW] * 5, [1.0] * 5)
    assert len(limiter.apply(ghost, NOW).batch) == 5


def test_a_clock_two_hours_behind_is_flagged_after_its_second_message(
    registry: Registry,
) -> None:
    watch = SkewWatch(registry.interner, behind_ms=3600_000, steady_ms=20_000, confirm_ms=20_000)
    dev = _index(registry, "noise-0")
    ok = _index(registry, "noise-1")
    behind = 2 * 3600_000
    flags = []
    flagged_rows = []
    for k in range(3):
        now = NOW + k * 60_000
        batch = ReadingBatch.from_columns(
            [dev, dev, ok], [0, 1, 0], [now - behind, now - behind, now - 500], [1.0, 2.0, 3.0]
        )
        result = watch.apply(batch, now)
        flags += result.flags
        flagged_rows.append((result.batch.quality & Quality.CLOCK_SKEW != 0).tolist())
    assert flagged_rows == [[False, False, False], [True, True, False], [True, True, False]]
    assert [(f.kind, f.device, f.raised) for f in flags] == [(FlagKind.CLOCK_SKEW, "noise-0", True)]
    assert "2.0 h behind" in flags[0].summary
    assert watch.skewed_by_device() == {"noise-0": 4}
    # The clock is fixed: the flag clears, once.
    later = NOW + 10 * 60_000
    result = watch.apply(ReadingBatch.from_columns([dev], [0], [later - 200], [1.0]), later)
    assert [(f.device, f.raised) for f in result.flags] == [("noise-0", False)]
    assert int(result.batch.quality[0]) == 0


def test_a_backlog_catching_up_is_not_a_slow_clock(registry: Registry) -> None:
    watch = SkewWatch(registry.interner, behind_ms=3600_000, steady_ms=20_000, confirm_ms=20_000)
    dev = _index(registry, "noise-2")
    # Three hours buffered, sent over three flushes: the newest reading's lag shrinks fast.
    for k, newest_lag in enumerate((3 * 3600_000, 2 * 3600_000 - 7, 60_000)):
        now = NOW + k * 20
        ts = now - newest_lag - 60_000 * np.arange(30)[::-1]
        result = watch.apply(ReadingBatch.from_columns([dev] * 30, [0] * 30, ts, [1.0] * 30), now)
        assert result.flags == []
        assert result.skewed == 0
    # Four hours sent slowly, at ten times real time, a batch every 30 s: still not a slow clock.
    dev = _index(registry, "noise-3")
    for k in range(8):
        now = NOW + k * 30_000
        newest_lag = 4 * 3600_000 - k * 270_000
        ts = now - newest_lag - 60_000 * np.arange(30)[::-1]
        result = watch.apply(ReadingBatch.from_columns([dev] * 30, [0] * 30, ts, [1.0] * 30), now)
        assert result.flags == []
        assert result.skewed == 0


def test_readings_ahead_flagged_by_the_decoder_raise_the_device_flag(registry: Registry) -> None:
    watch = SkewWatch(registry.interner)
    dev = _index(registry, "noise-3")
    ahead = NOW + 2 * 3600_000
    skew = int(Quality.CLOCK_SKEW)
    batch = ReadingBatch.from_columns([dev, dev], [0, 1], [ahead, ahead], [1.0, 2.0], [skew, skew])
    result = watch.apply(batch, NOW)
    assert result.skewed == 2
    assert [(f.device, f.raised) for f in result.flags] == [("noise-3", True)]
    assert "2.0 h ahead of" in result.flags[0].summary
