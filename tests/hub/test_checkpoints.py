"""Which rule-state checkpoints a worker starts from when the number of ingest workers changes."""

from __future__ import annotations

import contextlib
from pathlib import Path

import numpy as np

from alerts.engine import RuleEngine
from alerts.lifecycle import Action
from alerts.rulebook import RuleBook
from alerts.store import AlertStore
from devices.partitions import Slot
from devices.registry import Registry
from hub.alerting import Alerting, now_ms
from hub.checkpoints import base_path, checkpoint_sources
from hub.slots import slot_file
from ingest.batch import ReadingBatch
from tests.alerts.city import city_registry  # noqa: F401 - the `registry` fixture
from tests.alerts.test_engine_moves import _workers_apart
from tests.hub.test_alerting_reconcile import _book


def _opened(registry: Registry, *devices: str) -> ReadingBatch:
    interner = registry.interner
    n = len(devices)
    return ReadingBatch.from_columns(
        np.array([interner.devices[d].index for d in devices], dtype=np.int32),
        np.full(n, interner.metrics["cover_open"], dtype=np.int16),
        np.full(n, now_ms(), dtype=np.int64),
        np.ones(n),
    )


def _save(registry: Registry, book: RuleBook, path: Path, slot: Slot | None, at: int) -> None:
    engine = RuleEngine(registry, book.rules(), lambda: at, slot=slot)
    engine.save(path)


def test_a_worker_prefers_its_own_checkpoint(registry: Registry, tmp_path: Path) -> None:
    book = _book(registry, tmp_path)
    slot = Slot(1, 2)
    own = tmp_path / slot_file("rule-state.npz", slot)
    assert own.name == "rule-state-w1of2.npz"
    assert base_path(own, slot) == tmp_path / "rule-state.npz"
    _save(registry, book, tmp_path / "rule-state.npz", None, 1_000)
    _save(registry, book, own, slot, 2_000)
    assert checkpoint_sources(own, slot) == [own]
    book.dispose()


def test_without_one_it_takes_every_file_of_the_newest_other_layout(
    registry: Registry, tmp_path: Path
) -> None:
    book = _book(registry, tmp_path)
    base = tmp_path / "rule-state.npz"
    _save(registry, book, base, None, 1_000)  # one worker, long ago
    for k in range(3):  # then three workers
        _save(registry, book, tmp_path / f"rule-state-w{k}of3.npz", Slot(k, 3), 5_000 + k)
    (tmp_path / "rule-state-w9of9.npz").write_bytes(b"not a checkpoint")  # skipped, kept
    # Now two workers: slot 0 has saved already, slot 1 starts for the first time.
    _save(registry, book, tmp_path / "rule-state-w0of2.npz", Slot(0, 2), 9_000)
    own = tmp_path / "rule-state-w1of2.npz"
    assert checkpoint_sources(own, Slot(1, 2)) == [
        tmp_path / f"rule-state-w{k}of3.npz" for k in range(3)
    ]
    # Back to one worker: its own file is of that layout, and it is older than the others, but
    # it is its own.
    assert checkpoint_sources(base, None) == [base]
    base.unlink()
    assert checkpoint_sources(base, None) == [tmp_path / "rule-state-w0of2.npz"]
    assert (tmp_path / "rule-state-w9of9.npz").exists()
    book.dispose()


def test_nothing_to_start_from_is_a_fresh_start(registry: Registry, tmp_path: Path) -> None:
    assert checkpoint_sources(tmp_path / "rule-state-w0of2.npz", Slot(0, 2)) == []
    del registry


def test_alerts_survive_a_move_from_one_worker_to_several(
    registry: Registry, tmp_path: Path
) -> None:
    """One worker raised two alerts in two districts; then the hub runs as several workers."""
    book = _book(registry, tmp_path)
    store = AlertStore(str(registry.engine.url))
    base = tmp_path / "rule-state.npz"
    single = Alerting(registry, book, store, base)
    try:
        single.emit(single.engine.evaluate(_opened(registry, "mc-1", "mc-far")))
        assert single.drain()
        single.save()
    finally:
        single.close()
    raised = {a.source: a.id for a in store.active_alerts()}
    assert set(raised) == {"device:mc-1", "device:mc-far"}
    saved = base.read_bytes()

    workers = _workers_apart()
    held: dict[str, int] = {}
    for k in range(workers):
        slot = Slot(k, workers)
        path = tmp_path / slot_file("rule-state.npz", slot)
        node = Alerting(registry, book, store, path, slot=slot)
        try:
            assert node.drain()
            for a in node.engine.active():
                held[a.source] = held.get(a.source, 0) + 1
            node.save()
        finally:
            node.close()
        assert path.exists()
    assert held == {"device:mc-1": 1, "device:mc-far": 1}  # each by exactly one worker
    assert base.read_bytes() == saved  # the old layout's file is left as it was
    for source, alert_id in raised.items():  # the same alerts, still firing, never cleared
        alert = store.active(source, "cover-open")
        assert alert is not None
        assert alert.id == alert_id
        assert alert.firing
        assert all(e.action is not Action.CLEAR for e in store.history(alert_id))
    store.dispose()
    book.dispose()


FOR_RULES = """
- id: cover-open-long
  kind: threshold
  device_type: manhole_cover
  metric: cover_open
  levels: {orange: 1}
  for_s: 600
"""


async def test_a_window_that_opens_is_checkpointed_at_the_next_tick(
    registry: Registry, tmp_path: Path
) -> None:
    """Not ``save_s`` later: a worker killed then would start the window again."""
    import asyncio  # noqa: PLC0415

    rules_file = tmp_path / "rules.yaml"
    rules_file.write_text(FOR_RULES)
    book = RuleBook(str(registry.engine.url), paths=[rules_file], shipped=False)
    store = AlertStore(str(registry.engine.url))
    state = tmp_path / "rule-state.npz"
    alerting = Alerting(registry, book, store, state, tick_s=0.05, save_s=3600)
    running = asyncio.create_task(alerting.run())
    try:
        await asyncio.sleep(0.3)
        assert not state.exists()  # nothing pending yet: no save before save_s
        batch = _opened(registry, "mc-1")
        opened_at = int(batch.ts[0])  # the window starts at the reading's time
        assert not alerting.engine.evaluate(batch)  # pending, not firing
        for _ in range(100):
            await asyncio.sleep(0.05)
            if state.exists():
                break
        assert state.exists(), "the window's start was not checkpointed"
        saves = alerting.stats.saves
        await asyncio.sleep(0.3)
        assert alerting.stats.saves == saves  # nothing new started: no more saves
    finally:
        running.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await running
        alerting.close()
    # A process started from that checkpoint fires 600 s after the first breach, not later.
    later = opened_at + 600_000
    engine = RuleEngine.load(state, registry, book.rules(), lambda: later)
    fired = engine.tick(later)
    assert [(e.source, e.firing) for e in fired] == [("device:mc-1", True)]
    store.dispose()
    book.dispose()
