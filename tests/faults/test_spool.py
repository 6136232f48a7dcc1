"""The store-outage spool (ingest/spool.py) on real files and a real, fillable tmpfs."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

from bench._faults_process import fill
from ingest.batch import ReadingBatch
from ingest.spool import Spool, SpoolError, SpoolFullError, decode, encode


def batch(first: int, n: int) -> ReadingBatch:
    i = np.arange(first, first + n)
    return ReadingBatch(
        device=(i % 7).astype(np.int32),
        metric=(i % 3).astype(np.int16),
        ts=(1_763_798_400_000 + i * 1000).astype(np.int64),
        value=np.where(i % 11 == 0, np.nan, i * 0.5).astype(np.float64),
        quality=(i % 16).astype(np.uint8),
    )


def same(a: ReadingBatch, b: ReadingBatch) -> bool:
    return all(
        np.array_equal(getattr(a, k), getattr(b, k), equal_nan=k == "value")
        for k in ("device", "metric", "ts", "value", "quality")
    )


def test_a_segment_round_trips_every_column_nan_included() -> None:
    b = batch(0, 1000)
    assert same(decode(encode(b)), b)
    assert len(decode(encode(batch(0, 0)))) == 0


def test_a_damaged_segment_is_refused_not_half_read() -> None:
    data = bytearray(encode(batch(0, 100)))
    data[-3] ^= 0xFF
    with pytest.raises(SpoolError, match="damaged"):
        decode(bytes(data))
    with pytest.raises(SpoolError):
        decode(bytes(data[:10]))


def test_batches_come_back_oldest_first_and_survive_a_reopen(tmp_path: Path) -> None:
    spool = Spool(tmp_path / "spool", max_bytes=1 << 20)
    for k in range(3):
        spool.append(batch(k * 100, 100))
    assert (len(spool), spool.readings) == (3, 300)
    again = Spool(tmp_path / "spool", max_bytes=1 << 20)  # a restart: what was spooled is kept
    assert (len(again), again.readings, again.bytes) == (3, 300, spool.bytes)
    seen = []
    while (oldest := again.oldest()) is not None:
        paths, b = oldest
        seen.append(int(b.ts[0]))
        assert same(b, batch(len(seen) * 100 - 100, 100))
        again.remove(paths)
    assert seen == sorted(seen)
    assert (len(again), again.readings, again.bytes, again.stats.replayed) == (0, 0, 0, 300)
    assert list((tmp_path / "spool").iterdir()) == []
    again.append(batch(0, 1))  # numbering goes on after the highest segment ever seen
    assert len(again) == 1


def test_replay_takes_many_small_segments_as_one_batch_up_to_a_bound(tmp_path: Path) -> None:
    spool = Spool(tmp_path, max_bytes=1 << 20)
    for k in range(10):
        spool.append(batch(k * 5, 5))
    oldest = spool.oldest(max_readings=23)
    assert oldest is not None
    paths, b = oldest
    assert (len(paths), len(b)) == (4, 20)  # whole segments only, never past the bound
    assert same(b, batch(0, 20))
    spool.remove(paths)
    assert spool.readings == 30
    huge = Spool(tmp_path / "huge", max_bytes=1 << 20)
    huge.append(batch(0, 500))
    taken = huge.oldest(max_readings=10)  # a segment larger than the bound still comes whole
    assert taken is not None
    assert len(taken[1]) == 500


def test_a_full_spool_refuses_with_its_figures_and_keeps_what_it_has(tmp_path: Path) -> None:
    one = len(encode(batch(0, 100)))
    spool = Spool(tmp_path, max_bytes=2 * one)
    spool.append(batch(0, 100))
    spool.append(batch(100, 100))
    with pytest.raises(SpoolFullError) as refused:
        spool.append(batch(200, 100))
    assert (refused.value.held, refused.value.wanted, refused.value.max_bytes) == (
        2 * one,
        one,
        2 * one,
    )
    assert (spool.readings, spool.stats.full, spool.stats.appended) == (200, 1, 200)
    oldest = spool.oldest()
    assert oldest is not None
    spool.remove(oldest[0])
    spool.append(batch(200, 100))  # room again once the store took the oldest
    assert spool.readings == 200


def test_a_damaged_segment_is_set_aside_and_the_rest_replayed(tmp_path: Path) -> None:
    spool = Spool(tmp_path, max_bytes=1 << 20)
    spool.append(batch(0, 10))
    spool.append(batch(10, 10))
    first = sorted(tmp_path.glob("*.batch"))[0]
    first.write_bytes(first.read_bytes()[:-1])  # bit rot / a foreign hand
    oldest = spool.oldest(max_readings=1000)
    assert oldest is not None
    assert same(oldest[1], batch(10, 10))
    assert oldest[0] == sorted(tmp_path.glob("*.batch"))
    assert spool.stats.bad_segments == 1
    assert first.with_suffix(".bad").exists()
    assert spool.readings == 10


def test_an_interrupted_append_leaves_no_segment(tmp_path: Path) -> None:
    (tmp_path / "0000000000000001.tmp").write_bytes(b"half a segment")
    spool = Spool(tmp_path, max_bytes=1 << 20)
    assert len(spool) == 0
    assert not list(tmp_path.glob("*.tmp"))


def test_a_full_disk_is_a_spool_error_and_leaves_nothing_behind(small_disk: Path) -> None:
    spool = Spool(small_disk / "spool", max_bytes=64 << 20)  # the bound is not what stops it
    spool.append(batch(0, 100))
    ballast = fill(small_disk)
    with pytest.raises(SpoolError, match="No space left") as refused:
        spool.append(batch(100, 50_000))
    assert not isinstance(refused.value, SpoolFullError)
    assert (spool.readings, spool.stats.failed) == (100, 1)
    assert not list((small_disk / "spool").glob("*.tmp"))
    ballast.unlink()
    spool.append(batch(100, 50_000))
    assert Spool(small_disk / "spool", max_bytes=64 << 20).readings == 50_100
