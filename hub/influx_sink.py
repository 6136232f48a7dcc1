"""What the hub writes to InfluxDB besides readings, for Grafana: alert events and its own health.

Measurements, in the readings' database and retention policy (bucket):

``alert_events``: one point per alert change (a line of the alert's audit history).
    tags ``action`` (raise, acknowledge, dispatch, clear, ...), ``change`` (created,
    level_changed, ...), ``level`` (the level after the change), ``kind`` (rule kind), ``rule``,
    ``area``, ``district``; fields ``alert_id``, ``seq``, ``state`` (after the change), ``n`` (1,
    to sum), and ``ack_s``: on the change that took the alert on (acknowledge, or a dispatch straight
    from raised), the seconds since it was raised. The time is the change's, in nanoseconds with
    ``(alert_id % 1000) * 1000 + seq % 1000`` added: changes in one millisecond with equal tags stay
    apart, and writing one change twice lands on the same point.
``hub_stats``: every ``stats_interval_s`` one point per hub node (tag ``host``), one field per figure
    of `hub.metrics.HubProbe.sample` (totals since start and queue depths): they are sampled together
    and read together, so one point carries them all. Rates are ``non_negative_derivative``.
``hub_rejects``: with it, one point per reject reason (tag ``reason``), field ``total``.

Alert changes arrive on the alert store's thread; they are formatted there (one short line) and
queued, and written with the stats every interval. If InfluxDB is away, lines wait (up to
``MAX_PENDING``, then the oldest are dropped and counted) and go with the next write.
"""

from __future__ import annotations

import asyncio
import collections
import logging
import socket
import threading
import time

from alerts.lifecycle import Action, AlertChange, State
from hub.metrics import HubProbe
from ingest.errors import StoreError
from ingest.store.influx import InfluxStore
from ingest.store.lineproto import district_of, format_line

logger = logging.getLogger(__name__)

MAX_PENDING = 100_000


def alert_line(change: AlertChange) -> bytes:
    """The ``alert_events`` point of one alert change (nanosecond time)."""
    alert, entry = change.alert, change.entry
    area = alert.area or ""
    fields: dict[str, float | int | str | bool] = {
        "alert_id": alert.id,
        "seq": entry.seq,
        "state": entry.to_state.value,
        "n": 1,
    }
    took_on = entry.action in (Action.ACKNOWLEDGE, Action.DISPATCH)
    if took_on and entry.from_state is State.RAISED:
        fields["ack_s"] = max(0.0, (entry.at_ms - alert.first_ms) / 1000)
    tags = {
        "action": entry.action.value,
        "change": change.kind.value,
        "level": entry.to_level.label,
        "kind": alert.kind,
        "rule": alert.rule,
        "area": area,
        "district": district_of(area),
    }
    ts_ns = entry.at_ms * 1_000_000 + (alert.id % 1000) * 1000 + entry.seq % 1000
    return format_line("alert_events", tags, fields, ts_ns)


class InfluxSink:
    """Writes alert events and the hub's health to InfluxDB (see the module docstring)."""

    def __init__(
        self, store: InfluxStore, probe: HubProbe, *, interval_s: float, host: str | None = None
    ) -> None:
        """Write through ``store``'s connection, sampling ``probe`` every ``interval_s``."""
        self.store = store
        self.probe = probe
        self.interval_s = interval_s
        self.host = host or socket.gethostname()
        self._pending: collections.deque[bytes] = collections.deque()
        self._lock = threading.Lock()
        self.dropped = 0
        self.written = 0
        self._failing = False

    def on_alert(self, change: AlertChange) -> None:
        """An `alerts.notify.AlertFeed` subscriber: queue the change's point (never blocks)."""
        line = alert_line(change)
        with self._lock:
            if len(self._pending) >= MAX_PENDING:
                self._pending.popleft()
                self.dropped += 1
            self._pending.append(line)

    def stats_lines(self, now_ms: int) -> bytes:
        """This interval's ``hub_stats`` and ``hub_rejects`` points (nanosecond time)."""
        ts = now_ms * 1_000_000
        host = {"host": self.host}
        sample = self.probe.sample()
        fields: dict[str, float | int | str | bool] = dict(sample)
        fields["alert_lines_dropped"] = self.dropped
        lines = [format_line("hub_stats", host, fields, ts)]
        for reason, n in sorted(self.probe.rejects_by_reason().items()):
            lines.append(format_line("hub_rejects", {**host, "reason": reason}, {"total": n}, ts))
        return b"".join(lines)

    def flush(self, now_ms: int | None = None) -> bool:
        """Write the stats and every queued alert point; False (lines kept) if InfluxDB refused."""
        with self._lock:
            alerts = list(self._pending)
            self._pending.clear()
        body = self.stats_lines(now_ms if now_ms is not None else int(time.time() * 1000))
        try:
            self.store.write_lines(body + b"".join(alerts), precision="ns")
        except StoreError:
            with self._lock:
                self._pending.extendleft(reversed(alerts))
            if not self._failing:
                logger.exception("writing hub stats and %s alert events failed", len(alerts))
            self._failing = True
            return False
        if self._failing:
            logger.info("writing hub stats and alert events to InfluxDB works again")
        self._failing = False
        self.written += len(alerts)
        return True

    async def run(self) -> None:
        """Flush every interval until cancelled, then once more."""
        try:
            while True:
                await asyncio.sleep(self.interval_s)
                await asyncio.to_thread(self.flush)
        finally:
            await asyncio.to_thread(self.flush)
