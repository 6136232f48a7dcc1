"""The InfluxDB store: readings as line protocol, reads in InfluxQL; one implementation for 1.x, 2.x and 3.x.

Measurement and tags
    Every reading is one point of measurement ``readings``::

        readings,area=demo/riverside/binjiang-rd/g12,device=wl-00001,district=demo/riverside,
            metric=water_level,point=17,street=demo/riverside/binjiang-rd,type=water_level,
            vendor=hydrox value=3.42,q=0i 1763798400000

    - tags ``device`` (hardware id), ``vendor``, ``type`` (the profile's device type), ``area`` (the
      full path ``city/district/street/grid``), ``district`` and ``street`` (its first two and three
      levels: dashboards group by them; derived from ``area``, so they add no series), ``metric``,
      and ``point``: the registry's dense index of the monitoring point, which stays when hardware
      is replaced, so the hub reads a point's whole series by ``point``;
    - fields ``value`` (float, canonical unit; absent for NaN/infinity, which line protocol cannot
      carry) and ``q`` (integer quality flags, always present).

    Why one ``value`` field and a ``metric`` tag rather than a field per metric: the store's key is
    (device, metric, time) and each reading has its own quality flags and may be NaN, so a reading
    is its own point; one schema serves hundreds of metrics (a new profile never adds a measurement
    or field); and the hub's reads (latest, counts per device, retention) are one query each. The
    hub's own measurements choose the other way: ``hub_stats`` has a field per figure (they are
    sampled together and read together) and ``alert_events`` fields per event (see
    ``hub/influx_sink.py``).

Exactly once
    InfluxDB identifies a point by measurement, tag set and timestamp, and a second write of the
    same point overwrites its fields. A redelivered message therefore lands on the points it wrote
    the first time: at-least-once delivery is stored exactly once, without a read before the write.
    The tag set must then be the same for both writes: it is derived from the registry, and only a
    change of a device's area between a write and its redelivery (seconds) could store a reading
    twice, under both areas; `range` drops such a duplicate time. ``count_new`` (off by default)
    makes `write` return exactly how many readings were new, at the cost of one query per write
    (``bench/influx.py --count-new``: about 40 % less throughput on 100,000-reading batches).
    One difference from the file store: a key written again with *another* value keeps the last
    value here and the first there; redeliveries carry the same value, so only a device that
    corrects a reading in place tells them apart.

Retention and downsampling
    1.x: policies ``raw`` (``store.retention_days``, default) and ``rollup`` (``readings_1m``: mean,
    min, max, count per series and minute, five years), filled by a continuous query
    (`ingest.store.influxschema`). 2.x: buckets and a Flux task, created by docker-compose.
"""

from __future__ import annotations

import logging
import threading
from concurrent.futures import Future, ThreadPoolExecutor
from datetime import UTC, datetime

import numpy as np
import sqlalchemy as sa
from numpy.typing import NDArray

from devices.registry import Registry, devices_table
from ingest.batch import DTYPES, ReadingBatch
from ingest.errors import StoreError
from ingest.store import Buckets
from ingest.store.influxconf import InfluxSettings
from ingest.store.influxhttp import InfluxHttp, Precision, Series
from ingest.store.influxschema import ensure_v1_schema, quote_string, rollup_statement
from ingest.store.lineproto import MEASUREMENT, DeviceLabels, SeriesTags, encode_readings

__all__ = ["InfluxStore", "registry_tags"]

logger = logging.getLogger(__name__)

# InfluxDB's time range is int64 nanoseconds; query bounds outside it are clamped.
MIN_MS = -9_223_372_036_854
MAX_MS = 9_223_372_036_854
_FILTER_POINTS = 256  # above this many devices in a batch, the key query filters by time only


def registry_tags(registry: Registry) -> SeriesTags:
    """Line pieces for every device and metric of ``registry`` (one SQL query, once per change)."""
    t = devices_table
    # Replaced hardware first: the index then names the point's current device (as the interner).
    stmt = sa.select(t.c.idx, t.c.id, t.c.vendor, t.c.type, t.c.area).order_by(
        t.c.status != "replaced", t.c.idx
    )
    with registry.engine.connect() as conn:
        rows = conn.execute(stmt).all()
    labels = {int(r.idx): DeviceLabels(int(r.idx), r.id, r.vendor, r.type, r.area) for r in rows}
    return SeriesTags.build(list(labels.values()), registry.interner.metric_names)


def _clamp(ms: int) -> int:
    return min(max(ms, MIN_MS), MAX_MS)


def _batch(
    device: NDArray[np.int32],
    metric: NDArray[np.int16],
    ts: NDArray[np.int64],
    value: NDArray[np.float64],
    quality: NDArray[np.uint8],
) -> ReadingBatch:
    return ReadingBatch(
        device.astype(np.int32),
        metric.astype(np.int16),
        ts.astype(np.int64),
        value.astype(np.float64),
        quality.astype(np.uint8),
    )


class InfluxStore:
    """Readings in InfluxDB (see the module docstring for the schema). Thread-safe."""

    def __init__(
        self,
        settings: InfluxSettings,
        *,
        registry: Registry | None = None,
        retention_days: float | None = None,
    ) -> None:
        """Connect, and on 1.x with ``manage_schema`` create the database and policies.

        Args:
            settings: where InfluxDB is and how to write.
            registry: names devices and metrics in tags; without it, tags carry indexes only.
            retention_days: how long the ``raw`` policy keeps readings (None: forever).
        """
        self.settings = settings
        self.http = InfluxHttp(settings)
        self._registry = registry
        self._tags = SeriesTags.build([], [])
        self._tags_version = -1
        self._tags_lock = threading.Lock()
        self._write_lock = threading.Lock()
        self._pool = ThreadPoolExecutor(settings.concurrency, thread_name_prefix="influx-write")
        if self.http.major == 1 and settings.manage_schema:
            ensure_v1_schema(self.http, settings, retention_days)

    # -- tags -----------------------------------------------------------------------------------

    def series_tags(self) -> SeriesTags:
        """The current line pieces, rebuilt when the registry has changed."""
        reg = self._registry
        if reg is None or reg.version == self._tags_version:
            return self._tags
        with self._tags_lock:
            version = reg.version  # read first: a change during the rebuild rebuilds again
            if version != self._tags_version:
                self._tags = registry_tags(reg)
                self._tags_version = version
        return self._tags

    # -- writes ---------------------------------------------------------------------------------

    def write(self, batch: ReadingBatch) -> int:
        """Store a batch durably (acknowledged by InfluxDB); returns how many rows were new.

        Without ``count_new`` that is the batch's distinct keys less what InfluxDB dropped as
        older than its retention policy: a redelivery overwrites, so it is not told apart.
        """
        if len(batch) == 0:
            return 0
        batch = batch.dedupe()
        tags = self.series_tags()
        if not self.settings.count_new:
            return len(batch) - self._write_rows(batch, tags)
        with self._write_lock:  # the key query and the write must not interleave with another
            new = len(batch) - self._existing(batch, tags)
            return max(0, new - self._write_rows(batch, tags))

    def _write_rows(self, batch: ReadingBatch, tags: SeriesTags) -> int:
        """Write in requests of ``batch_lines``, ``concurrency`` at a time; returns points dropped."""
        step = self.settings.batch_lines
        if len(batch) <= step:
            return self.http.write(encode_readings(batch, tags))
        pending: list[Future[int]] = []
        try:
            # Encoding the next request overlaps with InfluxDB taking the previous ones.
            for lo in range(0, len(batch), step):
                rows = ReadingBatch(*(getattr(batch, n)[lo : lo + step] for n in DTYPES))
                pending.append(self._pool.submit(self.http.write, encode_readings(rows, tags)))
        finally:
            done = [f.exception() for f in pending]  # wait for all before reporting any
        failures = [e for e in done if e is not None]
        if failures:
            raise failures[0]
        return sum(f.result() for f in pending)

    def write_lines(self, lines: bytes, precision: Precision = "ms") -> None:
        """Write other measurements' line protocol to the readings' policy (bucket)."""
        self.http.write(lines, precision)

    def _existing(self, batch: ReadingBatch, tags: SeriesTags) -> int:
        """How many of the batch's (device, metric, ts) keys InfluxDB already holds."""
        lo, hi = int(batch.ts.min()), int(batch.ts.max())
        cond = f"time >= {lo}ms AND time <= {hi}ms"
        points = np.unique(batch.device)
        if len(points) <= _FILTER_POINTS:
            cond += " AND point =~ /^(?:" + "|".join(map(str, points.tolist())) + ")$/"
        found = self._select(f"SELECT q FROM {MEASUREMENT} WHERE {cond} GROUP BY point, metric")
        if not found:
            return 0
        keys = []
        for s in found:  # one per series, not per reading
            metric = tags.metric_of(s.tags.get("metric", ""))
            if metric is None:
                continue
            ts = s.array("time", np.int64)
            keys.append(_keys(np.full(len(ts), int(s.tags["point"])), np.full(len(ts), metric), ts))
        if not keys:
            return 0
        return int(np.isin(_keys(batch.device, batch.metric, batch.ts), np.concatenate(keys)).sum())

    # -- reads ----------------------------------------------------------------------------------

    def _select(self, statement: str) -> list[Series]:
        return self.http.query(statement, rp=self.settings.retention_policy)

    def _series_filter(self, device: int, metric: int) -> str:
        name = self.series_tags().metric_name(metric)
        return f"point = {quote_string(str(device))} AND metric = {quote_string(name)}"

    def range(
        self, device: int, metric: int, start_ms: int, end_ms: int, limit: int = 100_000
    ) -> ReadingBatch:
        """Readings of one series in ``[start_ms, end_ms)``, oldest first."""
        start, end = _clamp(start_ms), _clamp(end_ms)
        if start >= end or limit <= 0:
            return ReadingBatch.empty()
        found = self._select(
            f"SELECT value, q FROM {MEASUREMENT} WHERE {self._series_filter(device, metric)} "
            f"AND time >= {start}ms AND time < {end}ms ORDER BY time ASC LIMIT {int(limit)}"
        )
        if not found:
            return ReadingBatch.empty()
        s = found[0]
        ts = s.array("time", np.int64)
        # Two tag sets of one point (an area changed between a write and its redelivery) hold the
        # same time twice: keep one.
        keep = np.ones(len(ts), dtype=np.bool_)
        keep[1:] = ts[1:] != ts[:-1]
        n = int(keep.sum())
        return _batch(
            np.full(n, device, dtype=np.int32),
            np.full(n, metric, dtype=np.int16),
            ts[keep],
            s.array("value", np.float64)[keep],
            s.array("q", np.int64)[keep],
        )

    def downsample(
        self, device: int, metric: int, start_ms: int, end_ms: int, every_ms: int
    ) -> Buckets:
        """min/max/mean/count per ``every_ms`` bucket (aligned to the epoch, as InfluxQL's are)."""
        if every_ms <= 0:
            msg = "every_ms must be positive"
            raise ValueError(msg)
        start, end = _clamp(start_ms), _clamp(end_ms)
        found = (
            self._select(
                "SELECT min(value), max(value), mean(value), count(value) "
                f"FROM {MEASUREMENT} WHERE {self._series_filter(device, metric)} "
                f"AND time >= {start}ms AND time < {end}ms "
                f"GROUP BY time({int(every_ms)}ms) fill(none)"
            )
            if start < end
            else []
        )
        s = found[0] if found else Series("", {}, ["time", "min", "max", "mean", "count"])
        return Buckets(
            start=s.array("time", np.int64),
            min=s.array("min", np.float64),
            max=s.array("max", np.float64),
            mean=s.array("mean", np.float64),
            count=s.array("count", np.int64),
        )

    def latest(self) -> ReadingBatch:
        """The newest reading of every series (``last`` of ``q``, which every point has)."""
        found = self._select(f"SELECT last(q), value FROM {MEASUREMENT} GROUP BY point, metric")
        tags = self.series_tags()
        rows: list[tuple[int, int, int, float, int]] = []
        for s in found:  # one row per series
            metric = tags.metric_of(s.tags.get("metric", ""))
            if metric is None or not s.values or not s.tags.get("point", "").isdigit():
                continue
            t, q, v = s.values[0][0], s.values[0][1], s.values[0][2]
            rows.append((int(s.tags["point"]), metric, int(t), np.nan if v is None else v, int(q)))
        if not rows:
            return ReadingBatch.empty()
        d, m, t, v, q = zip(*rows, strict=True)
        return ReadingBatch.from_columns(d, m, t, v, q)

    def count(self) -> int:
        """How many readings are stored."""
        found = self._select(f"SELECT count(q) FROM {MEASUREMENT}")
        return int(found[0].array("count", np.int64).sum()) if found else 0

    def counts_since(
        self, since_ms: int, device: int | None = None
    ) -> tuple[NDArray[np.int32], NDArray[np.int64]]:
        """Readings per device with ``ts >= since_ms``: one grouped query."""
        cond = f"time >= {_clamp(since_ms)}ms"
        if device is not None:
            cond += f" AND point = {quote_string(str(device))}"
        found = self._select(f"SELECT count(q) FROM {MEASUREMENT} WHERE {cond} GROUP BY point")
        pairs = sorted(
            (int(s.tags["point"]), int(s.array("count", np.int64).sum()))
            for s in found
            if s.tags.get("point", "").isdigit()
        )
        return (
            np.array([p for p, _ in pairs], dtype=np.int32),
            np.array([n for _, n in pairs], dtype=np.int64),
        )

    def delete_before(self, cutoff_ms: int) -> int:
        """Delete readings older than ``cutoff_ms`` (1.x: DELETE; 2.x: the delete API; 3.x: none).

        The retention policy (bucket retention) drops old shards by itself; this removes the rest
        of the oldest shard, so the hub's retention setting holds to the hour, as on the file store.
        """
        cutoff = _clamp(cutoff_ms)
        found = self._select(f"SELECT count(q) FROM {MEASUREMENT} WHERE time < {cutoff}ms")
        n = int(found[0].array("count", np.int64).sum()) if found else 0
        if n == 0:
            return 0
        if self.http.major == 1:
            self._select(f"DELETE FROM {MEASUREMENT} WHERE time < {cutoff}ms")
        elif self.http.major == 2:
            stop = datetime.fromtimestamp(cutoff / 1000, UTC).isoformat().replace("+00:00", "Z")
            self.http.delete_v2(stop, f'_measurement="{MEASUREMENT}"')
        else:
            logger.info("InfluxDB %s has no delete: retention is the database's", self.http.version)
            return 0
        return n

    def rollup(self, start_ms: int, end_ms: int) -> None:
        """Run the downsampling query for a past span by hand (the continuous query does it live)."""
        if self.http.major != 1:
            msg = "backfilling the downsampled series by InfluxQL needs InfluxDB 1.x"
            raise StoreError(msg)
        self.http.query(rollup_statement(self.settings, _clamp(start_ms), _clamp(end_ms)))

    def close(self) -> None:
        """Release connections and the writer threads (every write has returned by then)."""
        self._pool.shutdown(wait=True)
        self.http.close()


def _keys(
    device: NDArray[np.integer], metric: NDArray[np.integer], ts: NDArray[np.int64]
) -> NDArray[np.void]:
    """One 16-byte key per row: (device << 16 | metric, ts), comparable with ``np.isin``."""
    series = (device.astype(np.int64) << 16) | metric.astype(np.int64)
    pairs = np.ascontiguousarray(np.stack([series, ts.astype(np.int64)], axis=1))
    return pairs.view(np.dtype((np.void, 16))).ravel()
