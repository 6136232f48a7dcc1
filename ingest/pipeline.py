"""The ingest pipeline: transport -> decode -> normalise -> store -> ack -> downstream, with back-pressure."""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time
from collections.abc import Awaitable, Callable, Sequence
from dataclasses import dataclass

from devices.registry import Registry
from ingest import topics
from ingest.batch import ReadingBatch
from ingest.consumer import Consumer, StatusChange, Taken
from ingest.deadletter import DeadLetterStore
from ingest.errors import StoreError
from ingest.mqtt import MqttOptions, MqttTransport
from ingest.normalise import RangeTable, flag_out_of_range
from ingest.store import Store

logger = logging.getLogger(__name__)

BatchHandler = Callable[[ReadingBatch], Awaitable[None]]
StatusHandler = Callable[[Sequence[StatusChange]], Awaitable[None]]


@dataclass(slots=True)
class PipelineStats:
    """What the pipeline has done, for health checks and metrics."""

    flushes: int = 0
    stored: int = 0
    duplicates: int = 0
    store_errors: int = 0
    handler_errors: int = 0
    last_flush_ms: float = 0.0
    last_write_ms: float = 0.0


class IngestPipeline:
    """Moves decoded readings to the store and acknowledges their messages only once they are durable.

    The consumer decodes on the transport thread; this task takes what it decoded every
    ``flush_interval`` seconds, flags ranges, and starts writing the batch in a worker thread; while
    the store writes, the ``on_received`` handlers see the batch (live state, screens, rules: what
    people watch should not wait for the disk); then it writes dead letters, acknowledges, and awaits
    the ``on_batch`` handlers (what must see only durable readings). A slow store or handler delays
    acknowledgements, and the broker's Receive Maximum then stops delivery: back-pressure, never a
    silent drop.
    """

    def __init__(
        self,
        registry: Registry,
        store: Store,
        dead_letters: DeadLetterStore,
        mqtt: MqttOptions,
        *,
        consumer: Consumer | None = None,
        flush_interval: float = 0.02,
        on_batch: Sequence[BatchHandler] = (),
        on_received: Sequence[BatchHandler] = (),
        on_status: Sequence[StatusHandler] = (),
        subscriptions: Sequence[str] = topics.SUBSCRIPTIONS,
    ) -> None:
        """Wire the stages; nothing runs until `run`."""
        self.registry = registry
        self.store = store
        self.dead_letters = dead_letters
        self.consumer = consumer or Consumer(registry)
        self.transport = MqttTransport(mqtt, [(s, 1) for s in subscriptions], self.consumer.handle)
        self.flush_interval = flush_interval
        self._on_batch = list(on_batch)
        self._on_received = list(on_received)
        self._on_status = list(on_status)
        self._ranges = RangeTable.from_registry(registry)
        self.stats = PipelineStats()

    def add_batch_handler(self, handler: BatchHandler) -> None:
        """Also hand every stored batch to ``handler`` (after those given at construction)."""
        self._on_batch.append(handler)

    def add_received_handler(self, handler: BatchHandler) -> None:
        """Also hand every batch to ``handler`` while it is being stored (see the class)."""
        self._on_received.append(handler)

    async def run(self) -> None:
        """Consume until cancelled; on cancellation, flush what was decoded, then disconnect."""
        self.transport.start()
        flushing: asyncio.Task[int] | None = None
        try:
            next_flush = time.monotonic()
            while True:
                # Every ``flush_interval`` from the last start, not after the last end: a batch that
                # took a while to store must not add its time to the next batch's wait.
                next_flush += self.flush_interval
                await asyncio.sleep(max(0.0, next_flush - time.monotonic()))
                next_flush = max(next_flush, time.monotonic() - self.flush_interval)
                # Shielded: a cancellation must not abandon a batch between store and acknowledgement.
                flushing = asyncio.ensure_future(self.flush())
                await asyncio.shield(flushing)
        finally:
            with contextlib.suppress(Exception):
                if flushing is not None and not flushing.done():
                    await flushing
                await self.flush()
            self.transport.stop()

    async def flush(self) -> int:
        """Store and acknowledge everything decoded so far; returns how many readings were new."""
        if self.consumer.pending == 0:
            return 0
        taken = self.consumer.take()
        started = time.perf_counter()
        if self._ranges.version != self.registry.version:
            self._ranges = RangeTable.from_registry(self.registry)
        taken.batch = flag_out_of_range(taken.batch, self._ranges)
        persisting = asyncio.ensure_future(asyncio.to_thread(self._persist, taken))
        try:
            if len(taken.batch):
                for received in self._on_received:
                    try:
                        await received(taken.batch)
                    except Exception:  # a screen's or rule's bug must not stop the readings
                        self.stats.handler_errors += 1
                        logger.exception("handler %r failed on a batch", received)
        finally:
            new = await persisting
        self.transport.ack_many(taken.acks)
        self.stats.flushes += 1
        self.stats.last_flush_ms = (time.perf_counter() - started) * 1000
        if len(taken.batch):
            for handler in self._on_batch:
                await handler(taken.batch)
        if taken.statuses:
            for status_handler in self._on_status:
                await status_handler(taken.statuses)
        return new

    def _persist(self, taken: Taken) -> int:
        """Write readings and dead letters, retrying the store until it takes them (worker thread)."""
        batch = taken.batch
        new = 0
        if len(batch):
            delay = 0.1
            while True:
                try:
                    t0 = time.perf_counter()
                    new = self.store.write(batch)
                    self.stats.last_write_ms = (time.perf_counter() - t0) * 1000
                    break
                except StoreError:
                    # Not acknowledged yet, so nothing is lost while we wait: the broker keeps
                    # the messages and stops sending once Receive Maximum is reached.
                    self.stats.store_errors += 1
                    logger.exception("store write failed; retrying in %.1f s", delay)
                    time.sleep(delay)
                    delay = min(delay * 2, 5.0)
            self.stats.stored += new
            self.stats.duplicates += len(batch) - new
        self.dead_letters.write(taken.rejections)
        return new
