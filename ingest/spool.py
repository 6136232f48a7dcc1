"""The store-outage spool: a bounded on-disk queue of `ReadingBatch`es, replayed oldest first.

Why a spool when the broker already holds what the hub has not acknowledged: while the time-series
store is down, a hub that only stops acknowledging also stops *receiving* once Receive Maximum
messages are in flight, so live state, screens and alerts go blind for the whole outage, and the
backlog sits in the broker's memory (Mosquitto keeps queued messages in RAM; an EMQX cluster's
per-session queue is bounded and drops QoS 1 messages past it by default). With the spool, the
readings of a batch that the store refused are made durable here, the messages are acknowledged,
and the hub keeps watching the city; the spool is written to the store after it recovers.

The spool is bounded (``max_bytes``). When it is full, or its own disk fails, `append` raises and
the pipeline falls back to back-pressure: it keeps retrying the store without acknowledging, so the
broker holds the rest. Nothing is ever dropped: full means "slow down", never "forget".

On disk: one file per batch, ``{sequence:016d}.batch``, written to a temporary name, fsynced, then
renamed (a crash leaves a whole segment or none). A segment is a header (magic, row count, CRC-32 of
the body) and the rows as one numpy structured array. A segment that fails its check (bit rot, a
foreign file) is renamed ``.bad``, counted and skipped, never replayed half. Replay takes many
segments at once (`Spool.oldest`), so the store gets few large writes.
"""

from __future__ import annotations

import logging
import os
import struct
import threading
import zlib
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from ingest.batch import DTYPES, ReadingBatch
from ingest.errors import IngestError

logger = logging.getLogger(__name__)

_MAGIC = b"HUBSPL01"
_HEADER = struct.Struct("<8sQI")  # magic, rows, crc32 of the body
_SUFFIX = ".batch"
_ROW = np.dtype([(name, dtype) for name, dtype in DTYPES.items()])


class SpoolError(IngestError):
    """The spool could not take a batch: it is full, or its disk failed (the caller back-pressures)."""


class SpoolFullError(SpoolError):
    """The spool holds ``max_bytes`` already."""

    def __init__(self, held: int, wanted: int, max_bytes: int) -> None:
        """Say how full it is."""
        self.held, self.wanted, self.max_bytes = held, wanted, max_bytes
        super().__init__(f"spool full: {held} of {max_bytes} bytes held, a batch needs {wanted}")


@dataclass(slots=True)
class SpoolStats:
    """What the spool has done since it opened (segments and readings on disk are `Spool` properties)."""

    appended: int = 0  # readings taken in
    replayed: int = 0  # readings handed back and removed after the store took them
    full: int = 0  # appends refused because the spool was full
    failed: int = 0  # appends refused because the disk failed
    bad_segments: int = 0  # segments that failed their check (kept as .bad, not replayed)


def encode(batch: ReadingBatch) -> bytes:
    """A segment's bytes: header and rows (columns interleaved by numpy, no loop per reading)."""
    rows = np.empty(len(batch), dtype=_ROW)
    for name in DTYPES:
        rows[name] = getattr(batch, name)
    body = rows.tobytes()
    return _HEADER.pack(_MAGIC, len(batch), zlib.crc32(body)) + body


def decode(data: bytes) -> ReadingBatch:
    """The batch in a segment's bytes.

    Raises:
        SpoolError: not a whole, intact segment.
    """
    if len(data) < _HEADER.size:
        msg = "spool segment shorter than its header"
        raise SpoolError(msg)
    magic, n, crc = _HEADER.unpack_from(data)
    body = data[_HEADER.size :]
    if magic != _MAGIC or len(body) != n * _ROW.itemsize or zlib.crc32(body) != crc:
        msg = f"spool segment damaged ({len(body)} body bytes for {n} rows)"
        raise SpoolError(msg)
    rows = np.frombuffer(body, dtype=_ROW)
    return ReadingBatch(*(np.ascontiguousarray(rows[name]) for name in DTYPES))


class Spool:
    """A bounded directory of batches; thread-safe. `append` at the tail, `oldest` + `remove` at the head."""

    def __init__(self, directory: str | Path, max_bytes: int) -> None:
        """Open (or create) the spool in ``directory``; what an earlier run left there is kept."""
        if max_bytes <= 0:
            msg = "max_bytes must be positive"
            raise ValueError(msg)
        self.directory = Path(directory)
        self.directory.mkdir(parents=True, exist_ok=True)
        self.max_bytes = max_bytes
        self.stats = SpoolStats()
        self._lock = threading.Lock()
        # Leftover temporaries are appends a crash interrupted before the rename: never acknowledged.
        for tmp in self.directory.glob("*.tmp"):
            tmp.unlink(missing_ok=True)
        self._segments: dict[Path, tuple[int, int]] = {}  # path -> (bytes, rows)
        for path in sorted(self.directory.glob(f"*{_SUFFIX}")):
            size = path.stat().st_size
            self._segments[path] = (size, max(0, (size - _HEADER.size) // _ROW.itemsize))
        self._next = 1 + max((int(p.stem) for p in self._segments), default=0)
        # Running totals: `append` checks the bound on every batch, without summing every segment.
        self._bytes = sum(size for size, _ in self._segments.values())
        self._rows = sum(rows for _, rows in self._segments.values())
        if self._segments:
            logger.warning(
                "spool %s holds %s readings from before: they will be written to the store",
                self.directory,
                self.readings,
            )

    @property
    def bytes(self) -> int:
        """Bytes on disk."""
        return self._bytes

    @property
    def readings(self) -> int:
        """Readings waiting."""
        return self._rows

    def __len__(self) -> int:
        """Segments waiting."""
        return len(self._segments)

    def append(self, batch: ReadingBatch) -> None:
        """Make ``batch`` durable in the spool (fsynced before this returns).

        Raises:
            SpoolFullError: it would pass ``max_bytes``.
            SpoolError: the disk failed (full, read-only, ...); nothing of the batch is kept.
        """
        data = encode(batch)
        with self._lock:
            held = self.bytes
            if held + len(data) > self.max_bytes:
                self.stats.full += 1
                raise SpoolFullError(held, len(data), self.max_bytes)
            path = self.directory / f"{self._next:016d}{_SUFFIX}"
            tmp = path.with_suffix(".tmp")
            try:
                with tmp.open("wb") as f:
                    f.write(data)
                    f.flush()
                    os.fsync(f.fileno())
                tmp.rename(path)
                _fsync_dir(self.directory)
            except OSError as exc:
                self.stats.failed += 1
                tmp.unlink(missing_ok=True)
                msg = f"cannot spool {len(batch)} readings in {self.directory}: {exc}"
                raise SpoolError(msg) from exc
            self._next += 1
            self._segments[path] = (len(data), len(batch))
            self._bytes += len(data)
            self._rows += len(batch)
            self.stats.appended += len(batch)

    def oldest(self, max_readings: int = 1) -> tuple[list[Path], ReadingBatch] | None:
        """The oldest segments, up to ``max_readings`` readings, as one batch; None when empty.

        At least one segment is taken, however large; one store write then replays many small
        batches. Damaged segments are set aside (renamed ``.bad``) and skipped.
        """
        while True:
            with self._lock:
                if not self._segments:
                    return None
                wanted: list[Path] = []
                total = 0
                for path, (_, rows) in self._segments.items():
                    if wanted and total + rows > max_readings:
                        break
                    wanted.append(path)
                    total += rows
            read = [(path, self._read(path)) for path in wanted]
            good = [(path, batch) for path, batch in read if batch is not None]
            if good:
                return [p for p, _ in good], ReadingBatch.concat([b for _, b in good])

    def _read(self, path: Path) -> ReadingBatch | None:
        """A segment's batch; None, and the segment set aside, when it cannot be read or is damaged."""
        try:
            return decode(path.read_bytes())
        except (OSError, SpoolError) as exc:
            logger.error("spool segment %s set aside as .bad: %s", path.name, exc)  # noqa: TRY400 - the cause is in the message
            with self._lock:
                self._forget(path)
                self.stats.bad_segments += 1
            try:
                path.rename(path.with_suffix(".bad"))
            except OSError:
                logger.warning("could not rename %s", path, exc_info=True)
            return None

    def remove(self, paths: list[Path]) -> None:
        """Forget segments whose batches the store has taken."""
        for path in paths:
            self._remove(path)

    def _remove(self, path: Path) -> None:
        """Forget a segment whose batch the store has taken."""
        with self._lock:
            rows = self._forget(path)
        if rows is None:
            return
        self.stats.replayed += rows
        try:
            path.unlink(missing_ok=True)
        except OSError:
            # Replaying it again after a restart is harmless: the store's key makes it idempotent.
            logger.warning("could not delete replayed spool segment %s", path, exc_info=True)

    def _forget(self, path: Path) -> int | None:
        """Drop a segment from the books (under the lock); its rows, or None if it was not there."""
        entry = self._segments.pop(path, None)
        if entry is None:
            return None
        self._bytes -= entry[0]
        self._rows -= entry[1]
        return entry[1]


def _fsync_dir(directory: Path) -> None:
    """Make a rename in ``directory`` durable."""
    fd = os.open(directory, os.O_RDONLY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)
