"""The embedded DuckDB store: keyed writes, range and downsampled queries, latest, retention, restart."""

from __future__ import annotations

import tempfile
from pathlib import Path

import numpy as np
from hypothesis import given, settings
from hypothesis import strategies as st

from ingest.batch import ReadingBatch
from ingest.store.filestore import FileStore

FAR = 2**62


def batch(rows: list[tuple[int, int, int, float]], quality: int = 0) -> ReadingBatch:
    d, m, t, v = zip(*rows, strict=True) if rows else ((), (), (), ())
    return ReadingBatch.from_columns(
        device=list(d), metric=list(m), ts=list(t), value=list(v), quality=[quality] * len(rows)
    )


def series(n: int, device: int = 1, metric: int = 0, t0: int = 0, step: int = 1000) -> ReadingBatch:
    return batch([(device, metric, t0 + i * step, float(i)) for i in range(n)])


def test_a_batch_written_twice_is_stored_once(tmp_path: Path) -> None:
    store = FileStore(tmp_path / "r.duckdb")
    assert store.write(series(100)) == 100
    assert store.write(series(100)) == 0
    # Overlapping redelivery: 50 old, 50 new.
    assert store.write(series(100, t0=50_000)) == 50
    assert store.count() == 150
    store.close()


def test_duplicates_inside_one_batch_are_stored_once(tmp_path: Path) -> None:
    store = FileStore(tmp_path / "r.duckdb")
    b = ReadingBatch.concat([series(10), series(10), series(10, metric=1)])
    assert store.write(b) == 20
    assert store.count() == 20
    store.close()


def test_key_is_device_metric_and_time(tmp_path: Path) -> None:
    store = FileStore(tmp_path / "r.duckdb")
    assert store.write(batch([(1, 0, 5, 1.0), (2, 0, 5, 1.0), (1, 1, 5, 1.0), (1, 0, 6, 1.0)])) == 4
    store.close()


def test_range_is_half_open_and_ordered(tmp_path: Path) -> None:
    store = FileStore(tmp_path / "r.duckdb")
    store.write(series(10))
    store.write(series(10, device=2))
    got = store.range(1, 0, 2000, 5000)
    assert got.ts.tolist() == [2000, 3000, 4000]
    assert got.value.tolist() == [2.0, 3.0, 4.0]
    assert set(got.device.tolist()) == {1}
    assert store.range(1, 0, 0, 10_000, limit=3).ts.tolist() == [0, 1000, 2000]
    assert len(store.range(1, 5, -FAR, FAR)) == 0
    store.close()


def test_downsample_min_max_mean_count(tmp_path: Path) -> None:
    store = FileStore(tmp_path / "r.duckdb")
    store.write(series(60, step=60_000))  # values 0..59, one a minute
    b = store.downsample(1, 0, 0, 3_600_000, 900_000)
    assert b.start.tolist() == [0, 900_000, 1_800_000, 2_700_000]
    assert b.min.tolist() == [0, 15, 30, 45]
    assert b.max.tolist() == [14, 29, 44, 59]
    assert b.mean.tolist() == [7, 22, 37, 52]
    assert b.count.tolist() == [15] * 4
    # Empty buckets are absent, not zero.
    store.write(batch([(1, 0, 10 * 3_600_000, 5.0)]))
    wide = store.downsample(1, 0, 0, 11 * 3_600_000, 3_600_000)
    assert wide.start.tolist() == [0, 10 * 3_600_000]
    store.close()


def test_latest_is_the_newest_reading_of_every_series(tmp_path: Path) -> None:
    store = FileStore(tmp_path / "r.duckdb")
    store.write(batch([(1, 0, 1000, 1.0), (1, 0, 3000, 3.0), (1, 1, 2000, 7.0)]))
    store.write(batch([(1, 0, 2000, 2.0), (4, 0, 500, 9.0)], quality=1))  # late, older reading
    latest = store.latest()
    got = {
        (int(d), int(m)): (int(t), float(v), int(q))
        for d, m, t, v, q in zip(
            latest.device, latest.metric, latest.ts, latest.value, latest.quality, strict=True
        )
    }
    assert got == {(1, 0): (3000, 3.0, 0), (1, 1): (2000, 7.0, 0), (4, 0): (500, 9.0, 1)}
    store.close()


def test_retention_deletes_only_older_readings(tmp_path: Path) -> None:
    store = FileStore(tmp_path / "r.duckdb")
    store.write(series(100))
    assert store.delete_before(40_000) == 40
    assert store.count() == 60
    assert store.range(1, 0, -FAR, FAR).ts[0] == 40_000
    store.close()


def test_readings_survive_a_restart_and_stay_keyed(tmp_path: Path) -> None:
    path = tmp_path / "r.duckdb"
    store = FileStore(path)
    store.write(series(1000))
    store.close()
    again = FileStore(path)
    assert again.count() == 1000
    assert again.write(series(1000)) == 0
    again.close()


def test_nan_values_round_trip(tmp_path: Path) -> None:
    store = FileStore(tmp_path / "r.duckdb")
    store.write(batch([(1, 0, 0, float("nan"))], quality=8))
    got = store.range(1, 0, -FAR, FAR)
    assert np.isnan(got.value[0])
    assert got.quality.tolist() == [8]
    store.close()


@settings(max_examples=40, deadline=None)
@given(
    st.lists(
        st.tuples(st.integers(0, 5), st.integers(0, 3), st.integers(0, 50), st.floats(-1e6, 1e6)),
        max_size=60,
    ),
    st.integers(1, 4),
)
def test_any_sequence_of_writes_stores_each_key_once(
    rows: list[tuple[int, int, int, float]], chunks: int
) -> None:
    store = FileStore(":memory:")
    size = max(1, len(rows) // chunks)
    new = sum(store.write(batch(rows[i : i + size])) for i in range(0, len(rows), size))
    keys = {(d, m, t) for d, m, t, _ in rows}
    assert new == len(keys) == store.count()
    store.close()


def test_latest_of_a_series_whose_newest_reading_is_nan(tmp_path: Path) -> None:
    store = FileStore(tmp_path / "r.duckdb")
    store.write(batch([(1, 0, 1000, 4.0)]))
    store.write(batch([(1, 0, 2000, float("nan"))], quality=8))
    latest = store.latest()
    assert latest.ts.tolist() == [2000]
    assert np.isnan(latest.value[0])
    assert latest.quality.tolist() == [8]
    assert store.downsample(1, 0, 0, 10_000, 10_000).count.tolist() == [1]  # numbers only
    store.close()


def test_newer_readings_are_appended_and_older_or_equal_ones_deduplicated(tmp_path: Path) -> None:
    # Readings newer than everything stored for their device skip the duplicate check; a reading at
    # (or before) a device's newest stored time must still be checked, whatever its metric.
    path = tmp_path / "r.duckdb"
    store = FileStore(path)
    assert store.write(batch([(1, 0, 1000, 1.0), (2, 0, 500, 1.0)])) == 2
    assert store.write(batch([(1, 1, 1000, 2.0)])) == 1  # same device and time, another metric
    assert store.write(batch([(1, 0, 1000, 9.0), (1, 0, 2000, 3.0)])) == 1
    assert store.write(batch([(7, 0, 10, 1.0)])) == 1  # a device index never seen before
    store.close()
    # After a restart the newest time per device comes from the file.
    again = FileStore(path)
    assert again.write(batch([(1, 0, 2000, 5.0), (2, 0, 500, 5.0), (7, 0, 10, 5.0)])) == 0
    assert again.write(batch([(1, 0, 3000, 4.0), (2, 0, 501, 4.0), (99_999, 0, 1, 1.0)])) == 3
    assert again.count() == 8
    assert again.range(1, 0, -FAR, FAR).value.tolist() == [1.0, 3.0, 4.0]  # first value kept
    # Retention deletes old rows; writing them again stores them again, once.
    assert again.delete_before(1000) == 4
    assert again.write(batch([(2, 0, 500, 6.0), (2, 0, 500, 6.0)])) == 1
    assert again.write(batch([(2, 0, 500, 6.0)])) == 0
    again.close()


@settings(max_examples=25, deadline=None)
@given(
    st.lists(
        st.lists(
            st.tuples(
                st.integers(0, 5), st.integers(0, 2), st.integers(0, 40), st.floats(-1e6, 1e6)
            ),
            max_size=20,
        ),
        max_size=6,
    ),
    st.lists(st.booleans(), min_size=6, max_size=6),
)
def test_any_writes_with_restarts_between_them_store_each_key_once(
    writes: list[list[tuple[int, int, int, float]]], restart_after: list[bool]
) -> None:
    with tempfile.TemporaryDirectory() as tmp:
        path = Path(tmp) / "r.duckdb"
        store = FileStore(path)
        new = 0
        for rows, restart in zip(writes, restart_after, strict=False):
            new += store.write(batch(rows))
            if restart:
                store.close()
                store = FileStore(path)
        keys = {(d, m, t) for rows in writes for d, m, t, _ in rows}
        assert new == len(keys) == store.count()
        store.close()
