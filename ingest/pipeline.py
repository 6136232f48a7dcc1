"""The ingest pipeline: transport -> decode -> normalise -> store -> ack -> downstream, with back-pressure."""

from __future__ import annotations

import asyncio
import contextlib
import logging
import math
import threading
import time
from collections import deque
from collections.abc import Awaitable, Callable, Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass

from devices.partitions import Slot, owned_device_ids
from devices.registry import Registry
from ingest import topics
from ingest.batch import ReadingBatch
from ingest.consumer import Consumer, StatusChange, Taken
from ingest.deadletter import DeadLetterStore
from ingest.decodepool import PooledConsumer
from ingest.errors import StoreError
from ingest.flags import DeviceFlag, FlagHandler
from ingest.mqtt import MqttOptions, MqttTransport
from ingest.normalise import RangeTable, flag_out_of_range
from ingest.ratelimit import RateLimiter, RateLimits
from ingest.skew import SkewWatch
from ingest.spool import Spool, SpoolError
from ingest.store import Store

logger = logging.getLogger(__name__)

BatchHandler = Callable[[ReadingBatch], Awaitable[None]]
StatusHandler = Callable[[Sequence[StatusChange]], Awaitable[None]]

_REPLAY_READINGS = (
    50_000  # readings per replay write: spooled batches are a flush each, often small
)


@dataclass(frozen=True, slots=True)
class StoreHealth:
    """How the time-series store is doing, as the pipeline sees it (handed to store watchers).

    Attributes:
        failing: the last write (or replay) failed.
        blocked: neither the store nor the spool takes readings: the pipeline holds back its
            acknowledgements (back-pressure) and the broker keeps the messages; the hub is blind
            to new readings until the store or the spool takes them again.
        spooled: readings waiting in the spool.
        error: the last failure, for people ('' when none).
    """

    failing: bool
    blocked: bool
    spooled: int
    error: str = ""


StoreWatcher = Callable[[StoreHealth], None]
"""Called (on a worker thread) whenever `StoreHealth.failing` or `StoreHealth.blocked` changes."""


@dataclass(frozen=True, slots=True)
class _Staged:
    """A batch taken from the consumer, flagged, with its store write queued."""

    taken: Taken
    submitted: list[tuple[Taken, asyncio.Future[None]]]
    flags: list[DeviceFlag]
    started: float
    persisting: asyncio.Future[int]


@dataclass(slots=True)
class PipelineStats:
    """What the pipeline has done, for health checks and metrics."""

    flushes: int = 0
    stored: int = 0
    duplicates: int = 0
    store_errors: int = 0
    spooled: int = 0  # readings the store refused that went to the spool (and were acknowledged)
    blocked_waits: int = 0  # times neither the store nor the spool took a batch (back-pressure)
    handler_errors: int = 0
    last_flush_ms: float = 0.0
    writes: int = 0  # store writes that took a batch (several flushes' readings each, coalesced)
    last_write_ms: float = 0.0
    rate_limited: int = 0  # readings rejected by the per-device rate limit (ingest.ratelimit)
    clock_skewed: int = 0  # readings kept flagged CLOCK_SKEW (ingest.skew)


class IngestPipeline:
    """Moves decoded readings to the store and acknowledges their messages only once they are durable.

    The consumer decodes on the transport thread; this task takes what it decoded every
    ``flush_interval`` seconds, flags ranges, floods and clocks, queues the batch's write on the
    writer thread and hands it at once to the ``on_received`` handlers (live state, screens, rules:
    what people watch should not wait for the disk), then takes the next batch without waiting for
    the write. Behind that, in order, each batch's dead letters are written, its messages are
    acknowledged, and the ``on_batch`` handlers (what must see only durable readings) are awaited.
    A slow store or handler delays acknowledgements, and the broker's Receive Maximum then stops
    delivery: back-pressure, never a silent drop.

    With a ``spool`` (`ingest.spool`), a batch the store refuses is made durable there instead and
    acknowledged, so the hub keeps receiving, and rules keep firing, through a store outage; a replay
    task writes the spool to the store once it answers again. Only when the spool is full or its disk
    fails does the pipeline fall back to holding acknowledgements. Store watchers hear every change.
    """

    def __init__(
        self,
        registry: Registry,
        store: Store,
        dead_letters: DeadLetterStore,
        mqtt: MqttOptions,
        *,
        consumer: Consumer | PooledConsumer | None = None,
        flush_interval: float = 0.02,
        on_batch: Sequence[BatchHandler] = (),
        on_received: Sequence[BatchHandler] = (),
        on_status: Sequence[StatusHandler] = (),
        subscriptions: Sequence[str] = topics.SUBSCRIPTIONS,
        spool: Spool | None = None,
        rate_limits: RateLimits | None = None,
        skew_behind_ms: int = 3600_000,
        skew_confirm_ms: int = 20_000,
        on_flags: Sequence[FlagHandler] = (),
        max_in_flight: int = 32,
        slot: Slot | None = None,
        write_interval: float = 0.0,
    ) -> None:
        """Wire the stages; nothing runs until `run`.

        ``max_in_flight`` bounds the batches taken but not yet durable (see `run`). A store write
        starts at most every ``write_interval`` seconds; the batches taken meanwhile go together
        in the next one (see `_write_next`). With a ``slot``
        (one ingest worker of several, devices/partitions.py) the session subscribes to the telemetry
        topics of the slot's own devices only, following registry changes, and to every device's
        status topic (rare messages; the consumer leaves the others' to them).
        ``rate_limits`` None leaves devices unlimited (`ingest.ratelimit`); ``on_flags`` hears of
        devices flagged for flooding or a wrong clock (`ingest.flags`, `ingest.skew`).
        """
        self.registry = registry
        self.store = store
        self.dead_letters = dead_letters
        self.consumer: Consumer | PooledConsumer = consumer or Consumer(registry)
        self.slot = slot if slot is not None and not slot.alone else None
        if self.slot is not None:
            subscriptions = [s for s in subscriptions if not s.endswith("/up")]
        self.transport = MqttTransport(mqtt, [(s, 1) for s in subscriptions], self.consumer.handle)
        self._subscribed_version = -1
        self.flush_interval = flush_interval
        self._on_batch = list(on_batch)
        self._on_received = list(on_received)
        self._on_status = list(on_status)
        self._ranges = RangeTable.from_registry(registry)
        self.stats = PipelineStats()
        self.limiter = RateLimiter(registry, rate_limits) if rate_limits is not None else None
        self.skew = SkewWatch(
            registry.interner, behind_ms=skew_behind_ms, confirm_ms=skew_confirm_ms
        )
        self._on_flags = list(on_flags)
        self.spool = spool
        self._store_watchers: list[StoreWatcher] = []
        self._health: StoreHealth | None = None  # None: no write yet
        # Flushes and the replay task report from two worker threads: one change at a time, in order.
        self._health_lock = threading.Lock()
        # While the store is known to fail, new batches go straight to the spool: only the replay
        # task probes the store, so a flush never waits on a dead store's timeouts.
        self._store_down = False
        # Readings decoded off the MQTT path (HTTP uplinks), each with the future its sender awaits.
        self._submitted: list[tuple[Taken, asyncio.Future[None]]] = []
        # Batches handed to the received handlers whose write or acknowledgement is pending, oldest
        # first; each one's finish awaits the one before it.
        self.max_in_flight = max_in_flight
        self._in_flight: deque[asyncio.Future[int]] = deque()
        self._write_thread: ThreadPoolExecutor | None = None
        # Batches staged while a write runs (they go together in the next one), and whether one runs.
        self._unwritten: list[tuple[Taken, asyncio.Future[int]]] = []
        self._writing = False
        self.write_interval = write_interval
        self._write_started = -math.inf  # time.monotonic() of the last write's start
        self._write_due: asyncio.TimerHandle | None = None  # the next write, waiting its turn

    def add_batch_handler(self, handler: BatchHandler) -> None:
        """Also hand every stored batch to ``handler`` (after those given at construction)."""
        self._on_batch.append(handler)

    def add_store_watcher(self, watcher: StoreWatcher) -> None:
        """Tell ``watcher`` whenever the store starts or stops failing, or back-pressure starts or ends."""
        self._store_watchers.append(watcher)

    @property
    def store_health(self) -> StoreHealth | None:
        """The store's health as of the last write or replay (None before the first)."""
        return self._health

    def add_received_handler(self, handler: BatchHandler) -> None:
        """Also hand every batch to ``handler`` while it is being stored (see the class)."""
        self._on_received.append(handler)

    def submit(self, taken: Taken) -> asyncio.Future[None]:
        """Send readings decoded elsewhere (an HTTP uplink) down the MQTT messages' own path.

        They join the next flush: range flags, the ``on_received`` handlers, the store with its
        (device, metric, ts) key, dead letters, then the ``on_batch`` handlers. The future resolves
        once they and their dead letters are durable, which is when an HTTP sender may be answered
        (the HTTP counterpart of the MQTT acknowledgement). Call it on the pipeline's event loop.
        """
        done: asyncio.Future[None] = asyncio.get_running_loop().create_future()
        self._submitted.append((taken, done))
        return done

    async def run(self) -> None:
        """Consume until cancelled; on cancellation, finish what was decoded, then disconnect.

        Flushes are pipelined: every ``flush_interval`` a new batch is taken and handed to the
        ``on_received`` handlers (rules, live state, screens) even while earlier batches are still
        being written; the writes run one after another on one writer thread, and each batch is
        acknowledged only once it and every batch before it are durable, in the order received
        (MQTT requires PUBACKs in order). A slow write therefore delays acknowledgements, never
        alerts. At most ``max_in_flight`` batches wait on the store; past that the loop waits,
        the consumer's backlog grows and the broker's Receive Maximum stops delivery.
        """
        self._follow_registry()  # before connecting: `connected` then means subscribed to them
        self.transport.start()
        replaying = (
            asyncio.create_task(self._replay(), name="ingest.spool.replay")
            if self.spool is not None
            else None
        )
        try:
            next_flush = time.monotonic()
            while True:
                # Every ``flush_interval`` from the last start, not after the last end: a batch that
                # took a while must not add its time to the next batch's wait.
                next_flush += self.flush_interval
                await asyncio.sleep(max(0.0, next_flush - time.monotonic()))
                next_flush = max(next_flush, time.monotonic() - self.flush_interval)
                await self._make_room()
                if self.slot is not None and self._subscribed_version != self.registry.version:
                    await asyncio.to_thread(self._follow_registry)  # a query: off the loop
                staged = self._stage()
                if staged is not None:
                    received = self._start(staged)
                    # Shielded: a cancellation must not abandon a batch between store and ack.
                    await asyncio.shield(received)
        finally:
            if replaying is not None:
                replaying.cancel()
                with contextlib.suppress(asyncio.CancelledError):
                    await replaying
            with contextlib.suppress(Exception):
                await self._drain()
                if isinstance(self.consumer, PooledConsumer):  # what its workers hold, too
                    await asyncio.to_thread(self.consumer.settle, 5.0)
                await self.flush()
            self.transport.stop()
            self._close_writer()

    async def flush(self) -> int:
        """Store and acknowledge everything decoded so far, after any batch still in flight.

        Returns how many readings of this flush were new. Used at shutdown and by tests; `run`
        pipelines its flushes instead of waiting for each.
        """
        await self._drain()
        staged = self._stage()
        if staged is None:
            return 0
        self._start(staged)
        return await self._in_flight[-1]

    @property
    def in_flight(self) -> int:
        """Batches taken whose store write or acknowledgement is not done yet."""
        return sum(1 for f in self._in_flight if not f.done())

    def _follow_registry(self) -> None:
        """Subscribe to the telemetry of the slot's own devices, as of the registry's version."""
        if self.slot is None or self._subscribed_version == self.registry.version:
            return
        self._subscribed_version = self.registry.version
        devices = self.registry.interner.devices
        owned = owned_device_ids(self.registry, self.slot)
        self.transport.want_subscriptions(
            topics.up(entry.vendor, device)
            for device in owned
            if (entry := devices.get(device)) is not None
        )

    def _stage(self) -> _Staged | None:
        """Take what was decoded, flag ranges, floods and clocks, and queue its write."""
        if self.consumer.pending == 0 and not self._submitted:
            return None
        taken = self.consumer.take()
        if not taken.acks and not self._submitted:
            return None  # a decode pool's chunks are still being decoded
        submitted, self._submitted = self._submitted, []
        if submitted:
            taken = _merge(taken, [t for t, _ in submitted])
        started = time.perf_counter()
        if self._ranges.version != self.registry.version:
            self._ranges = RangeTable.from_registry(self.registry)
        taken.batch = flag_out_of_range(taken.batch, self._ranges)
        flags = self._limit_and_watch(taken)
        persisting: asyncio.Future[int] = asyncio.get_running_loop().create_future()
        self._unwritten.append((taken, persisting))
        self._write_next()
        return _Staged(taken, submitted, flags, started, persisting)

    def _write_next(self) -> None:
        """Start one store write of every batch waiting for one, unless a write is running.

        Coalescing is what lets a store keep up: a write costs a commit however few rows it
        carries, so while one is running the next batches queue and then go as one. Writes also
        start at most every ``write_interval``: DuckDB spends about a millisecond of CPU on any
        commit, which at a write per 10 ms flush is a tenth of a core before a row is stored.
        Waiting delays only acknowledgements; rules and screens have the readings already.
        """
        if self._writing or not self._unwritten or self._write_due is not None:
            return
        loop = asyncio.get_running_loop()
        wait = self._write_started + self.write_interval - time.monotonic()
        if wait > 0:
            self._write_due = loop.call_later(wait, self._write_when_due)
            return
        self._write_started = time.monotonic()
        group, self._unwritten = self._unwritten, []
        self._writing = True
        writing = loop.run_in_executor(self._writer(), self._persist, [t for t, _ in group])
        writing.add_done_callback(lambda done: self._written(group, done))

    def _write_when_due(self) -> None:
        self._write_due = None
        self._write_next()

    def _written(
        self, group: list[tuple[Taken, asyncio.Future[int]]], done: asyncio.Future[int]
    ) -> None:
        """A coalesced write ended: settle its batches' futures and start the next write."""
        self._writing = False
        for index, (_, persisting) in enumerate(group):
            if persisting.done():
                continue
            if done.cancelled():
                persisting.cancel()
            elif (exc := done.exception()) is not None:
                persisting.set_exception(exc)
            else:  # the group's count of new readings goes to its last batch
                persisting.set_result(done.result() if index == len(group) - 1 else 0)
        self._write_next()

    def _start(self, staged: _Staged) -> asyncio.Future[None]:
        """Hand a staged batch to the received handlers and chain its finish behind the last one."""
        received = asyncio.ensure_future(self._receive(staged.taken.batch))
        before = self._in_flight[-1] if self._in_flight else None
        self._in_flight.append(asyncio.ensure_future(self._finish(staged, received, before)))
        return received

    async def _receive(self, batch: ReadingBatch) -> None:
        if not len(batch):
            return
        for received in self._on_received:
            try:
                await received(batch)
            except Exception:  # a screen's or rule's bug must not stop the readings
                self.stats.handler_errors += 1
                logger.exception("handler %r failed on a batch", received)

    async def _finish(
        self,
        staged: _Staged,
        received: asyncio.Future[None],
        before: asyncio.Future[int] | None,
    ) -> int:
        """Once the batch is durable and every earlier one finished: ack, answer, tell the rest."""
        taken = staged.taken
        try:
            await received
            if before is not None:
                await before  # acknowledgements leave in the order the messages came
            new = await staged.persisting
        except BaseException as exc:
            _settle(staged.submitted, exc)
            raise
        self.transport.ack_many(taken.acks)
        _settle(staged.submitted)
        self.stats.flushes += 1
        self.stats.last_flush_ms = (time.perf_counter() - staged.started) * 1000
        if len(taken.batch):
            for handler in self._on_batch:
                await handler(taken.batch)
        if taken.statuses:
            for status_handler in self._on_status:
                await status_handler(taken.statuses)
        await self._tell_flags(staged.flags)
        return new

    async def _make_room(self) -> None:
        """Drop finished batches (raising the first failure) and wait while too many are in flight."""
        while self._in_flight and self._in_flight[0].done():
            self._in_flight.popleft().result()  # a write that raised stops the pipeline
        while len(self._in_flight) >= self.max_in_flight:
            await asyncio.shield(self._in_flight[0])
            self._in_flight.popleft().result()

    async def _drain(self) -> None:
        """Wait for every batch in flight; the first failure is raised once all are done."""
        failure: BaseException | None = None
        while self._in_flight:
            finishing = self._in_flight.popleft()
            try:
                await asyncio.shield(finishing)
            except Exception as exc:
                failure = failure or exc
        if failure is not None:
            raise failure

    def _writer(self) -> ThreadPoolExecutor:
        # One thread: writes land in the order taken, and the store sees one writer at a time.
        if self._write_thread is None:
            self._write_thread = ThreadPoolExecutor(1, thread_name_prefix="ingest-store")
        return self._write_thread

    def _close_writer(self) -> None:
        if self._write_thread is not None:
            self._write_thread.shutdown(wait=False)
            self._write_thread = None

    async def _tell_flags(self, flags: list[DeviceFlag]) -> None:
        if flags:
            for handler in self._on_flags:
                await handler(flags)

    def _limit_and_watch(self, taken: Taken) -> list[DeviceFlag]:
        """Cut floods back to the rate limit and flag wrong clocks, in place; returns flag changes."""
        now_ms = time.time_ns() // 1_000_000
        flags: list[DeviceFlag] = []
        if self.limiter is not None:
            limited = self.limiter.apply(taken.batch, now_ms)
            taken.batch = limited.batch
            taken.rejections.extend(limited.rejections)
            self.consumer.counters.dead_letters += len(limited.rejections)
            self.stats.rate_limited += limited.rejected
            flags.extend(limited.flags)
        watched = self.skew.apply(taken.batch, now_ms)
        taken.batch = watched.batch
        self.stats.clock_skewed += watched.skewed
        flags.extend(watched.flags)
        return flags

    def _persist(self, group: Sequence[Taken]) -> int:
        """Write readings (to the store, else the spool) and dead letters (writer thread)."""
        batch = group[0].batch if len(group) == 1 else ReadingBatch.concat([t.batch for t in group])
        new = self._write(batch) if len(batch) else 0
        self.dead_letters.write([r for taken in group for r in taken.rejections])
        return new

    def _write(self, batch: ReadingBatch) -> int:
        """Store ``batch``, or spool it; until one of them takes it, wait and retry (back-pressure)."""
        delay = 0.1
        blocked = False  # stays set until the store or the spool takes the batch: no flapping alert
        store_error = self._health.error if self._health is not None else ""
        while True:
            if not self._store_down or self.spool is None or blocked:
                try:
                    t0 = time.perf_counter()
                    new = self.store.write(batch)
                except StoreError as exc:
                    self.stats.store_errors += 1
                    self._store_down = True
                    store_error = str(exc)
                    self._report(failing=True, blocked=blocked, error=store_error)
                else:
                    self.stats.last_write_ms = (time.perf_counter() - t0) * 1000
                    self.stats.writes += 1
                    self.stats.stored += new
                    self.stats.duplicates += len(batch) - new
                    self._store_down = False
                    self._report(failing=False, blocked=False)
                    return new
            spool_error = "no spool configured"
            if self.spool is not None:
                try:
                    self.spool.append(batch)
                except SpoolError as exc:
                    spool_error = str(exc)
                else:
                    self.stats.spooled += len(batch)
                    self._report(failing=True, blocked=False)
                    return 0
            # Not acknowledged, so nothing is lost while we wait: the broker keeps the messages
            # and stops sending once Receive Maximum is reached.
            blocked = True
            self.stats.blocked_waits += 1
            self._report(failing=True, blocked=True, error=f"{store_error}; {spool_error}")
            time.sleep(delay)
            delay = min(delay * 2, 5.0)

    async def _replay(self) -> None:
        """Write what the spool holds to the store, oldest first, whenever the store takes it."""
        if self.spool is None:
            return
        delay = 0.2
        while True:
            if len(self.spool) == 0:
                await asyncio.sleep(0.2)
                continue
            if await asyncio.to_thread(self._replay_one):
                delay = 0.2
                await asyncio.sleep(0)  # let the flushes in between segments
            else:
                await asyncio.sleep(delay)
                delay = min(delay * 2, 5.0)

    def _replay_one(self) -> bool:
        """Write the spool's oldest batches to the store; False if the store refused them (worker thread)."""
        spool = self.spool
        oldest = spool.oldest(_REPLAY_READINGS) if spool is not None else None
        if spool is None or oldest is None:
            return True
        paths, batch = oldest
        try:
            new = self.store.write(batch)
        except StoreError as exc:
            self.stats.store_errors += 1
            self._store_down = True
            blocked = self._health is not None and self._health.blocked
            self._report(failing=True, blocked=blocked, error=str(exc))
            return False
        spool.remove(paths)
        self.stats.stored += new
        self.stats.duplicates += len(batch) - new
        self._store_down = False
        self._report(failing=False, blocked=False)
        return True

    def _report(self, *, failing: bool, blocked: bool, error: str = "") -> None:
        """Keep the store's health; log and tell the watchers when it changes (not on every retry)."""
        with self._health_lock:
            self._change_health(failing=failing, blocked=blocked, error=error)

    def _change_health(self, *, failing: bool, blocked: bool, error: str) -> None:
        before = self._health
        if not error and failing and before is not None:
            error = before.error
        spooled = self.spool.readings if self.spool is not None else 0
        self._health = StoreHealth(failing, blocked, spooled, error)
        if before is not None and (before.failing, before.blocked) == (failing, blocked):
            return
        if blocked:
            logger.error("store and spool refuse readings; holding acknowledgements: %s", error)
        elif failing:
            logger.warning("store write failed; spooling readings: %s", error)
        elif before is not None:
            logger.info("store writes again (%s readings still spooled)", spooled)
        for watcher in self._store_watchers:
            try:
                watcher(self._health)
            except Exception:  # a watcher's bug must not stop the readings
                logger.exception("store watcher %r failed", watcher)


def _merge(taken: Taken, others: Sequence[Taken]) -> Taken:
    """One take of the consumer's readings and those submitted off the MQTT path, in that order."""
    return Taken(
        batch=ReadingBatch.concat([taken.batch, *(t.batch for t in others)]),
        rejections=[*taken.rejections, *(r for t in others for r in t.rejections)],
        acks=[*taken.acks, *(a for t in others for a in t.acks)],
        statuses=[*taken.statuses, *(s for t in others for s in t.statuses)],
        messages=taken.messages + sum(t.messages for t in others),
    )


def _settle(
    submitted: Sequence[tuple[Taken, asyncio.Future[None]]], exc: BaseException | None = None
) -> None:
    """Answer the submitters: their readings are durable, or their flush failed with ``exc``."""
    for _, done in submitted:
        if done.done():
            continue
        if exc is None:
            done.set_result(None)
        elif isinstance(exc, asyncio.CancelledError):
            done.cancel()
        else:
            done.set_exception(exc)
