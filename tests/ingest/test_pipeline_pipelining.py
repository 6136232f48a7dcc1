"""Pipelined flushes through a real Mosquitto: rules and screens see batches while the store writes.

A store write that takes a while (a DuckDB checkpoint, an InfluxDB hiccup) must delay only the
acknowledgements: the received handlers keep getting new batches, the held batches are then written
together, and every acknowledgement leaves in the order its message came.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import threading
import time
from collections.abc import Iterator, Sequence

import pytest

from devices.registry import Registry
from ingest.batch import ReadingBatch
from ingest.consumer import Consumer, DecodeOptions
from ingest.deadletter import DeadLetterStore
from ingest.mqtt import MqttOptions
from ingest.pipeline import IngestPipeline
from ingest.store.filestore import FileStore
from tests.conftest import Broker
from tests.ingest.codecs.conftest import SITE_ZONE
from tests.ingest.conftest import RunningPipeline
from tests.publisher import Publisher


class HeldStore:
    """A real FileStore whose first write waits until released (a slow checkpoint, on demand)."""

    def __init__(self, store: FileStore) -> None:
        self.store = store
        self.release = threading.Event()
        self.writing = threading.Event()
        self.writes: list[int] = []  # rows per write, in order

    def write(self, batch: ReadingBatch) -> int:
        self.writing.set()
        if not self.writes:
            assert self.release.wait(30), "test never released the store"
        self.writes.append(len(batch))
        return self.store.write(batch)

    def __getattr__(self, name: str) -> object:
        return getattr(self.store, name)


class FailingStore(HeldStore):
    """A store with a bug: its write raises something that is not a StoreError."""

    def write(self, batch: ReadingBatch) -> int:
        msg = "a bug in the store"
        raise RuntimeError(msg)


@contextlib.contextmanager
def released(held: HeldStore) -> Iterator[None]:
    """Release the held write on the way out, so a failed assert never leaves the pipeline stuck."""
    try:
        yield
    finally:
        held.release.set()


def _messages(first: int, count: int, t0: int) -> list[tuple[str, bytes]]:
    return [
        (
            "sensors/acme/bin-00001/up",
            json.dumps({"ts": t0 + i * 1000, "fill": 30, "bat": 90}).encode(),
        )
        for i in range(first, first + count)
    ]


def _batch_sizes(pipeline: IngestPipeline) -> list[int]:
    """The size of every batch the received handlers get, in order."""
    seen: list[int] = []

    async def received(batch: ReadingBatch) -> None:
        seen.append(len(batch))

    pipeline.add_received_handler(received)
    return seen


def _record_acks(pipeline: IngestPipeline) -> list[int]:
    """Every packet id the pipeline acknowledges, in the order it acknowledges them."""
    acked: list[int] = []
    ack_many = pipeline.transport.ack_many

    def recording(acks: Sequence[tuple[int, int]]) -> None:
        acked.extend(mid for mid, _qos in acks)
        ack_many(acks)

    pipeline.transport.ack_many = recording  # type: ignore[method-assign,assignment]
    return acked


def test_a_slow_write_holds_acks_not_the_received_handlers(
    private_broker: Broker,
    test_registry: Registry,
    store: FileStore,
    dead_letters: DeadLetterStore,
) -> None:
    held = HeldStore(store)
    t0 = int(time.time() * 1000) - 3_600_000
    with (
        RunningPipeline(test_registry, held, dead_letters, private_broker) as running,  # type: ignore[arg-type]
        released(held),
    ):
        pipeline = running.pipeline
        seen = _batch_sizes(pipeline)
        acked = _record_acks(pipeline)
        with Publisher(private_broker.host, private_broker.port) as pub:
            pub.send(_messages(0, 10, t0))
            assert held.writing.wait(10)
            # The first write is stuck; more messages come, over several flush intervals.
            for k in range(1, 6):
                pub.send(_messages(10 * k, 10, t0))
                time.sleep(pipeline.flush_interval * 3)
            running.wait_until(lambda p: sum(seen) == 120)  # two readings a message
            assert len(seen) >= 2, "later batches reached the handlers while the write was held"
            assert acked == [], "nothing is acknowledged before it is durable"
            assert pipeline.stats.stored == 0
            held.release.set()
            running.wait_until(lambda p: p.stats.stored == 120 and len(acked) == 60)
    # The batches that queued behind the held write went to the store together, not one by one.
    assert sum(held.writes) == 120
    assert len(held.writes) < len(seen)
    # Mosquitto numbers a fresh session's messages 1, 2, 3, ...: PUBACKs left in that order.
    assert acked == sorted(acked)
    assert len(set(acked)) == 60
    assert store.count() == 120


def test_batches_in_flight_are_bounded(
    private_broker: Broker,
    test_registry: Registry,
    store: FileStore,
    dead_letters: DeadLetterStore,
) -> None:
    held = HeldStore(store)
    t0 = int(time.time() * 1000) - 3_600_000
    with (
        RunningPipeline(test_registry, held, dead_letters, private_broker) as running,  # type: ignore[arg-type]
        released(held),
    ):
        pipeline = running.pipeline
        pipeline.max_in_flight = 2
        seen = _batch_sizes(pipeline)
        with Publisher(private_broker.host, private_broker.port) as pub:
            pub.send(_messages(0, 5, t0))
            assert held.writing.wait(10)
            for k in range(1, 8):
                pub.send(_messages(5 * k, 5, t0))
                time.sleep(pipeline.flush_interval * 3)
            # Two batches wait on the store: the loop takes no third (the consumer holds the rest).
            assert len(seen) == 2
            assert pipeline.in_flight == 2
            held.release.set()
            running.wait_until(lambda p: p.stats.stored == 80)
    assert sum(seen) == 80
    assert store.count() == 80


class TimedStore(HeldStore):
    """A real FileStore that notes when each write starts."""

    def __init__(self, store: FileStore) -> None:
        super().__init__(store)
        self.release.set()
        self.started: list[float] = []

    def write(self, batch: ReadingBatch) -> int:
        self.started.append(time.monotonic())
        return super().write(batch)


def test_writes_start_at_most_every_write_interval_and_the_handlers_do_not_wait(
    private_broker: Broker,
    test_registry: Registry,
    store: FileStore,
    dead_letters: DeadLetterStore,
) -> None:
    timed = TimedStore(store)
    t0 = int(time.time() * 1000) - 3_600_000
    interval = 0.3
    with RunningPipeline(
        test_registry,
        timed,  # type: ignore[arg-type]
        dead_letters,
        private_broker,
        write_interval=interval,
    ) as running:
        pipeline = running.pipeline
        seen = _batch_sizes(pipeline)
        acked = _record_acks(pipeline)
        with Publisher(private_broker.host, private_broker.port) as pub:
            for k in range(30):  # ~1.2 s of messages, a few flush intervals apart
                pub.send(_messages(4 * k, 4, t0))
                time.sleep(pipeline.flush_interval * 4)
            running.wait_until(lambda p: p.stats.stored == 240 and len(acked) == 120)
    # The handlers got the readings flush by flush; the store took them a few flushes at a time.
    assert sum(seen) == 240
    assert sum(timed.writes) == 240
    assert len(timed.writes) == pipeline.stats.writes
    assert len(seen) >= 2 * len(timed.writes)
    gaps = [b - a for a, b in zip(timed.started, timed.started[1:], strict=False)]
    assert min(gaps) >= interval - 0.05, gaps
    assert acked == sorted(acked)
    assert len(set(acked)) == 120
    assert store.count() == 240


def test_a_write_that_raises_stops_the_pipeline(
    private_broker: Broker,
    test_registry: Registry,
    store: FileStore,
    dead_letters: DeadLetterStore,
) -> None:
    """A bug in a write (not a store outage) ends `run` with it, for the supervisor to see."""
    pipeline = IngestPipeline(
        test_registry,
        FailingStore(store),  # type: ignore[arg-type]
        dead_letters,
        MqttOptions(host=private_broker.host, port=private_broker.port, client_id="hub-failing"),
        consumer=Consumer(test_registry, DecodeOptions(site_zone=SITE_ZONE)),
    )
    t0 = int(time.time() * 1000) - 3_600_000

    async def main() -> None:
        running = asyncio.create_task(pipeline.run())
        await asyncio.to_thread(pipeline.transport.connected.wait, 10)
        with Publisher(private_broker.host, private_broker.port) as pub:
            await asyncio.to_thread(pub.send, _messages(0, 3, t0))
        await asyncio.wait_for(running, 20)

    with pytest.raises(RuntimeError, match="a bug in the store"):
        asyncio.run(main())
    assert store.count() == 0
