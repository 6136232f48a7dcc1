"""Decoding in worker processes (ingest/decodepool.py) gives exactly what decoding in the hub gives.

Real worker processes (``python -m ingest.decodeworker``) over a real registry file; the reference is
the in-process `Consumer` fed the same messages at the same receive times. Every golden vendor case,
good and bad, goes through; so do a worker killed with chunks in hand, a worker that keeps dying on
a chunk, and a device registered just before its first message.
"""

from __future__ import annotations

import json
import os
import signal
import time
from collections.abc import Callable, Iterator
from pathlib import Path

import numpy as np
import pytest

from devices.partitions import Slot
from devices.profiles import Device
from devices.registry import Registry
from ingest.batch import ReadingBatch
from ingest.consumer import Clock, Consumer, DecodeOptions, Taken
from ingest.decodepool import CHUNK_MESSAGES, MAX_CRASHES, PooledConsumer
from tests.ingest.codecs.conftest import SITE_ZONE, TESTDATA

T0 = 1_763_798_400_000  # the receive time of the first message; each next one 7 ms later


def golden_messages() -> list[tuple[str, bytes]]:
    """Every golden case's message (good and bad), plus what only live ingestion sees."""
    messages = [
        ((case / "topic.txt").read_text().strip(), (case / "payload.json").read_bytes())
        for case in sorted(TESTDATA.glob("*/*"))
        if (case / "topic.txt").exists()
    ]
    return [
        *messages,
        ("sensors/acme/mc-00001/status", b"offline"),
        ("sensors/acme/mc-00001/status", b"sideways"),
        ("not/a/hub/topic", b"{}"),
        ("sensors/acme/nz-00001/up", b'{"ts": 1, "pad": "' + b"x" * 9000 + b'"}'),
    ]


class SteppedClock:
    """The consumer's injected clock, stepping 7 ms a call: both decoders see the same receive times.

    Every component here is real (worker processes, registry file); only the time is chosen, so the
    in-process reference and the workers can be compared reading for reading.
    """

    def __init__(self) -> None:
        self.now_ms = T0

    def __call__(self) -> float:
        self.now_ms += 7
        return self.now_ms / 1000


def run_consumer(
    consumer: Consumer | PooledConsumer,
    messages: list[tuple[str, bytes]],
    take_every: int,
    timeout: float = 30.0,
) -> list[Taken]:
    """Hand the messages over with packet ids 1.., taking every ``take_every``; then until all are in."""
    takes = []
    for i, (topic, payload) in enumerate(messages):
        consumer.handle(topic, payload, i + 1, 1)
        if i % take_every == take_every - 1:
            takes.append(consumer.take())
    deadline = time.monotonic() + timeout
    while consumer.pending:
        assert time.monotonic() < deadline, f"{consumer.pending} messages never came back"
        time.sleep(0.005)
        takes.append(consumer.take())
    return takes


def merged(takes: list[Taken]) -> Taken:
    return Taken(
        batch=ReadingBatch.concat([t.batch for t in takes]),
        rejections=[r for t in takes for r in t.rejections],
        acks=[a for t in takes for a in t.acks],
        statuses=[s for t in takes for s in t.statuses],
        messages=sum(t.messages for t in takes),
    )


def assert_same(got: Taken, want: Taken) -> None:
    for column in ("device", "metric", "ts", "value", "quality"):
        np.testing.assert_array_equal(getattr(got.batch, column), getattr(want.batch, column))
    assert [(r.raw, r.error.reason, r.error.detail, r.error.device_id) for r in got.rejections] == [
        (r.raw, r.error.reason, r.error.detail, r.error.device_id) for r in want.rejections
    ]
    assert got.acks == want.acks
    assert got.statuses == want.statuses
    assert got.messages == want.messages


def options(slot: Slot | None = None) -> DecodeOptions:
    """The tests' decoding: the golden cases' zone, a small size limit (the oversized case)."""
    return DecodeOptions(site_zone=SITE_ZONE, max_payload=8192, slot=slot)


@pytest.fixture
def pools() -> Iterator[Callable[..., PooledConsumer]]:
    """Start pools that are closed (their processes stopped) after the test."""
    started: list[PooledConsumer] = []

    def start(
        registry: Registry,
        *,
        workers: int,
        chunk_messages: int = CHUNK_MESSAGES,
        clock: Clock = time.time,
        slot: Slot | None = None,
    ) -> PooledConsumer:
        local = Consumer(registry, options(slot), clock=clock)
        pool = PooledConsumer(local, workers=workers, chunk_messages=chunk_messages)
        started.append(pool)
        return pool

    yield start
    for pool in started:
        procs = [w.proc for w in pool._workers]
        pool.close()
        assert all(p.poll() is not None for p in procs), "a decode worker outlived close()"


def test_workers_decode_every_golden_case_as_the_hub_does(
    test_registry: Registry, pools: Callable[..., PooledConsumer]
) -> None:
    messages = golden_messages() * 3
    reference = Consumer(test_registry, options(), clock=SteppedClock())
    want = merged(run_consumer(reference, messages, take_every=5))
    # Small chunks over two workers: results come back out of order and are put back in order.
    pool = pools(test_registry, workers=2, chunk_messages=3, clock=SteppedClock())
    got = merged(run_consumer(pool, messages, take_every=5))

    assert len(want.batch) > 100
    assert len(want.rejections) > 20
    assert want.statuses
    assert_same(got, want)
    assert got.acks == [(i + 1, 1) for i in range(len(messages))]  # every message, in order
    assert pool.counters == reference.counters
    assert pool.counters.status_messages == 2 * 3


def _acme_batch(device: str, n: int, t0_ms: int) -> list[tuple[str, bytes]]:
    return [
        (
            f"sensors/acme/{device}/up",
            json.dumps({"ts": t0_ms + i, "fill": i % 90, "bat": 80}).encode(),
        )
        for i in range(n)
    ]


def test_a_killed_worker_loses_nothing_and_repeats_nothing(
    test_registry: Registry, pools: Callable[..., PooledConsumer]
) -> None:
    messages = _acme_batch("bin-00001", 3000, T0)
    pool = pools(test_registry, workers=2, chunk_messages=20)
    first = run_consumer(pool, messages[:20], take_every=20)  # both workers up and decoding
    victim = pool._workers[0]
    os.kill(victim.proc.pid, signal.SIGSTOP)  # it keeps what it is sent, unread
    takes = []
    for i, (topic, payload) in enumerate(messages[20:], start=20):
        pool.handle(topic, payload, i % 65_000 + 1, 1)
        if i % 100 == 0:
            takes.append(pool.take())
    os.kill(victim.proc.pid, signal.SIGKILL)
    takes += run_consumer(pool, [], take_every=1)

    got = merged(first + takes)
    assert pool.restarts == 1
    assert pool._workers[0] is not victim
    assert len(got.batch) == 2 * len(messages)  # fill and battery of every message
    assert len(got.acks) == len(messages)
    fill = got.batch.metric == test_registry.interner.metrics["fill_level"]
    np.testing.assert_array_equal(got.batch.ts[fill], np.arange(len(messages)) + T0)


def test_a_chunk_that_keeps_killing_its_worker_is_dead_lettered_not_retried_forever(
    test_registry: Registry, pools: Callable[..., PooledConsumer]
) -> None:
    pool = pools(test_registry, workers=1, chunk_messages=1000)
    topic, payload = _acme_batch("bin-00001", 1, T0)[0]
    for crash in range(MAX_CRASHES):
        worker = pool._workers[0]
        os.kill(worker.proc.pid, signal.SIGSTOP)
        if crash == 0:
            pool.handle(topic, payload, 1, 1)
            assert pool.take().acks == []  # sent to the stopped worker
        os.kill(worker.proc.pid, signal.SIGKILL)
        deadline = time.monotonic() + 10
        while pool._workers[0] is worker:
            assert time.monotonic() < deadline, "no worker started after the kill"
            time.sleep(0.01)
    taken = merged(run_consumer(pool, [], take_every=1))

    assert pool.restarts == MAX_CRASHES
    assert taken.acks == [(1, 1)]  # acknowledged: the payload is kept as a dead letter
    assert len(taken.batch) == 0
    [rejection] = taken.rejections
    assert rejection.raw.payload == payload
    assert rejection.raw.device_id == "bin-00001"
    assert f"died {MAX_CRASHES} times" in rejection.error.detail
    assert pool.counters.codec_bugs == 1
    # The pool goes on decoding with the worker that replaced it.
    after = merged(run_consumer(pool, _acme_batch("bin-00001", 5, T0 + 10), take_every=5))
    assert len(after.batch) == 10


def test_a_device_registered_just_before_its_first_message_is_known_to_the_workers(
    test_registry: Registry, pools: Callable[..., PooledConsumer]
) -> None:
    pool = pools(test_registry, workers=2, chunk_messages=1)
    run_consumer(pool, _acme_batch("bin-00001", 4, T0), take_every=4)  # workers loaded, busy
    for k in range(5):
        device = f"bin-new-{k}"
        bin_1 = test_registry.device("bin-00001")
        test_registry.put_devices([Device(id=device, vendor="acme", profile=bin_1.profile)])
        taken = merged(run_consumer(pool, _acme_batch(device, 1, T0 + k), take_every=1))
        assert taken.rejections == [], taken.rejections[0].error
        assert set(taken.batch.device.tolist()) == {test_registry.interner.devices[device].index}


def test_an_in_memory_registry_is_refused_with_the_reason(tmp_path: Path) -> None:
    registry = Registry("sqlite://")
    with pytest.raises(ValueError, match="in-memory"):
        PooledConsumer(Consumer(registry), workers=1)
    with pytest.raises(ValueError, match="at least one worker"):
        PooledConsumer(Consumer(Registry(f"sqlite:///{tmp_path / 'r.db'}")), workers=0)


def test_settle_brings_back_every_chunk_for_one_last_take(
    test_registry: Registry, pools: Callable[..., PooledConsumer]
) -> None:
    """A clean stop hands over everything received: nothing is left for the broker to send again."""
    pool = pools(test_registry, workers=2, chunk_messages=7)
    messages = _acme_batch("bin-00001", 100, T0)
    for i, (topic, payload) in enumerate(messages):
        pool.handle(topic, payload, i + 1, 1)
    assert pool.settle(10.0)
    taken = pool.take()
    assert taken.acks == [(i + 1, 1) for i in range(100)]
    assert len(taken.batch) == 200
    assert pool.pending == 0


def test_a_cluster_slots_workers_leave_other_slots_devices_as_the_hub_does(
    test_registry: Registry, pools: Callable[..., PooledConsumer]
) -> None:
    """With an ingest worker's slot, messages of devices other slots own are acknowledged, not decoded."""
    slot = Slot(worker=1, workers=2)
    messages = golden_messages() * 2
    reference = Consumer(test_registry, options(slot), clock=SteppedClock())
    want = merged(run_consumer(reference, messages, take_every=5))
    pool = pools(test_registry, workers=2, chunk_messages=4, clock=SteppedClock(), slot=slot)
    got = merged(run_consumer(pool, messages, take_every=5))

    assert reference.counters.foreign > 0
    assert reference.counters.readings > 0
    assert_same(got, want)
    assert pool.counters == reference.counters
