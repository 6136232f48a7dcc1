"""The rule engine at work in the hub: batches and the clock in, alerts out, rule state kept across restarts.

`alerts` knows rules (`RuleEngine`) and alerts (`AlertStore`); this module runs them together:

- every stored batch is evaluated (in a worker thread, so the event loop stays free for screens);
- a timer ticks the engine every ``rules.tick_s`` for what happens without messages: offline
  devices, ``for`` windows that elapse, sliding rain sums;
- the condition events go, in order, to one applier thread that writes them to the alert store in
  one transaction per burst (a storm's hundreds of events are one commit, not hundreds), from where
  the alert feed publishes them (MQTT, webhooks, the people's notifications, the screens);
- the engine's state is saved every ``rules.save_s`` and at shutdown, and reconciled with the
  alert store at start, so a restart in the middle of a ``for`` window keeps the window and a
  condition is never left half-known between the two.
"""

from __future__ import annotations

import asyncio
import logging
import queue
import threading
import time
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

from alerts.engine import RuleEngine
from alerts.events import ConditionEvent
from alerts.rulebook import RuleBook
from alerts.rules import Rule, RuleError
from alerts.rulestate import Active
from alerts.store import AlertStore
from devices.partitions import Slot
from devices.registry import Registry
from hub.checkpoints import checkpoint_sources
from ingest.batch import ReadingBatch

logger = logging.getLogger(__name__)

ENGINE_SOURCES = ("device:", "area:", "cluster:")
"""The sources the rule engine raises alerts on (the video patrol and incidents have others)."""

_STOP: list[ConditionEvent] = []  # the applier's sentinel (compared by identity)


def now_ms() -> int:
    """Epoch milliseconds UTC: the engine's clock in the running hub."""
    return time.time_ns() // 1_000_000


WINDOW_SAVE_MIN_S = 5.0
"""The least time between two checkpoints taken because a pending timer started."""


@dataclass
class AlertingStats:
    """What the engine and the applier have done, for ``/api/v1/status``."""

    readings_evaluated: int = 0
    batches_evaluated: int = 0
    events: int = 0
    changes: int = 0
    apply_errors: int = 0
    last_evaluate_ms: float = 0.0
    last_apply_ms: float = 0.0
    saves: int = 0
    last_save_ms: float = 0.0


class Alerting:
    """Owns the running engine, its rule book subscription, the applier thread and the state file."""

    def __init__(
        self,
        registry: Registry,
        book: RuleBook,
        store: AlertStore,
        state_path: Path,
        *,
        tick_s: float = 1.0,
        save_s: float = 10.0,
        inline_max: int = 16,
        slot: Slot | None = None,
    ) -> None:
        """Load the engine from ``state_path`` (a fresh one if missing or unreadable) and reconcile.

        Bursts of up to ``inline_max`` events are applied by the thread that emits them when nothing
        older is waiting (0: always hand them to the applier thread). With a ``slot`` of several
        ingest workers the engine watches only that slot's devices, and the restart reconciliation
        touches only their alerts (the other workers' are theirs).
        """
        self.registry = registry
        self.book = book
        self.store = store
        self.state_path = state_path
        self.tick_s = tick_s
        self.save_s = save_s
        self.stats = AlertingStats()
        self.inline_max = inline_max
        self.slot = slot
        self._queue: queue.SimpleQueue[list[ConditionEvent]] = queue.SimpleQueue()
        # Order of application = order of emission. `_order` is held while events are applied;
        # `_pending` counts emitted bursts not yet applied (queued, or being applied), under `_gate`.
        self._order = threading.Lock()
        self._gate = threading.Condition(threading.Lock())
        self._pending = 0
        self.engine = self._load_engine(book.rules())
        book.subscribe(self._rules_changed)
        self._applier = threading.Thread(target=self._apply_loop, name="alerts.apply", daemon=True)
        self._applier.start()
        self._reconcile()

    def _load_engine(self, rules: Sequence[Rule]) -> RuleEngine:
        sources = checkpoint_sources(self.state_path, self.slot)
        if sources and sources != [self.state_path]:
            return self._load_moved(rules, sources)
        try:
            return RuleEngine.load(self.state_path, self.registry, rules, now_ms, slot=self.slot)
        except RuleError:
            # A damaged state file must not keep the city unwatched: start afresh, keep the file.
            kept = self.state_path.with_suffix(".unreadable")
            self.state_path.replace(kept)
            logger.exception(
                "rule state %s unreadable; starting afresh, kept as %s", self.state_path, kept
            )
            return RuleEngine(self.registry, rules, now_ms, slot=self.slot)

    def _load_moved(self, rules: Sequence[Rule], sources: list[Path]) -> RuleEngine:
        """Start from the checkpoints of another worker layout (the worker count changed)."""
        names = ", ".join(p.name for p in sources)
        try:
            blobs = [p.read_bytes() for p in sources]
            engine = RuleEngine.restore_many(blobs, self.registry, rules, now_ms, slot=self.slot)
        except (OSError, RuleError):
            # Those files are other workers' too: leave them in place, start afresh.
            logger.exception("rule state of the previous worker layout (%s) unusable", names)
            return RuleEngine(self.registry, rules, now_ms, slot=self.slot)
        logger.info(
            "rule state: %s continues from the previous worker layout's checkpoints (%s)",
            self.state_path.name,
            names,
        )
        return engine

    # -- inputs ---------------------------------------------------------------------------------

    async def on_batch(self, batch: ReadingBatch) -> None:
        """Evaluate a batch as it is being stored (a pipeline ``on_received`` hook)."""
        # Inline, not in a worker thread: a batch costs about a millisecond of numpy, and every
        # hand-over between threads on a busy 2-core machine costs more than that in waiting.
        self.emit(self._evaluate(batch))

    def _evaluate(self, batch: ReadingBatch) -> list[ConditionEvent]:
        t0 = time.perf_counter()
        events = self.engine.evaluate(batch)
        self.stats.last_evaluate_ms = (time.perf_counter() - t0) * 1000
        self.stats.readings_evaluated += len(batch)
        self.stats.batches_evaluated += 1
        return events

    async def run(self) -> None:
        """Tick the engine and save its state until cancelled; then save once more.

        The state is saved every ``save_s``, and also at the first tick after a pending timer (a
        ``for`` window, a clear-after period) started: a worker killed then restarts with the
        window's start, not at the next breaching reading. Those extra saves come at most every 5 s
        and every 50 times the last save's duration: each one costs the interpreter's time that
        ingestion waits for (`bench/scaleout.py` measured 10-40 % more CPU per reading with one a
        second), and at this pace they cost under 2 % of a core however large the city.
        """
        next_save = time.monotonic() + self.save_s
        saved_timers = self.engine.timers_started()
        soonest = 0.0
        try:
            while True:
                await asyncio.sleep(self.tick_s)
                self.emit(await asyncio.to_thread(self.engine.tick, now_ms()))
                now = time.monotonic()
                timers = self.engine.timers_started()
                if now >= next_save or (timers != saved_timers and now >= soonest):
                    saved_timers, next_save = timers, now + self.save_s
                    started = time.perf_counter()
                    await asyncio.to_thread(self.save)
                    self.stats.last_save_ms = (time.perf_counter() - started) * 1000
                    soonest = time.monotonic() + max(
                        WINDOW_SAVE_MIN_S, 50 * (time.perf_counter() - started)
                    )
        finally:
            await asyncio.to_thread(self.save)

    def _rules_changed(self, rules: list[Rule]) -> None:
        """The rule book changed (an edit over the API, or a reload): put the new set in force."""
        events = self.engine.replace_rules(rules)
        logger.info("%s rules in force; the change caused %s events", len(rules), len(events))
        self.emit(events)

    def emit(self, events: list[ConditionEvent]) -> None:
        """Apply condition events to the alert store, in the order they are emitted.

        A small burst with nothing older waiting is applied right here, on the emitting thread (the
        event loop, for batches): the alert is on MQTT a thread hand-over sooner, and on a busy
        2-core machine each hand-over costs milliseconds of waiting for the GIL. Anything else (a
        storm's hundreds of events, or events behind others) goes to the applier thread, which
        writes what has queued up in one transaction.
        """
        if not events:
            return
        self.stats.events += len(events)
        with self._gate:
            inline = self._pending == 0 and len(events) <= self.inline_max
            if inline:
                # Nothing is queued or being applied, so nobody holds `_order` for long.
                self._order.acquire()
            else:
                self._queue.put(events)
            self._pending += 1
        if not inline:
            return
        try:
            applied = self._apply_once(events)
            if not applied:
                # The store refused (disk full, locked): the applier retries, in order. `_order` is
                # still held, so nothing emitted meanwhile can overtake these events.
                self._queue.put(events)
                return
            with self._gate:
                self._pending -= 1
                self._gate.notify_all()
        finally:
            self._order.release()

    # -- the applier ----------------------------------------------------------------------------

    def _apply_loop(self) -> None:
        while True:
            burst = self._queue.get()
            if burst is _STOP:
                return
            taken, stop = 1, False
            while True:  # take everything queued now: one transaction for the whole burst
                try:
                    more = self._queue.get_nowait()
                except queue.Empty:
                    break
                if more is _STOP:
                    stop = True
                    break
                burst = burst + more
                taken += 1
            with self._order:
                self._apply(burst)
                with self._gate:
                    self._pending -= taken
                    self._gate.notify_all()
            if stop:
                return

    def _apply_once(self, events: list[ConditionEvent]) -> bool:
        """Write ``events`` to the alert store; False (logged, counted) if the store refused them."""
        t0 = time.perf_counter()
        try:
            changes = self.store.apply_many(events)
        except Exception:
            self.stats.apply_errors += 1
            logger.exception("writing %s alert events failed; the applier will retry", len(events))
            return False
        self.stats.last_apply_ms = (time.perf_counter() - t0) * 1000
        self.stats.changes += len(changes)
        return True

    def _apply(self, events: list[ConditionEvent]) -> None:
        """`_apply_once` until it succeeds: nothing the engine decided is dropped."""
        delay = 0.05
        while not self._apply_once(events):
            # The database is away (disk full, locked for long): keep the events, retry in order.
            time.sleep(delay)
            delay = min(delay * 2, 5.0)

    @property
    def queued(self) -> int:
        """Bursts of condition events waiting for the alert store (a queue depth, for metrics)."""
        return self._queue.qsize()

    def drain(self, timeout: float = 10.0) -> bool:
        """Wait until every emitted event is in the alert store (tests, shutdown)."""
        with self._gate:
            return self._gate.wait_for(lambda: self._pending == 0, timeout)

    # -- restart --------------------------------------------------------------------------------

    def save(self) -> None:
        """Write the engine's state atomically (after the events it has emitted are in the store)."""
        self.drain(timeout=5.0)
        try:
            self.engine.save(self.state_path)
            self.stats.saves += 1
        except OSError:
            logger.exception("saving rule state to %s failed", self.state_path)

    def _reconcile(self) -> None:
        """Make the alert store agree with the engine's conditions after a (re)start.

        The two are saved at different moments: a crash between an emitted event reaching the store
        and the next state save leaves one knowing a condition the other does not. The engine's view
        wins, as it is about the data: a firing alert the engine does not hold is cleared; a
        condition the engine holds with no firing alert is raised.
        """
        held = {(a.source, a.rule): a for a in self.engine.active()}
        at = now_ms()
        events: list[ConditionEvent] = []
        firing = set()
        for alert in self.store.active_alerts():
            # Only conditions of the engine's own sources; cameras and incidents have their own.
            if not alert.firing or not alert.source.startswith(ENGINE_SOURCES):
                continue
            if not self.engine.owns_source(alert.source):
                continue  # another ingest worker's device or area
            firing.add((alert.source, alert.rule))
            if (alert.source, alert.rule) not in held:
                gone = Active(
                    rule=alert.rule,
                    source=alert.source,
                    kind=alert.kind,
                    level=alert.level,
                    device=alert.device,
                    area=alert.area,
                    metric=alert.metric,
                )
                events.append(
                    gone.cleared(at, "the rule engine no longer held the condition after a restart")
                )
        for key, active in held.items():
            if key not in firing:
                subject = active.device or active.area or active.source
                events.append(
                    ConditionEvent(
                        rule=active.rule,
                        source=active.source,
                        kind=active.kind,
                        level=active.level,
                        firing=True,
                        at_ms=at,
                        summary=f"{subject}: condition of rule {active.rule} held at restart",
                        device=active.device,
                        area=active.area,
                        metric=active.metric,
                    )
                )
        if events:
            logger.info("reconciled %s alert conditions with the rule engine's state", len(events))
            self.emit(events)

    def close(self) -> None:
        """Apply what is queued and stop the applier (after `run` saved the state)."""
        self._queue.put(_STOP)
        self._applier.join(timeout=10)
