"""Queries against the embedded store (ingest/store/filestore.py), prefilled column-wise.

Prefill: ``devices`` water-level series with one reading an hour for 30 days, plus one series at one
reading every 10 s for the same 30 days (the one the 24 h and 30 d queries read), written through
`FileStore.write` in time-ordered batches as the pipeline writes them. The store is then closed and
opened again, as a restarted hub opens it, before timing. Each query runs ``repeats`` times after a
warm-up; the median is reported.

- latest: `FileStore.latest()`, the newest reading of every series (what the hub seeds its live state
  with, and what "latest values of 10,000 devices" costs the store); its first call after opening
  scans the table, later ones answer from the store's in-memory cache: both are reported;
- 24 h / 30 d: `FileStore.downsample()` at 1-minute / 1-hour buckets (what the readings API answers
  for ``every=1m`` / ``every=1h``);
- counts per area: `FileStore.counts_since()` for the last 24 h, summed per area with numpy.
"""

from __future__ import annotations

import statistics
import tempfile
import time
from collections.abc import Callable
from pathlib import Path
from typing import TypeVar

import numpy as np
from numpy.typing import NDArray

from ingest.batch import ReadingBatch
from ingest.store.filestore import FileStore

HOUR_MS = 3_600_000
DAY_MS = 24 * HOUR_MS
AREAS = 50
T = TypeVar("T")


def _timed(fn: Callable[[], T], repeats: int) -> tuple[float, T]:
    out = fn()  # warm-up
    times = []
    for _ in range(repeats):
        t = time.perf_counter()
        out = fn()
        times.append((time.perf_counter() - t) * 1000)
    return statistics.median(times), out


def prefill(store: FileStore, devices: int, days: int, now_ms: int) -> int:
    """Write the readings; returns how many."""
    start = now_ms - days * DAY_MS
    hot = 0  # the dense series' device
    total = 0
    step = 10_000
    for day in range(days):
        day0 = start + day * DAY_MS
        hours = day0 + np.arange(24, dtype=np.int64) * HOUR_MS
        dev = np.tile(np.arange(1, devices + 1, dtype=np.int32), 24)
        ts = np.repeat(hours, devices)
        dense_ts = day0 + np.arange(DAY_MS // step, dtype=np.int64) * step
        dev = np.concatenate([dev, np.full(len(dense_ts), hot, dtype=np.int32)])
        ts = np.concatenate([ts, dense_ts])
        order = np.argsort(ts, kind="stable")
        dev, ts = dev[order], ts[order]
        value = 1.0 + (dev % 97) / 100 + (ts % DAY_MS) / DAY_MS
        batch = ReadingBatch(
            dev,
            np.zeros(len(dev), dtype=np.int16),
            ts,
            value.astype(np.float64),
            np.zeros(len(dev), dtype=np.uint8),
        )
        total += store.write(batch)
    return total


def run(devices: int = 10_000, days: int = 30, repeats: int = 7) -> dict[str, float]:
    """Prefill a store in a temporary directory and time the queries; ms and row counts."""
    now_ms = (int(time.time() * 1000) // HOUR_MS) * HOUR_MS
    with tempfile.TemporaryDirectory(prefix="bench-queries-") as tmp:
        path = Path(tmp) / "readings.duckdb"
        store = FileStore(path)
        t = time.perf_counter()
        rows = prefill(store, devices, days, now_ms)
        fill_s = time.perf_counter() - t
        store.close()
        store = FileStore(path)
        area_of = np.arange(devices + 1) % AREAS

        t = time.perf_counter()
        store.latest()  # the first call after open scans the table
        cold_ms = (time.perf_counter() - t) * 1000
        latest_ms, latest = _timed(store.latest, repeats)
        d24_ms, b24 = _timed(
            lambda: store.downsample(0, 0, now_ms - DAY_MS, now_ms, 60_000), repeats
        )
        d30_ms, b30 = _timed(
            lambda: store.downsample(0, 0, now_ms - 30 * DAY_MS, now_ms, HOUR_MS), repeats
        )

        def per_area() -> NDArray[np.float64]:
            dev, n = store.counts_since(now_ms - DAY_MS)
            return np.bincount(area_of[dev], weights=n, minlength=AREAS).astype(np.float64)

        area_ms, areas = _timed(per_area, repeats)
        store.close()
    return {
        "rows": rows,
        "fill_s": fill_s,
        "latest_cold_ms": cold_ms,
        "latest_ms": latest_ms,
        "latest_series": len(latest),
        "d24_ms": d24_ms,
        "d24_buckets": len(b24),
        "d30_ms": d30_ms,
        "d30_buckets": len(b30),
        "area_ms": area_ms,
        "area_total": float(np.sum(areas)),
    }


if __name__ == "__main__":
    import sys

    for k, v in run(int(sys.argv[1]) if len(sys.argv) > 1 else 10_000).items():
        print(f"{k}={v:.3f}" if isinstance(v, float) else f"{k}={v}")
