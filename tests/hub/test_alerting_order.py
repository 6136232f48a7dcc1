"""Condition events reach the alert store in the order they were emitted, inline or through the applier.

`Alerting.emit` applies a small burst on the emitting thread when nothing older waits, and queues
everything else for the applier thread; these tests hold it to its one promise: the store sees the
events in emission order, and nothing is dropped when the store refuses a write for a while.
"""

from __future__ import annotations

import threading
from dataclasses import replace
from pathlib import Path

from alerts.events import ConditionEvent, Level
from alerts.rulebook import RuleBook
from alerts.store import AlertStore
from devices.registry import Registry
from hub.alerting import Alerting, now_ms
from tests.alerts.city import city_registry  # noqa: F401 - the `registry` fixture

RULES = """
- id: cover-open
  kind: threshold
  device_type: manhole_cover
  metric: cover_open
  levels: {blue: 0.2, yellow: 0.4, orange: 0.6, red: 0.8}
"""
LEVELS = [Level.BLUE, Level.YELLOW, Level.ORANGE, Level.RED]


def _alerting(registry: Registry, tmp_path: Path, store: AlertStore, **kw: int) -> Alerting:
    path = tmp_path / "rules.yaml"
    path.write_text(RULES)
    book = RuleBook(str(registry.engine.url), paths=[path], shipped=False)
    return Alerting(registry, book, store, tmp_path / "rule-state.npz", **kw)


def _event(k: int, at: int) -> ConditionEvent:
    """The k-th change of one condition: levels cycle blue, yellow, orange, red, ..."""
    return ConditionEvent(
        rule="cover-open",
        source="device:mc-1",
        kind="threshold",
        level=LEVELS[k % 4],
        firing=True,
        at_ms=at + k,
        summary=f"change {k}",
        device="mc-1",
        metric="cover_open",
        value=float(k),
    )


def _levels_in_audit(store: AlertStore) -> list[str]:
    alert = store.active("device:mc-1", "cover-open")
    assert alert is not None
    return [e.note for e in store.history(alert.id)]


def test_small_bursts_inline_and_large_bursts_queued_keep_emission_order(
    registry: Registry, tmp_path: Path
) -> None:
    store = AlertStore(str(registry.engine.url))
    alerting = _alerting(registry, tmp_path, store, inline_max=2)
    try:
        at = now_ms()
        events = [_event(k, at) for k in range(60)]
        # Alternate bursts the applier must take (5 events) with ones that may go inline (1-2).
        bursts, k = [], 0
        for size in [1, 5, 2, 1, 5, 5, 1, 2, 2, 5, 1, 1, 5, 2, 5, 1, 5, 5, 2]:
            bursts.append(events[k : k + size])
            k += size
        for burst in bursts:
            alerting.emit(burst)
        assert alerting.drain(10)
        emitted = [e.summary for burst in bursts for e in burst]
        assert _levels_in_audit(store) == emitted
    finally:
        alerting.close()


def test_emitters_on_several_threads_lose_nothing(registry: Registry, tmp_path: Path) -> None:
    store = AlertStore(str(registry.engine.url))
    alerting = _alerting(registry, tmp_path, store)
    at = now_ms()
    per_thread = 40

    def emitter(t: int) -> None:
        for i in range(per_thread):
            # Each thread its own device: order holds per thread, whatever the interleaving.
            e = _event(i, at)
            alerting.emit([replace(e, source=f"device:mc-{t}", device=f"mc-{t}")])

    threads = [threading.Thread(target=emitter, args=(t,)) for t in range(1, 4)]
    try:
        for t in threads:
            t.start()
        for t in threads:
            t.join(30)
        assert alerting.drain(10)
        for t in range(1, 4):
            alert = store.active(f"device:mc-{t}", "cover-open")
            assert alert is not None
            notes = [e.note for e in store.history(alert.id)]
            assert notes == [f"change {i}" for i in range(per_thread)]
    finally:
        alerting.close()


def test_a_refused_inline_write_is_retried_in_order(registry: Registry, tmp_path: Path) -> None:
    store = AlertStore(str(registry.engine.url))
    alerting = _alerting(registry, tmp_path, store)
    real = store.apply_many
    refusals = 2

    def flaky(events: list[ConditionEvent]) -> object:
        nonlocal refusals
        if refusals:
            refusals -= 1
            raise OSError("database is locked (the test's)")
        return real(events)

    store.apply_many = flaky  # type: ignore[method-assign]
    try:
        at = now_ms()
        for k in range(6):
            alerting.emit([_event(k, at)])
        assert alerting.drain(10)
        assert alerting.stats.apply_errors == 2
        assert _levels_in_audit(store) == [f"change {k}" for k in range(6)]
    finally:
        alerting.close()
