"""FileStore.latest() answers from memory after its first scan: it must always equal a fresh scan."""

from __future__ import annotations

from pathlib import Path

import numpy as np

from ingest.batch import ReadingBatch
from ingest.store.filestore import FileStore


def _random_batch(rng: np.random.Generator, n: int, devices: int, t0: int) -> ReadingBatch:
    value = rng.normal(size=n)
    value[rng.random(n) < 0.05] = np.nan
    return ReadingBatch(
        rng.integers(0, devices, n).astype(np.int32),
        rng.integers(0, 3, n).astype(np.int16),
        (t0 + rng.integers(-50, 50, n) * 1000).astype(np.int64),  # late, duplicate and new ts
        value,
        rng.integers(0, 4, n).astype(np.uint8),
    )


def _rows(b: ReadingBatch) -> list[tuple[int, int, int, float | None, int]]:
    rows = zip(
        b.device.tolist(),
        b.metric.tolist(),
        b.ts.tolist(),
        b.value.tolist(),
        b.quality.tolist(),
        strict=True,
    )
    return sorted((d, m, t, None if np.isnan(v) else v, q) for d, m, t, v, q in rows)


def test_cached_latest_equals_a_scan_through_writes_duplicates_and_retention(
    tmp_path: Path,
) -> None:
    rng = np.random.default_rng(3)
    store = FileStore(tmp_path / "r.duckdb")
    store.write(_random_batch(rng, 500, 40, 1_000_000))
    first = store.latest()  # scans, then caches
    assert _rows(first) == _rows(store._scan_latest())
    for k in range(30):
        devices = 40 + 5 * k  # new series keep appearing
        store.write(_random_batch(rng, 300, devices, 1_000_000 + k * 20_000))
        if k == 20:
            store.delete_before(1_250_000)
        assert _rows(store.latest()) == _rows(store._scan_latest())
    store.close()


def test_latest_is_in_series_order_and_a_copy(tmp_path: Path) -> None:
    store = FileStore(tmp_path / "r.duckdb")
    one = np.ones(1, dtype=np.uint8)
    for dev, ts in [(5, 10), (2, 20), (5, 30)]:
        store.write(
            ReadingBatch(
                np.array([dev], dtype=np.int32),
                np.array([1], dtype=np.int16),
                np.array([ts], dtype=np.int64),
                np.array([float(ts)]),
                one,
            )
        )
    latest = store.latest()
    assert latest.device.tolist() == [2, 5]
    assert latest.ts.tolist() == [20, 30]
    again = store.latest()
    assert again.ts is not latest.ts
    store.close()


def test_the_cache_follows_a_store_reopened(tmp_path: Path) -> None:
    path = tmp_path / "r.duckdb"
    rng = np.random.default_rng(5)
    store = FileStore(path)
    store.write(_random_batch(rng, 400, 30, 2_000_000))
    before = _rows(store.latest())
    store.close()
    store = FileStore(path)
    assert _rows(store.latest()) == before
    store.write(_random_batch(rng, 400, 30, 2_100_000))
    assert _rows(store.latest()) == _rows(store._scan_latest())
    store.close()
