"""The embedded time-series store: one DuckDB file, appended from numpy columns, idempotent on (device, metric, ts)."""

from __future__ import annotations

import logging
import threading
from pathlib import Path
from typing import Any

import duckdb
import numpy as np
from numpy.typing import NDArray

from ingest.batch import DTYPES, ReadingBatch
from ingest.errors import StoreError
from ingest.store import Buckets
from ingest.store.latestcache import LatestCache

logger = logging.getLogger(__name__)

_SCHEMA = """
CREATE TABLE IF NOT EXISTS readings (
    device INTEGER NOT NULL,
    metric SMALLINT NOT NULL,
    ts BIGINT NOT NULL,
    value DOUBLE,  -- NULL is a reading that was not a number (DuckDB turns numpy NaN into NULL)
    quality UTINYINT NOT NULL
)
"""
# Stores created before NaN readings were understood had value NOT NULL: a NaN then failed the write.
_ALLOW_NAN = "ALTER TABLE readings ALTER COLUMN value DROP NOT NULL"


# Idempotence without a primary key: DuckDB's ART key index cut appends from ~3.7M to ~0.5M rows/s
# here and keeps every key in memory. Instead each write anti-joins the batch against the rows already
# stored in the batch's own time span; zone maps on `ts` keep that scan to the few recent row groups.
_INSERT_NEW = """
INSERT INTO readings
SELECT b.device, b.metric, b.ts, b.value, b.quality
FROM incoming AS b
ANTI JOIN (
    SELECT device, metric, ts FROM readings
    WHERE ts BETWEEN $lo AND $hi AND device BETWEEN $dlo AND $dhi
) AS s USING (device, metric, ts)
"""
# A batch whose every reading is newer than anything stored for its device cannot meet a stored row:
# it is appended as is (the anti-join scan and hash cost about as much as the append itself).
_INSERT_ALL = """
INSERT INTO readings SELECT device, metric, ts, value, quality FROM incoming
"""
_NEWEST_PER_DEVICE = "SELECT device, max(ts) AS ts FROM readings GROUP BY device"
_NEVER = np.iinfo(np.int64).min


class FileStore:
    """Readings in a DuckDB file (``:memory:`` for a throwaway store). Thread-safe."""

    def __init__(self, path: str | Path, *, threads: int = 2, memory_limit: str = "64MB") -> None:
        """Open or create the store at ``path``."""
        self.path = str(path)
        if self.path != ":memory:":
            Path(self.path).parent.mkdir(parents=True, exist_ok=True)
        try:
            self._con = duckdb.connect(
                self.path, config={"threads": threads, "memory_limit": memory_limit}
            )
        except duckdb.Error as exc:
            msg = f"cannot open the time-series store at {self.path}: {exc}"
            raise StoreError(msg) from exc
        self._con.execute(_SCHEMA).fetchall()
        self._con.execute(_ALLOW_NAN).fetchall()
        self._write_lock = threading.Lock()
        self._local = threading.local()
        # Per device index, an upper bound of the newest ts stored (_NEVER: none). None: not known,
        # read from the store before the next write (at start, and after a write that failed, which
        # might have committed before it failed).
        self._newest: NDArray[np.int64] | None = None
        # The newest reading of every series once latest() has scanned for it (then kept current by
        # every write, under the write lock); None: not scanned, or unknown after a failed write.
        self._latest: LatestCache | None = None

    def _reader(self) -> duckdb.DuckDBPyConnection:
        # One cursor per thread: DuckDB connections are not safe to share across threads.
        cur: duckdb.DuckDBPyConnection | None = getattr(self._local, "cur", None)
        if cur is None:
            cur = self._con.cursor()
            self._local.cur = cur
        return cur

    def write(self, batch: ReadingBatch) -> int:
        """Store a batch durably (committed to DuckDB's WAL); returns how many rows were new."""
        if len(batch) == 0:
            return 0
        batch = batch.dedupe()
        columns = {name: getattr(batch, name) for name in DTYPES}
        params = {
            "lo": int(batch.ts.min()),
            "hi": int(batch.ts.max()),
            "dlo": int(batch.device.min()),
            "dhi": int(batch.device.max()),
        }
        with self._write_lock:
            con = self._con
            try:
                newest = self._newest_stored(params["dhi"])
                fresh = bool((batch.ts > newest[batch.device]).all())
                # Unknown until this write is known to have committed or not: whatever fails below
                # (even after the commit), the bounds are read from the store again.
                self._newest = None
                latest, self._latest = self._latest, None
                # DuckDB finds ``incoming`` among this frame's locals (a replacement scan): half
                # the fixed cost of register() + unregister(), two catalog changes per write.
                incoming = columns  # noqa: F841 - read by name by the SQL below
                # DuckDB answers an INSERT with the number of rows it inserted.
                row = (
                    con.execute(_INSERT_ALL) if fresh else con.execute(_INSERT_NEW, params)
                ).fetchone()
            except duckdb.Error as exc:
                msg = f"writing {len(batch)} readings to {self.path} failed: {exc}"
                raise StoreError(msg) from exc
            np.maximum.at(newest, batch.device, batch.ts)
            self._newest = newest
            if latest is not None:
                latest.update(batch)
                self._latest = latest
            return int(row[0]) if row else 0

    def _newest_stored(self, device: int) -> NDArray[np.int64]:
        """The per-device upper bounds of stored ts, with room for ``device`` (under the write lock)."""
        newest = self._newest
        if newest is None:
            cols = self._con.execute(_NEWEST_PER_DEVICE).fetchnumpy()
            dev = np.asarray(cols["device"], dtype=np.intp)
            newest = np.full(int(dev.max()) + 1 if len(dev) else 0, _NEVER, dtype=np.int64)
            newest[dev] = np.asarray(cols["ts"], dtype=np.int64)
        if len(newest) <= device:
            grown = np.full(max(device + 1, len(newest) * 3 // 2), _NEVER, dtype=np.int64)
            grown[: len(newest)] = newest
            newest = grown
        self._newest = newest
        return newest

    @staticmethod
    def _row_count(con: duckdb.DuckDBPyConnection) -> int:
        row = con.execute("SELECT count(*) FROM readings").fetchone()
        return int(row[0]) if row else 0

    def range(
        self, device: int, metric: int, start_ms: int, end_ms: int, limit: int = 100_000
    ) -> ReadingBatch:
        """Readings of one series in ``[start_ms, end_ms)``, oldest first."""
        cols = (
            self._reader()
            .execute(
                "SELECT device, metric, ts, coalesce(value, 'NaN'::DOUBLE) AS value, quality FROM readings "
                "WHERE device = ? AND metric = ? AND ts >= ? AND ts < ? ORDER BY ts LIMIT ?",
                [device, metric, start_ms, end_ms, limit],
            )
            .fetchnumpy()
        )
        return _batch_from(cols)

    def downsample(
        self, device: int, metric: int, start_ms: int, end_ms: int, every_ms: int
    ) -> Buckets:
        """min/max/mean/count per bucket of one series."""
        if every_ms <= 0:
            msg = "every_ms must be positive"
            raise ValueError(msg)
        cols = (
            self._reader()
            .execute(
                "SELECT (ts // $every) * $every AS start, coalesce(min(value), 'NaN'::DOUBLE) AS lo, "
                "coalesce(max(value), 'NaN'::DOUBLE) AS hi, coalesce(avg(value), 'NaN'::DOUBLE) AS mean, "
                "count(value) AS n FROM readings "
                "WHERE device = $device AND metric = $metric AND ts >= $start AND ts < $end "
                "GROUP BY 1 ORDER BY 1",
                {
                    "every": every_ms,
                    "device": device,
                    "metric": metric,
                    "start": start_ms,
                    "end": end_ms,
                },
            )
            .fetchnumpy()
        )
        return Buckets(
            start=np.asarray(cols["start"], dtype=np.int64),
            min=np.asarray(cols["lo"], dtype=np.float64),
            max=np.asarray(cols["hi"], dtype=np.float64),
            mean=np.asarray(cols["mean"], dtype=np.float64),
            count=np.asarray(cols["n"], dtype=np.int64),
        )

    def latest(self) -> ReadingBatch:
        """The newest reading of every series, in (device, metric) order.

        The first call scans the table (under the write lock, so no write slips between the scan and
        the cache); later calls answer from `LatestCache`, which every write keeps current.
        """
        with self._write_lock:
            if self._latest is None:
                self._latest = LatestCache(self._scan_latest())
            return self._latest.batch()

    def _scan_latest(self) -> ReadingBatch:
        cols = (
            self._reader()
            .execute(
                "SELECT device, metric, max(ts) AS ts, coalesce(arg_max_null(value, ts), 'NaN'::DOUBLE) AS value, "
                "arg_max_null(quality, ts) AS quality FROM readings GROUP BY device, metric"
            )
            .fetchnumpy()
        )
        return _batch_from(cols)

    def count(self) -> int:
        """How many readings are stored."""
        return self._row_count(self._reader())

    def counts_since(
        self, since_ms: int, device: int | None = None
    ) -> tuple[NDArray[np.int32], NDArray[np.int64]]:
        """Readings per device with ``ts >= since_ms`` (zone maps on ``ts`` keep the scan recent)."""
        sql = "SELECT device, count(*) AS n FROM readings WHERE ts >= $since"
        params: dict[str, int] = {"since": since_ms}
        if device is not None:
            sql += " AND device = $device"
            params["device"] = device
        cols = self._reader().execute(sql + " GROUP BY device ORDER BY device", params).fetchnumpy()
        return (
            np.asarray(cols["device"], dtype=np.int32),
            np.asarray(cols["n"], dtype=np.int64),
        )

    def delete_before(self, cutoff_ms: int) -> int:
        """Delete readings older than ``cutoff_ms``."""
        with self._write_lock:
            latest, self._latest = self._latest, None
            row = self._con.execute(
                "DELETE FROM readings WHERE ts < ? RETURNING 1", [cutoff_ms]
            ).fetchall()
            if latest is not None:
                latest.drop_before(cutoff_ms)
                self._latest = latest
        return len(row)

    def close(self) -> None:
        """Checkpoint and close."""
        with self._write_lock:
            try:
                self._con.execute("CHECKPOINT").fetchall()
            except duckdb.Error:
                logger.warning("checkpoint on close failed for %s", self.path, exc_info=True)
            self._con.close()


def _batch_from(cols: dict[str, NDArray[Any]]) -> ReadingBatch:
    return ReadingBatch(*(np.asarray(cols[name], dtype=dtype) for name, dtype in DTYPES.items()))
