"""The store protocol, on every backend: the embedded DuckDB store and a real InfluxDB 1.x (Debian's influxd).

These are the protocol tests of ``test_store.py`` (which keeps testing the file store alone), run
through a factory so each passes on both. InfluxDB runs with ``count_new`` on, the mode in which
`write` answers exactly how many readings were new; ``test_influx.py`` covers the default.
"""

from __future__ import annotations

import itertools
from collections.abc import Callable, Iterator
from pathlib import Path

import numpy as np
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from ingest.batch import ReadingBatch
from ingest.store import Store
from ingest.store.filestore import FileStore
from ingest.store.influx import InfluxStore
from tests.influxd import Influxd

FAR = 2**62
_names = itertools.count()

# open(name) -> a store; the same name opens the same stored readings again (a restart).
Opener = Callable[[str], Store]


@pytest.fixture(params=["file", pytest.param("influx", marks=pytest.mark.influx)])
def open_store(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[Opener]:
    opened: list[Store] = []
    if request.param == "file":

        def opener(name: str) -> Store:
            store = FileStore(":memory:" if name == ":memory:" else tmp_path / f"{name}.duckdb")
            opened.append(store)
            return store

    else:
        server: Influxd = request.getfixturevalue("influxd")
        databases: dict[str, str] = {}

        def opener(name: str) -> Store:
            fresh = server.settings(count_new=True)
            if name != ":memory:":  # ":memory:" is a throwaway store: a database of its own
                fresh = fresh.model_copy(
                    update={"database": databases.setdefault(name, fresh.database)}
                )
            store = InfluxStore(fresh)
            opened.append(store)
            return store

    yield opener
    for store in opened:
        if isinstance(store, InfluxStore):
            store.http.query(f'DROP DATABASE "{store.settings.database}"')
        store.close()


def batch(rows: list[tuple[int, int, int, float]], quality: int = 0) -> ReadingBatch:
    d, m, t, v = zip(*rows, strict=True) if rows else ((), (), (), ())
    return ReadingBatch.from_columns(
        device=list(d), metric=list(m), ts=list(t), value=list(v), quality=[quality] * len(rows)
    )


def series(n: int, device: int = 1, metric: int = 0, t0: int = 0, step: int = 1000) -> ReadingBatch:
    return batch([(device, metric, t0 + i * step, float(i)) for i in range(n)])


def test_a_batch_written_twice_is_stored_once(open_store: Opener) -> None:
    store = open_store("r")
    assert store.write(series(100)) == 100
    assert store.write(series(100)) == 0
    assert store.write(series(100, t0=50_000)) == 50  # overlapping redelivery: 50 old, 50 new
    assert store.count() == 150


def test_duplicates_inside_one_batch_are_stored_once(open_store: Opener) -> None:
    store = open_store("r")
    assert store.write(ReadingBatch.concat([series(10), series(10), series(10, metric=1)])) == 20
    assert store.count() == 20


def test_key_is_device_metric_and_time(open_store: Opener) -> None:
    store = open_store("r")
    assert store.write(batch([(1, 0, 5, 1.0), (2, 0, 5, 1.0), (1, 1, 5, 1.0), (1, 0, 6, 1.0)])) == 4


def test_range_is_half_open_and_ordered(open_store: Opener) -> None:
    store = open_store("r")
    store.write(series(10))
    store.write(series(10, device=2))
    got = store.range(1, 0, 2000, 5000)
    assert got.ts.tolist() == [2000, 3000, 4000]
    assert got.value.tolist() == [2.0, 3.0, 4.0]
    assert set(got.device.tolist()) == {1}
    assert store.range(1, 0, 0, 10_000, limit=3).ts.tolist() == [0, 1000, 2000]
    assert len(store.range(1, 5, -FAR, FAR)) == 0


def test_downsample_min_max_mean_count(open_store: Opener) -> None:
    store = open_store("r")
    store.write(series(60, step=60_000))  # values 0..59, one a minute
    b = store.downsample(1, 0, 0, 3_600_000, 900_000)
    assert b.start.tolist() == [0, 900_000, 1_800_000, 2_700_000]
    assert b.min.tolist() == [0, 15, 30, 45]
    assert b.max.tolist() == [14, 29, 44, 59]
    assert b.mean.tolist() == [7, 22, 37, 52]
    assert b.count.tolist() == [15] * 4
    store.write(batch([(1, 0, 10 * 3_600_000, 5.0)]))  # empty buckets are absent, not zero
    assert store.downsample(1, 0, 0, 11 * 3_600_000, 3_600_000).start.tolist() == [
        0,
        10 * 3_600_000,
    ]


def test_latest_is_the_newest_reading_of_every_series(open_store: Opener) -> None:
    store = open_store("r")
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


def test_counts_since_per_device_in_device_order(open_store: Opener) -> None:
    store = open_store("r")
    store.write(
        ReadingBatch.concat([series(10, device=12), series(5, device=3), series(2, device=7)])
    )
    devices, counts = store.counts_since(3000)  # device 7 has nothing since: it is absent
    assert (devices.tolist(), counts.tolist()) == ([3, 12], [2, 7])
    one_d, one_n = store.counts_since(0, device=12)
    assert (one_d.tolist(), one_n.tolist()) == ([12], [10])
    assert devices.dtype == np.int32
    assert counts.dtype == np.int64


def test_retention_deletes_only_older_readings(open_store: Opener) -> None:
    store = open_store("r")
    store.write(series(100))
    assert store.delete_before(40_000) == 40
    assert store.count() == 60
    assert store.range(1, 0, -FAR, FAR).ts[0] == 40_000


def test_readings_survive_a_restart_and_stay_keyed(open_store: Opener) -> None:
    store = open_store("r")
    store.write(series(1000))
    store.close()
    again = open_store("r")
    assert again.count() == 1000
    assert again.write(series(1000)) == 0


def test_nan_values_round_trip(open_store: Opener) -> None:
    store = open_store("r")
    store.write(batch([(1, 0, 0, float("nan"))], quality=8))
    got = store.range(1, 0, -FAR, FAR)
    assert np.isnan(got.value[0])
    assert got.quality.tolist() == [8]


def test_latest_of_a_series_whose_newest_reading_is_nan(open_store: Opener) -> None:
    store = open_store("r")
    store.write(batch([(1, 0, 1000, 4.0)]))
    store.write(batch([(1, 0, 2000, float("nan"))], quality=8))
    latest = store.latest()
    assert latest.ts.tolist() == [2000]
    assert np.isnan(latest.value[0])
    assert latest.quality.tolist() == [8]
    assert store.downsample(1, 0, 0, 10_000, 10_000).count.tolist() == [1]  # numbers only


def test_values_round_trip_exactly(open_store: Opener) -> None:
    store = open_store("r")
    values = [0.1, -0.0, 1e-300, 123456789.123456789, -2.5e18, 1 / 3]
    store.write(batch([(1, 0, i, v) for i, v in enumerate(values)]))
    assert store.range(1, 0, -FAR, FAR).value.tolist() == values


@settings(
    max_examples=40, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture]
)
@given(
    st.lists(
        st.tuples(st.integers(0, 5), st.integers(0, 3), st.integers(0, 50), st.floats(-1e6, 1e6)),
        max_size=60,
    ),
    st.integers(1, 4),
)
def test_any_sequence_of_writes_stores_each_key_once(
    open_store: Opener, rows: list[tuple[int, int, int, float]], chunks: int
) -> None:
    store = open_store(":memory:")
    size = max(1, len(rows) // chunks)
    new = sum(store.write(batch(rows[i : i + size])) for i in range(0, len(rows), size))
    keys = {(d, m, t) for d, m, t, _ in rows}
    assert new == len(keys) == store.count()


@settings(
    max_examples=15, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture]
)
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
    open_store: Opener,
    writes: list[list[tuple[int, int, int, float]]],
    restart_after: list[bool],
) -> None:
    name = f"restarts-{next(_names)}"
    store = open_store(name)
    new = 0
    for rows, restart in zip(writes, restart_after, strict=False):
        new += store.write(batch(rows))
        if restart:
            store.close()
            store = open_store(name)
    keys = {(d, m, t) for rows in writes for d, m, t, _ in rows}
    assert new == len(keys) == store.count()
