"""Decoding in worker processes, so one hub decodes more payloads than one core can.

The in-process `Consumer` decodes on the MQTT network thread, and Python's global lock makes that
thread, the store writer and the rules share one core: 100-reading messages top out near 0.5 M
readings/s however many cores the machine has. With ``ingest.decode_workers`` > 0 the network
thread only frames messages and gathers them into chunks; each chunk is decoded by one of N worker
processes (``python -m ingest.decodeworker``, each with its own `Consumer` over its own copy of the
registry) and comes back as columns. `PooledConsumer` has the consumer's interface, so the
pipeline around it is unchanged:

- **Order.** Chunks are numbered; `take` hands over finished chunks in that order only, so readings,
  dead letters and acknowledgements leave in the order the messages arrived (MQTT wants PUBACKs in
  order), whichever worker finished first.
- **Nothing lost.** A chunk stays in memory until its result is taken; a worker that dies (killed,
  out of memory) is started again and gets its unfinished chunks again. Its messages are not
  acknowledged meanwhile, so even a hub that dies with them is redelivered them by the broker. A
  chunk that kills its worker `MAX_CRASHES` times is dead-lettered whole, with that reason and the
  payloads, rather than stop ingestion.
- **Registry changes.** Each chunk carries the registry's change counter as the hub saw it when the
  chunk was cut; a worker that has loaded less reloads before decoding it. A device registered
  just before its first message is therefore known to the worker that decodes the message.

What it costs: a chunk waits for the next flush (``ingest.flush_interval_s``, 10 ms) unless it fills
first, and its result is taken at the flush after it returns, so readings reach rules and screens
one to two flush intervals later than in-process decoding; and each worker holds its own registry
(about 95 MB for 100,000 devices), which it loads again whole after every change (about a second
for 100,000 devices: a bulk import is best made in a few large requests). Worth it on a machine with
cores to spare for a city whose gateways send batches; not by default.
"""

from __future__ import annotations

import logging
import os
import pickle
import queue
import subprocess
import sys
import threading
import time
from dataclasses import dataclass, fields
from multiprocessing.connection import Connection

from devices.intern import Interner
from devices.registry import Registry
from ingest.batch import ReadingBatch
from ingest.codecs.base import DecodeError, DecodeReason, RawMessage
from ingest.columns import Rejection
from ingest.consumer import Clock, Consumer, DecodeOptions, IngestCounters, StatusChange, Taken
from ingest.topics import parse as parse_topic

logger = logging.getLogger(__name__)

CHUNK_MESSAGES = 64
"""A chunk is sent once it holds this many messages (or `CHUNK_BYTES`), else at the next take."""
CHUNK_BYTES = 512 * 1024
MAX_CRASHES = 3
"""A chunk whose worker died this many times while decoding it is dead-lettered whole."""

Item = tuple[str, bytes, int]
"""One message for a worker: topic, payload, receive time (epoch ms)."""


@dataclass(frozen=True, slots=True)
class WorkerConfig:
    """What a worker needs to decode as the hub's own consumer would (sent to it at start)."""

    registry_url: str
    options: DecodeOptions


@dataclass(slots=True)
class ChunkResult:
    """One decoded chunk, as a worker sends it back."""

    seq: int
    batch: ReadingBatch
    rejections: list[Rejection]
    statuses: list[StatusChange]
    messages: int
    counters: IngestCounters


@dataclass(slots=True)
class _Chunk:
    """A chunk the hub sent and has not handed over yet."""

    items: list[Item]
    acks: list[tuple[int, int]]
    version: int
    worker: int = -1
    crashes: int = 0


class _Worker:
    """One worker process with the two threads that talk to it."""

    def __init__(self, index: int, pool: PooledConsumer) -> None:
        self.index = index
        self._pool = pool
        to_child_r, to_child_w = os.pipe()
        from_child_r, from_child_w = os.pipe()
        self.proc = subprocess.Popen(  # noqa: S603 - our own interpreter and module
            [sys.executable, "-m", "ingest.decodeworker", str(to_child_r), str(from_child_w)],
            pass_fds=(to_child_r, from_child_w),
            stdin=subprocess.DEVNULL,
        )
        os.close(to_child_r)
        os.close(from_child_w)
        self._out = Connection(to_child_w, readable=False)
        self._in = Connection(from_child_r, writable=False)
        self.outbox: queue.SimpleQueue[bytes | None] = queue.SimpleQueue()
        self.outbox.put(pickle.dumps(pool.config))
        # Chunks sent and not returned (read and written under the pool's lock).
        self.outstanding = 0
        self._sender = threading.Thread(
            target=self._send_loop, name=f"decode-send-{index}", daemon=True
        )
        self._receiver = threading.Thread(
            target=self._receive_loop, name=f"decode-recv-{index}", daemon=True
        )
        self._sender.start()
        self._receiver.start()

    def _send_loop(self) -> None:
        # A thread of its own: a send blocks until the worker has read the chunk, and the network
        # thread must go on reading the socket meanwhile.
        while (data := self.outbox.get()) is not None:
            try:
                self._out.send_bytes(data)
            except OSError:
                return  # the worker died: the receiver sees it and starts another

    def _receive_loop(self) -> None:
        while True:
            try:
                data = self._in.recv_bytes()
            except (EOFError, OSError):
                self._pool.worker_died(self)
                return
            result: ChunkResult = pickle.loads(data)  # noqa: S301 - our own worker's bytes
            self._pool.finished(self, result)

    def stop(self, timeout: float = 5.0) -> None:
        """Ask the worker to end, then make sure it did.

        Each pipe end is closed only once the thread using it is done with it: a descriptor closed
        under a thread still writing could be reused by another file and written to.
        """
        self.outbox.put(None)
        self._sender.join(timeout)
        if self._sender.is_alive():  # stuck in a send to a worker that no longer reads
            self.proc.kill()
            self._sender.join()
        self._out.close()  # the worker reads EOF and exits
        try:
            self.proc.wait(timeout)
        except subprocess.TimeoutExpired:
            self.proc.kill()
            self.proc.wait()
        if threading.current_thread() is not self._receiver:
            self._receiver.join(timeout)
        self._in.close()


class PooledConsumer:
    """A `Consumer` whose decoding runs in worker processes (see the module).

    The network thread calls `handle`; the pipeline calls `take` every flush. `take` never waits for
    a worker: what is not back yet goes with a later take.
    """

    def __init__(
        self,
        local: Consumer,
        *,
        workers: int,
        chunk_messages: int = CHUNK_MESSAGES,
    ) -> None:
        """Start ``workers`` processes that decode as ``local`` would, over its registry's database.

        ``local``, the in-process consumer, gives the registry, the `DecodeOptions` the workers get
        and the clock of receive times; it is kept for what is not hot (the decode preview's and
        HTTP uplinks' sandboxes). A chunk goes to a worker once it holds ``chunk_messages``
        messages or `CHUNK_BYTES`, else at the next `take`.

        Raises:
            ValueError: no workers, or an in-memory registry the workers cannot open.
        """
        if workers < 1:
            msg = "a decode pool needs at least one worker"
            raise ValueError(msg)
        registry = local.registry
        url = registry.engine.url
        if url.get_backend_name() == "sqlite" and url.database in (None, "", ":memory:"):
            msg = "decode workers need a registry they can open: an in-memory one is not"
            raise ValueError(msg)
        self.config = WorkerConfig(url.render_as_string(hide_password=False), local.options)
        self._registry = registry
        self._chunk_messages = chunk_messages
        self._clock = local.clock
        self._local = local
        self.counters = self._local.counters
        self._lock = threading.Lock()
        self._items: list[Item] = []
        self._acks: list[tuple[int, int]] = []
        self._bytes = 0
        self._chunks: dict[int, _Chunk] = {}
        self._results: dict[int, ChunkResult] = {}
        self._next_seq = 0
        self._take_seq = 0
        self._pending = 0
        self._closing = False
        self.restarts = 0
        self._workers = [_Worker(k, self) for k in range(workers)]

    # -- the Consumer interface -----------------------------------------------------------------

    @property
    def max_payload(self) -> int:
        """The largest payload accepted, in bytes."""
        return self._local.max_payload

    @property
    def pending(self) -> int:
        """Messages received and not yet handed over (decoding, or decoded and waiting)."""
        return self._pending

    @property
    def workers(self) -> int:
        """How many decode processes run."""
        return len(self._workers)

    @property
    def local(self) -> Consumer:
        """The in-process consumer with the same settings (the decode preview's)."""
        return self._local

    def sandbox(self, interner: Interner, *, clock: Clock | None = None) -> Consumer:
        """An in-process consumer for previews and HTTP uplinks (see `Consumer.sandbox`)."""
        return self._local.sandbox(interner, clock=clock)

    def handle(self, topic: str, payload: bytes, mid: int, qos: int) -> None:
        """Queue one message for decoding (called on the transport's thread). Never raises."""
        now_ms = int(self._clock() * 1000)
        with self._lock:
            self._items.append((topic, payload, now_ms))
            self._acks.append((mid, qos))
            self._pending += 1
            self._bytes += len(payload)
            if len(self._items) >= self._chunk_messages or self._bytes >= CHUNK_BYTES:
                self._cut()

    def take(self) -> Taken:
        """The chunks decoded so far, in the order their messages came, with the acks they owe."""
        with self._lock:
            if self._items:
                self._cut()
            ready: list[ChunkResult] = []
            acks: list[tuple[int, int]] = []
            while (result := self._results.pop(self._take_seq, None)) is not None:
                chunk = self._chunks.pop(self._take_seq)
                ready.append(result)
                acks.extend(chunk.acks)
                self._take_seq += 1
            self._pending -= len(acks)
        for result in ready:
            _add_counters(self.counters, result.counters)
        batch = (
            ReadingBatch.concat([r.batch for r in ready])
            if len(ready) > 1
            else (ready[0].batch if ready else ReadingBatch.empty())
        )
        return Taken(
            batch=batch,
            rejections=[j for r in ready for j in r.rejections],
            acks=acks,
            statuses=[s for r in ready for s in r.statuses],
            messages=sum(r.messages for r in ready),
        )

    def settle(self, timeout: float) -> bool:
        """Send what is gathered and wait until every chunk is back (or ``timeout`` s passed).

        For a clean stop: the next `take` then hands over everything received so far, and the
        broker has nothing of it to deliver again. Returns whether every chunk came back.
        """
        with self._lock:
            if self._items:
                self._cut()
        deadline = time.monotonic() + timeout
        while True:
            with self._lock:
                if self._chunks.keys() <= self._results.keys():
                    return True
            if time.monotonic() > deadline:
                return False
            time.sleep(0.005)

    def close(self) -> None:
        """Stop the workers (what they still hold is not acknowledged: the broker redelivers it)."""
        with self._lock:
            self._closing = True
            workers = list(self._workers)
        for worker in workers:
            worker.stop()

    # -- chunks ---------------------------------------------------------------------------------

    def _cut(self) -> None:
        """Send the messages gathered so far as one chunk to the least busy worker (lock held)."""
        seq = self._next_seq
        self._next_seq += 1
        chunk = _Chunk(self._items, self._acks, self._registry.stored_version)
        self._items, self._acks, self._bytes = [], [], 0
        self._chunks[seq] = chunk
        self._send(seq, chunk)

    def _send(self, seq: int, chunk: _Chunk) -> None:
        worker = min(self._workers, key=lambda w: w.outstanding)
        chunk.worker = worker.index
        worker.outstanding += 1
        worker.outbox.put(pickle.dumps((seq, chunk.version, chunk.items), protocol=5))

    def finished(self, worker: _Worker, result: ChunkResult) -> None:
        """A worker's result came back (its receiver thread)."""
        with self._lock:
            worker.outstanding -= 1
            if result.seq in self._chunks:
                self._results[result.seq] = result

    def worker_died(self, worker: _Worker) -> None:
        """A worker's pipe closed (its receiver thread): start another, resend what it held."""
        with self._lock:
            if self._closing:
                return
            code = worker.proc.poll()
            logger.error(
                "decode worker %d (pid %d) ended (exit code %s); starting another",
                worker.index,
                worker.proc.pid,
                code,
            )
            replacement = _Worker(worker.index, self)
            self._workers[worker.index] = replacement
            self.restarts += 1
            lost = sorted(
                seq
                for seq, chunk in self._chunks.items()
                if chunk.worker == worker.index and seq not in self._results
            )
            for seq in lost:
                chunk = self._chunks[seq]
                chunk.crashes += 1
                if chunk.crashes >= MAX_CRASHES:
                    self._results[seq] = _abandoned(seq, chunk)
                else:
                    self._send(seq, chunk)
        threading.Thread(target=_reap, args=(worker,), daemon=True).start()


def in_process(consumer: Consumer | PooledConsumer) -> Consumer:
    """The consumer itself, or a pool's in-process consumer: what previews decode with."""
    return consumer.local if isinstance(consumer, PooledConsumer) else consumer


def _reap(worker: _Worker) -> None:
    """Collect a dead worker's exit status and close its pipes (off the receiver thread)."""
    worker.stop(timeout=1.0)


def _abandoned(seq: int, chunk: _Chunk) -> ChunkResult:
    """A chunk no worker survives: every message dead-lettered with the reason, nothing stored."""
    rejections: list[Rejection] = []
    for topic, payload, now_ms in chunk.items:
        parts = parse_topic(topic)
        raw = RawMessage(
            topic=topic,
            payload=payload,
            vendor=parts.vendor if parts is not None else "",
            device_id=parts.device_id if parts is not None else "",
            received_ms=now_ms,
        )
        detail = (
            f"the hub's decoder process died {chunk.crashes} times on a batch of messages "
            "holding this one; the batch was set aside unread"
        )
        rejections.append(Rejection(raw, DecodeError(DecodeReason.WRONG_TYPE, detail)))
    counters = IngestCounters(
        messages=len(chunk.items),
        rejected_messages=len(chunk.items),
        dead_letters=len(rejections),
        codec_bugs=len(chunk.items),
    )
    return ChunkResult(seq, ReadingBatch.empty(), rejections, [], len(chunk.items), counters)


def _add_counters(total: IngestCounters, delta: IngestCounters) -> None:
    for f in fields(IngestCounters):
        setattr(total, f.name, getattr(total, f.name) + getattr(delta, f.name))


def serve(inbox: Connection, outbox: Connection) -> None:
    """A worker's life: read the config, then decode chunk after chunk until the hub closes the pipe."""
    config: WorkerConfig = pickle.loads(inbox.recv_bytes())  # noqa: S301 - the hub's own bytes
    registry = Registry(config.registry_url)
    consumer = Consumer(registry, config.options)
    while True:
        try:
            data = inbox.recv_bytes()
        except EOFError:
            return
        seq, version, items = pickle.loads(data)  # noqa: S301 - the hub's own bytes
        _catch_up(registry, version)
        for topic, payload, now_ms in items:
            consumer.handle_at(topic, payload, 0, 1, now_ms)
        taken = consumer.take()
        counters, consumer.counters = consumer.counters, IngestCounters()
        result = ChunkResult(
            seq, taken.batch, taken.rejections, taken.statuses, taken.messages, counters
        )
        outbox.send_bytes(pickle.dumps(result, protocol=5))


def _catch_up(registry: Registry, version: int) -> None:
    """Reload the registry until it has what the hub had when it cut the chunk.

    The hub's counter may run a few milliseconds ahead of what its transaction has committed, so
    an unchanged database is read again for a while before the chunk is decoded as it is.
    """
    deadline = time.monotonic() + 5.0
    while registry.stored_version < version:
        registry.refresh()
        if registry.stored_version >= version:
            return
        if time.monotonic() > deadline:
            logger.warning(
                "registry still at change %d, the hub saw %d: decoding with it",
                registry.stored_version,
                version,
            )
            return
        time.sleep(0.005)
