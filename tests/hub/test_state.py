"""Live state: the newest value per (device, metric) in numpy arrays, whatever order readings arrive in."""

from __future__ import annotations

import numpy as np
from hypothesis import given, settings
from hypothesis import strategies as st

from hub.state import LiveState
from ingest.batch import ReadingBatch


def batch(rows: list[tuple[int, int, int, float]]) -> ReadingBatch:
    d, m, t, v = zip(*rows, strict=True)
    return ReadingBatch.from_columns(device=d, metric=m, ts=t, value=v, quality=[0] * len(rows))


def test_newest_reading_wins_within_and_across_batches() -> None:
    state = LiveState(2, 2)
    state.apply(batch([(0, 0, 2000, 2.0), (0, 0, 1000, 1.0), (1, 1, 500, 5.0)]))
    assert state.value[0, 0] == 2.0
    assert state.ts[0, 0] == 2000
    state.apply(batch([(0, 0, 1500, 9.0)]))  # late: older than what is held
    assert state.value[0, 0] == 2.0
    state.apply(batch([(0, 0, 3000, 3.0)]))
    assert state.value[0, 0] == 3.0
    assert state.last_seen.tolist() == [3000, 500]


def test_unseen_series_are_never_and_nan() -> None:
    state = LiveState(3, 2)
    state.apply(batch([(1, 0, 10, 1.0)]))
    values, times, _, last_seen = state.row(2)
    assert np.isnan(values).all()
    assert (times == LiveState.never()).all()
    assert last_seen == LiveState.never()
    assert state.row(99)[3] == LiveState.never()  # a device the arrays have no room for yet


def test_grows_for_new_devices_and_metrics_and_keeps_what_it_had() -> None:
    state = LiveState(1, 1)
    state.apply(batch([(0, 0, 10, 1.0)]))
    state.apply(batch([(500, 7, 20, 2.0)]))
    assert state.shape[0] >= 501
    assert state.shape[1] >= 8
    assert state.value[0, 0] == 1.0
    assert state.value[500, 7] == 2.0


def test_online_status_marks_and_counts_as_seen() -> None:
    state = LiveState(2, 1)
    state.mark_online(1, True, 5000)
    assert state.online.tolist() == [-1, 1]
    assert state.last_seen[1] == 5000
    state.mark_online(1, False, 6000)
    assert state.online[1] == 0


@settings(max_examples=60, deadline=None)
@given(
    st.lists(
        st.lists(
            st.tuples(
                st.integers(0, 20), st.integers(0, 4), st.integers(0, 1000), st.floats(-1e3, 1e3)
            ),
            min_size=1,
            max_size=30,
        ),
        min_size=1,
        max_size=5,
    )
)
def test_matches_a_plain_dictionary_of_newest_readings(
    batches: list[list[tuple[int, int, int, float]]],
) -> None:
    state = LiveState()
    rows_seen: list[tuple[int, int, int, float]] = []
    for rows in batches:
        state.apply(batch(rows))
        rows_seen += rows
    for d, m in {(d, m) for d, m, _, _ in rows_seen}:
        times = [t for dd, mm, t, _ in rows_seen if (dd, mm) == (d, m)]
        assert state.ts[d, m] == max(times)
        at_newest = {v for dd, mm, t, v in rows_seen if (dd, mm, t) == (d, m, max(times))}
        assert state.value[d, m] in at_newest  # two readings with one time: either may stand
