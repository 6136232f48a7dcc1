"""The hub's self-metrics: one probe of its counters, read by ``/metrics`` (Prometheus) and the InfluxDB sink.

Counters live where the work happens (the consumer, the pipeline, the rule engine, the feed, the
patrol) as plain integers; nothing here is on a hot path. A scrape reads them through `HubProbe`
and a custom collector, so the figures are never copied into a second set of counters that could
drift. Two things are distributions and are observed as they happen: store write latency
(`TimedStore`, around the store the pipeline writes to) and rule evaluation time (`timed_rules`,
after each batch's evaluation).

Parts of the hub register their own families with `HubProbe.add_source` (the situation feed and the
camera patrol do, below): a source is a function returning metric families, called per scrape.
Each hub has its own `CollectorRegistry`, so two hubs in one process (tests) never collide.
"""

from __future__ import annotations

import time
from collections import Counter
from collections.abc import Awaitable, Callable, Iterable
from typing import Any

import numpy as np
from numpy.typing import NDArray
from prometheus_client import CollectorRegistry, Histogram, PlatformCollector, ProcessCollector
from prometheus_client.core import CounterMetricFamily, GaugeMetricFamily, Metric
from prometheus_client.registry import Collector

from devices.registry import Registry
from hub.alerting import Alerting
from hub.feed import SituationFeed
from ingest.batch import ReadingBatch
from ingest.deadletter import DeadLetterStore
from ingest.pipeline import IngestPipeline
from ingest.store import Buckets, Store
from video.patrol import Patrol

Source = Callable[[], Iterable[Metric]]

# Store writes take ~1 ms (a few readings, embedded) to seconds (a backlog into a remote InfluxDB).
WRITE_BUCKETS = (0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0)
RULE_BUCKETS = (0.0001, 0.00025, 0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 1.0)


def _counter(name: str, doc: str, value: float) -> CounterMetricFamily:
    return CounterMetricFamily(name, doc, value=value)


def _gauge(name: str, doc: str, value: float) -> GaugeMetricFamily:
    return GaugeMetricFamily(name, doc, value=value)


class HubProbe:
    """Reads the running hub's counters; cheap, no I/O. Shared by ``/metrics`` and `InfluxSink`."""

    def __init__(
        self,
        registry: Registry,
        pipeline: IngestPipeline,
        alerting: Alerting,
        dead_letters: DeadLetterStore,
    ) -> None:
        """Probe these parts; more register with `add_source`."""
        self.registry = registry
        self.pipeline = pipeline
        self.alerting = alerting
        self.dead_letters = dead_letters
        self._sources: list[Source] = []

    def add_source(self, source: Source) -> None:
        """Also report what ``source`` returns, at every scrape (a registration point for parts)."""
        self._sources.append(source)

    def sample(self) -> dict[str, int | float]:
        """The hub's figures now, by name (counters are totals since the process started)."""
        p, c, a = self.pipeline, self.pipeline.consumer.counters, self.alerting.stats
        # Counters are ints and timings floats, always: InfluxDB fixes a field's type at first write.
        return {
            "messages": int(c.messages),
            "readings_decoded": int(c.readings),
            "readings_stored": int(p.stats.stored),
            "duplicates": int(p.stats.duplicates),
            "rejected_messages": int(c.rejected_messages),
            "dead_letters": int(c.dead_letters),
            "store_errors": int(p.stats.store_errors),
            "in_flight": int(p.consumer.pending),
            "last_write_ms": float(p.stats.last_write_ms),
            "readings_evaluated": int(a.readings_evaluated),
            "batches_evaluated": int(a.batches_evaluated),
            "last_evaluate_ms": float(a.last_evaluate_ms),
            "last_rule_save_ms": float(a.last_save_ms),
            "alert_events": int(a.events),
            "alert_changes": int(a.changes),
            "alert_apply_errors": int(a.apply_errors),
            "alert_queue": int(self.alerting.queued),
            "devices": len(self.registry.interner.devices),
            "broker_connected": int(p.transport.connected.is_set()),
        }

    def rejects_by_reason(self) -> dict[str, int]:
        """Rejected messages and parts per reason code, all devices together."""
        by_reason: Counter[str] = Counter()
        for (_, reason), n in list(self.dead_letters.counts.items()):  # per (device, reason)
            by_reason[reason] += n
        return dict(by_reason)

    def families(self) -> Iterable[Metric]:
        """Every metric family, for a scrape."""
        s = self.sample()
        yield _counter(
            "hub_mqtt_messages", "MQTT messages received on sensor topics", s["messages"]
        )
        yield _counter(
            "hub_readings_decoded", "Readings decoded from messages", s["readings_decoded"]
        )
        yield _counter("hub_readings_stored", "Readings new to the store", s["readings_stored"])
        yield _counter("hub_readings_duplicate", "Readings the store already held", s["duplicates"])
        rejects = CounterMetricFamily(
            "hub_rejects", "Rejected messages and parts of messages, by reason", labels=["reason"]
        )
        for reason, n in sorted(self.rejects_by_reason().items()):
            rejects.add_metric([reason], n)
        yield rejects
        yield _counter("hub_store_errors", "Store writes that failed (retried)", s["store_errors"])
        yield _gauge(
            "hub_ingest_in_flight_messages",
            "Messages decoded but not yet stored and acknowledged (ingest queue depth)",
            s["in_flight"],
        )
        yield _gauge(
            "hub_alert_queue_bursts",
            "Bursts of condition events waiting for the alert store (rule queue depth)",
            s["alert_queue"],
        )
        yield _counter(
            "hub_rule_readings_evaluated",
            "Readings the rule engine evaluated",
            s["readings_evaluated"],
        )
        yield _counter("hub_alert_events", "Condition events from the rules", s["alert_events"])
        yield _counter("hub_alert_changes", "Alert changes written", s["alert_changes"])
        yield _counter(
            "hub_alert_apply_errors",
            "Alert store writes that failed (retried)",
            s["alert_apply_errors"],
        )
        yield _gauge("hub_devices", "Registered devices", s["devices"])
        yield _gauge(
            "hub_broker_connected", "1 while the ingest is connected", s["broker_connected"]
        )
        for source in self._sources:
            yield from source()


class _ProbeCollector(Collector):
    def __init__(self, probe: HubProbe) -> None:
        self.probe = probe

    def collect(self) -> Iterable[Metric]:
        return self.probe.families()


class HubMetrics:
    """The hub's Prometheus registry: the probe's families, two histograms, and the process."""

    def __init__(self) -> None:
        """A registry of this hub's own, with the histograms the store and rules observe."""
        self.registry = CollectorRegistry()
        ProcessCollector(registry=self.registry)
        PlatformCollector(registry=self.registry)
        self.store_write = Histogram(
            "hub_store_write_seconds",
            "Time to write one batch durably to the time-series store",
            buckets=WRITE_BUCKETS,
            registry=self.registry,
        )
        self.rule_evaluation = Histogram(
            "hub_rule_evaluation_seconds",
            "Time the rule engine took to evaluate one stored batch",
            buckets=RULE_BUCKETS,
            registry=self.registry,
        )

    def attach(self, probe: HubProbe) -> HubProbe:
        """Report ``probe``'s families at every scrape (once the parts it reads exist)."""
        self.registry.register(_ProbeCollector(probe))
        return probe


class TimedStore:
    """The store the pipeline writes to, with each write's duration observed (reads pass through)."""

    def __init__(self, store: Store, observe: Callable[[float], None]) -> None:
        """Wrap ``store``; ``observe`` gets seconds per successful write."""
        self.inner = store
        self._observe = observe

    def write(self, batch: ReadingBatch) -> int:
        """Write through, timing it."""
        t0 = time.perf_counter()
        new = self.inner.write(batch)
        self._observe(time.perf_counter() - t0)
        return new

    def range(
        self, device: int, metric: int, start_ms: int, end_ms: int, limit: int = 100_000
    ) -> ReadingBatch:
        """As the wrapped store."""
        return self.inner.range(device, metric, start_ms, end_ms, limit)

    def downsample(
        self, device: int, metric: int, start_ms: int, end_ms: int, every_ms: int
    ) -> Buckets:
        """As the wrapped store."""
        return self.inner.downsample(device, metric, start_ms, end_ms, every_ms)

    def latest(self) -> ReadingBatch:
        """As the wrapped store."""
        return self.inner.latest()

    def count(self) -> int:
        """As the wrapped store."""
        return self.inner.count()

    def counts_since(
        self, since_ms: int, device: int | None = None
    ) -> tuple[NDArray[np.int32], NDArray[np.int64]]:
        """As the wrapped store."""
        return self.inner.counts_since(since_ms, device)

    def delete_before(self, cutoff_ms: int) -> int:
        """As the wrapped store."""
        return self.inner.delete_before(cutoff_ms)

    def close(self) -> None:
        """As the wrapped store."""
        self.inner.close()


def timed_rules(
    alerting: Alerting, observe: Callable[[float], None]
) -> Callable[[ReadingBatch], Awaitable[None]]:
    """The alerting batch handler, observing the engine's own evaluation time after each batch."""

    async def handler(batch: ReadingBatch) -> None:
        await alerting.on_batch(batch)
        observe(alerting.stats.last_evaluate_ms / 1000)

    return handler


def feed_source(feed: SituationFeed) -> Source:
    """The situation feed's figures: screens connected, frames, screens closed as too slow."""

    def families() -> Iterable[Metric]:
        # The feed's operator status is read leniently: a renamed figure reads 0, not a failed scrape.
        status: dict[str, Any] = feed.status()
        screens = [c for s in status.get("streams", []) for c in s.get("screens", [])]
        queued = sum(int(c.get("queued", 0)) for c in screens)
        yield _gauge(
            "hub_feed_screens", "Screens connected to /ws/situation", status.get("screens", 0)
        )
        yield _gauge("hub_feed_queued_frames", "Frames waiting for slow screens", queued)
        yield _counter("hub_feed_frames", "Delta frames built", status.get("frames", 0))
        yield _counter("hub_feed_snapshots", "Snapshots built", status.get("snapshots", 0))
        yield _counter(
            "hub_feed_closed_slow", "Screens closed as too slow", status.get("closed_slow", 0)
        )
        yield _counter("hub_feed_errors", "Feed ticks that failed", status.get("errors", 0))

    return families


def camera_source(patrol: Patrol) -> Source:
    """The camera patrol's figures: checks, lost signals, findings, worker failures."""

    def families() -> Iterable[Metric]:
        s, w = patrol.stats, patrol.pool.stats
        yield _gauge("hub_camera_patrol_running", "1 while the patrol runs", float(patrol.running))
        yield _counter("hub_camera_checks", "Camera checks done", s.checks)
        yield _counter("hub_camera_lost", "Checks that got no picture", s.lost)
        yield _counter("hub_camera_findings", "Checks with a finding", s.with_findings)
        yield _counter("hub_camera_check_errors", "Checks that failed inside the hub", s.errors)
        yield _counter(
            "hub_camera_workers_killed", "Check workers killed at their deadline", w.killed
        )
        yield _counter("hub_camera_workers_crashed", "Check workers that died", w.crashed)

    return families
