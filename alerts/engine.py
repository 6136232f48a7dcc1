"""The rule engine: readings and the clock in, condition events out (started, changed level, cleared).

Pure and synchronous (the hub runs it in a task): ``evaluate(batch)`` for readings, ``tick(now_ms)``
for everything time-driven (offline, ``for_s`` windows that elapse between readings, clear-after
periods, accumulation windows sliding past old rain). One active condition per (rule, source) and
events only on change, so the lifecycle never sees a duplicate.

Evaluation is vectorised: the batch is cut once per metric (`alerts.batchrows`), and each rule runs a
few numpy operations over its metric's rows with per-device bounds (after overrides) and state in
arrays; a Python loop runs per rule and per event emitted, never per reading. Compiled rules are
rebuilt when the registry's version moves, their state carried over by device index.

State survives a restart through `state_snapshot` / `restore` (or `save` / `load`, atomic on disk).
"""

from __future__ import annotations

import logging
import os
import tempfile
import threading
from collections.abc import Callable, Sequence
from dataclasses import asdict
from pathlib import Path
from typing import Any, Self

import numpy as np
from numpy.typing import NDArray

from alerts.batchrows import Newest
from alerts.derived import ClusterRuntime, CompositeRuntime, DeviceConditions
from alerts.devicetable import DeviceTable
from alerts.events import ConditionEvent, Level
from alerts.levelrules import LevelRuntime, ThresholdRuntime
from alerts.offline import OfflineRuntime
from alerts.rules import (
    AccumulationRule,
    CompositeRule,
    OfflineRule,
    RateRule,
    Rule,
    RuleError,
    ThresholdRule,
)
from alerts.ruleset import check_rule_set
from alerts.rulestate import Active, Runtime, StateData
from alerts.statefile import StateFile, StateFileError, pack
from alerts.statemoves import only_mine, writer_layout, writer_owned
from alerts.windows import AccumulationRuntime, RateRuntime
from devices.partitions import Slot
from devices.registry import Registry
from ingest.batch import ReadingBatch

logger = logging.getLogger(__name__)

Clock = Callable[[], int]
"""Epoch milliseconds UTC now; injected so tests drive time."""

SNAPSHOT_FORMAT = 1


class RuleEngine:
    """Rules compiled against the registry, evaluated over batches and on the clock."""

    def __init__(
        self,
        registry: Registry,
        rules: Sequence[Rule],
        clock: Clock,
        *,
        slot: Slot | None = None,
    ) -> None:
        """Compile ``rules`` for the registry's devices (those ``slot`` owns, with several workers).

        An ingest worker's engine watches only its own devices (devices/partitions.py): it hears
        no others, and must not call them offline.

        Raises:
            RuleError: the rules do not form a valid set (duplicate ids, dangling references).
        """
        check_rule_set(rules)
        self.registry = registry
        self.clock = clock
        self.slot = slot if slot is not None and not slot.alone else None
        self._lock = threading.RLock()
        now = clock()
        self._table = self._owned(DeviceTable.from_registry(registry))
        # When each device was last heard (the clock's time, not the reading's: offline is about
        # messages arriving). Devices never heard count from when the engine started watching them.
        self._heard = np.full(self._table.size, now, dtype=np.int64)
        self._watch = np.zeros(self._table.size, dtype=np.bool_)  # held offline by some rule
        self._newest = Newest(self._table.size)
        self._rules: list[Rule] = []
        self._runtimes: dict[str, Runtime] = {}
        self._by_metric: dict[int, list[LevelRuntime]] = {}
        self._wanted = np.zeros(0, dtype=np.bool_)
        self._pending: list[ConditionEvent] = []
        # A bug in one rule must not stop the others: failures are logged (when the error
        # changes) and counted per rule id.
        self.failures: dict[str, int] = {}
        self._last_error: dict[str, str] = {}
        self._pending += self._install(list(rules), now)

    # -- the two entry points -------------------------------------------------------------------

    def evaluate(self, batch: ReadingBatch) -> list[ConditionEvent]:
        """Take in a batch of readings; returns the conditions that started, changed or cleared."""
        with self._lock:
            now = self.clock()
            events = self._drain()
            if not len(batch):
                return events
            events += self._sync(int(batch.device.max()) + 1, now)
            via = self._table.via[batch.device]
            heard = np.concatenate([batch.device, via[via >= 0]])
            self._heard[heard] = now
            if self._watch[heard].any():
                # A device held offline was heard: clear it now rather than at the next tick.
                for off in self._offline():
                    if off.watching(heard):
                        events += self._guarded(off, off.run, now, self._heard)
                self._rewatch()
            for metric, rows in self._newest.split(batch, self._wanted).items():
                for rt in self._by_metric.get(metric, ()):
                    events += self._guarded(rt, rt.evaluate, rows, now)
            events += self._derive(events, now)
            return events

    def tick(self, now_ms: int) -> list[ConditionEvent]:
        """Everything time-driven at ``now_ms``: offline, ``for_s`` windows, clear-after, sliding sums."""
        with self._lock:
            events = self._drain()
            events += self._sync(0, now_ms)
            for off in self._offline():
                events += self._guarded(off, off.run, now_ms, self._heard)
            self._rewatch()
            for rt in self._runtimes.values():
                if isinstance(rt, LevelRuntime):
                    events += self._guarded(rt, rt.tick, now_ms)
            events += self._derive(events, now_ms)
            return events

    def _guarded(
        self,
        rt: Runtime,
        step: Callable[..., list[ConditionEvent]],
        *args: Any,  # noqa: ANN401
    ) -> list[ConditionEvent]:
        """``step(*args)``; an exception (a bug) is logged when it changes, counted, and skipped."""
        try:
            return step(*args)
        except Exception as exc:
            self.failures[rt.rule_id] = self.failures.get(rt.rule_id, 0) + 1
            text = f"{type(exc).__name__}: {exc}"
            if self._last_error.get(rt.rule_id) != text:
                self._last_error[rt.rule_id] = text
                logger.exception("rule %s failed; its other work goes on", rt.rule_id)
            return []

    def heard_via(self, devices: NDArray[np.integer[Any]]) -> NDArray[np.intp]:
        """For each of ``devices``, the gateway it reports through (-1: none, or not known yet).

        A detector's reading proves its gateway alive; the hub's live state uses this too.
        """
        with self._lock:
            via = self._table.via
            inside = devices < len(via)
            out = np.full(len(devices), -1, dtype=np.intp)
            out[inside] = via[devices[inside]]
            return out

    # -- rules ----------------------------------------------------------------------------------

    @property
    def rules(self) -> list[Rule]:
        """The rules in force, in the order given."""
        return list(self._rules)

    def replace_rules(self, rules: Sequence[Rule]) -> list[ConditionEvent]:
        """Put a new rule set in force (a reload); returns the events the change causes.

        Unchanged rules keep all their state. A changed rule of the same kind keeps its active
        conditions and windows (history, sums) but starts its pending ``for``/``repeat`` timers
        afresh; the next readings re-judge its conditions. Conditions of removed rules, or of rules
        whose kind changed, are cleared.

        Raises:
            RuleError: the rules do not form a valid set.
        """
        check_rule_set(rules)
        with self._lock:
            return self._install(list(rules), self.clock())

    def active(self) -> list[Active]:
        """Every condition the engine holds now (for reconciling the lifecycle after a restart)."""
        with self._lock:
            return [a for rt in self._runtimes.values() for a in rt.active()]

    def _install(self, rules: list[Rule], now: int) -> list[ConditionEvent]:
        old_rules = {r.id: r for r in self._rules}
        old = self._runtimes
        runtimes: dict[str, Runtime] = {}
        events: list[ConditionEvent] = []
        for rule in rules:
            before = old_rules.get(rule.id)
            prev = old.get(rule.id)
            if before is not None and prev is not None and before == rule:
                runtimes[rule.id] = prev  # unchanged: keep the runtime and every bit of its state
                continue
            rt = self._build(rule, self._table)
            if rt is None:
                continue
            runtimes[rule.id] = rt
            if prev is not None and before is not None and before.kind == rule.kind:
                events += rt.take(prev.export(), keep_pending=False, now_ms=now)
            elif prev is not None:
                events += [a.cleared(now, "its rule changed kind") for a in prev.active()]
        for rule_id, prev in old.items():
            if rule_id not in runtimes:
                events += [
                    a.cleared(now, "its rule was removed or disabled") for a in prev.active()
                ]
        self._rules = rules
        self._runtimes = runtimes
        self._index_metrics()
        for rt in runtimes.values():
            if isinstance(rt, ClusterRuntime) and rt.rule_id not in old:
                member = runtimes.get(rt.rule.rule)
                if isinstance(member, LevelRuntime | OfflineRuntime):
                    rt.seed(member.active_devices(Level.BLUE), now)
        self._rewatch()
        events += self._derive(events, now, everything=True)
        return events

    def _build(self, rule: Rule, table: DeviceTable) -> Runtime | None:
        if not rule.enabled:
            return None
        rt: Runtime
        if isinstance(rule, ThresholdRule):
            rt = ThresholdRuntime(rule, table, self._unit(rule))
        elif isinstance(rule, RateRule):
            rt = RateRuntime(rule, table, self._unit(rule))
        elif isinstance(rule, AccumulationRule):
            rt = AccumulationRuntime(rule, table, self._unit(rule))
        elif isinstance(rule, OfflineRule):
            rt = OfflineRuntime(rule, table)
        elif isinstance(rule, CompositeRule):
            rt = CompositeRuntime(rule, table)
        else:
            rt = ClusterRuntime(rule, table)
        return rt

    def _unit(self, rule: ThresholdRule | RateRule | AccumulationRule) -> str:
        if rule.metric not in self.registry.interner.metrics:
            logger.warning("rule %s: no profile reports metric %s yet", rule.id, rule.metric)
        return self.registry.metric_unit(rule.metric) or ""

    def _index_metrics(self) -> None:
        metrics = self.registry.interner.metrics
        by_metric: dict[int, list[LevelRuntime]] = {}
        for rt in self._runtimes.values():
            if isinstance(rt, LevelRuntime) and rt.rule.metric in metrics:
                by_metric.setdefault(metrics[rt.rule.metric], []).append(rt)
        wanted = np.zeros(max(by_metric, default=-1) + 1, dtype=np.bool_)
        wanted[list(by_metric)] = True
        self._by_metric, self._wanted = by_metric, wanted

    def _offline(self) -> list[OfflineRuntime]:
        return [rt for rt in self._runtimes.values() if isinstance(rt, OfflineRuntime)]

    def _rewatch(self) -> None:
        self._watch[:] = False
        for off in self._offline():
            self._watch[off.held()] = True

    def _derive(
        self, events: list[ConditionEvent], now: int, *, everything: bool = False
    ) -> list[ConditionEvent]:
        """Composite and cluster rules over the events just produced."""
        if not events and not everything:
            return []
        touched = {e.rule for e in events}
        out: list[ConditionEvent] = []
        for rt in self._runtimes.values():
            if isinstance(rt, CompositeRuntime) and (everything or touched & set(rt.rule.all_of)):
                members: list[DeviceConditions | None] = []
                for rid in rt.rule.all_of:
                    m = self._runtimes.get(rid)
                    members.append(m if isinstance(m, LevelRuntime | OfflineRuntime) else None)
                out += self._guarded(rt, rt.update, members, now)
            elif isinstance(rt, ClusterRuntime) and rt.rule.rule in touched:
                out += self._guarded(
                    rt, rt.feed, [e for e in events if e.rule == rt.rule.rule], now
                )
        return out

    def _drain(self) -> list[ConditionEvent]:
        events, self._pending = self._pending, []
        return events

    # -- registry changes -----------------------------------------------------------------------

    def _sync(self, size: int, now: int) -> list[ConditionEvent]:
        """Rebuild compiled rules when the registry changed (or a batch names a newer index)."""
        if self.registry.version == self._table.version and size <= self._table.size:
            return []
        table = self._owned(DeviceTable.from_registry(self.registry, size))
        grown = table.size - self._table.size
        if grown > 0:
            self._heard = np.concatenate([self._heard, np.full(grown, now, dtype=np.int64)])
            self._watch = np.concatenate([self._watch, np.zeros(grown, dtype=np.bool_)])
            self._newest.grow(table.size)
        self._table = table
        events: list[ConditionEvent] = []
        runtimes: dict[str, Runtime] = {}
        for rule in self._rules:
            prev = self._runtimes.get(rule.id)
            rt = self._build(rule, table)
            if rt is None:
                continue
            if prev is not None:
                events += rt.take(prev.export(), keep_pending=True, now_ms=now)
            runtimes[rule.id] = rt
        self._runtimes = runtimes
        self._index_metrics()
        self._rewatch()
        events += self._derive(events, now, everything=True)
        logger.info(
            "rules recompiled for registry version %s (%s devices)", table.version, table.size
        )
        return events

    def _owned(self, table: DeviceTable) -> DeviceTable:
        """``table`` with the devices other worker slots own marked out of service for the rules."""
        if self.slot is not None:
            mine = self.slot.mask(table.area.tolist(), table.ids)
            table.elsewhere = table.active & ~mine
            table.active &= mine
        return table

    def owns_source(self, source: str) -> bool:
        """Whether a condition's source (``device:``, ``area:``, ``cluster:<rule>:<device>``) is ours."""
        if self.slot is None:
            return True
        kind, _, rest = source.partition(":")
        if kind == "area":
            return self.slot.owns(rest, "")
        device = rest.rpartition(":")[2] if kind == "cluster" else rest
        with self._lock:
            index = self._table.index_of(device)
            area = str(self._table.area[index]) if index is not None else ""
        return self.slot.owns(area, device)

    # -- surviving a restart --------------------------------------------------------------------

    def timers_started(self) -> int:
        """Pending timers (``for`` windows, clear-after periods) started since the engine was made.

        A checkpoint taken after this moved keeps those windows' starts across a restart.
        """
        with self._lock:
            return sum(
                rt.state.timers_started
                for rt in self._runtimes.values()
                if isinstance(rt, LevelRuntime)
            )

    def state_snapshot(self) -> bytes:
        """All rule state as bytes (an ``.npz`` archive with a JSON header; no pickles)."""
        with self._lock:
            arrays: dict[str, NDArray[Any]] = {"heard": self._heard.copy()}
            names = self.registry.interner.metric_names
            newest = []
            for i, (m, arr) in enumerate(sorted(self._newest.by_metric.items())):
                if m < len(names):
                    newest.append(names[m])
                    arrays[f"newest.{i}"] = arr.copy()
            header: dict[str, Any] = {
                "format": SNAPSHOT_FORMAT,
                "saved_ms": self.clock(),
                "newest": newest,
                "rules": [],
                # Which devices this state is about: a worker slot's own, or all of them.
                "slot": writer_layout(self.slot),
            }
            rules = {r.id: r for r in self._rules}
            for i, (rule_id, rt) in enumerate(self._runtimes.items()):
                data = rt.export()
                header["rules"].append(
                    {
                        "id": rule_id,
                        "kind": rt.kind,
                        "fingerprint": rules[rule_id].fingerprint(),
                        "fields": sorted(data),
                        "active": [_active_json(a) for a in rt.active()],
                    }
                )
                for name, arr in data.items():
                    arrays[f"r{i}.{name}"] = arr
        # Packed outside the lock: the exports are copies, and packing under it would hold every
        # batch's evaluation for that long.
        return pack(header, arrays)

    @classmethod
    def restore(
        cls,
        snapshot: bytes,
        registry: Registry,
        rules: Sequence[Rule],
        clock: Clock,
        *,
        slot: Slot | None = None,
    ) -> Self:
        """An engine for ``rules`` that continues from ``snapshot``.

        Rules unchanged since the snapshot continue exactly (pending ``for`` windows, counters,
        windows, active conditions); changed ones keep their conditions and windows; conditions of
        rules no longer present are cleared by the first `evaluate` or `tick`. The time the hub was
        down does not count as the devices' silence.

        Raises:
            RuleError: the snapshot is not one this engine wrote.
        """
        return cls.restore_many([snapshot], registry, rules, clock, slot=slot)

    @classmethod
    def restore_many(
        cls,
        snapshots: Sequence[bytes],
        registry: Registry,
        rules: Sequence[Rule],
        clock: Clock,
        *,
        slot: Slot | None = None,
    ) -> Self:
        """An engine that continues from the snapshots of the workers of another layout.

        When the number of ingest workers changes, districts move between slots: each new slot
        takes, from every old worker's snapshot, the state of the devices and areas it owns now
        (each snapshot says which slot wrote it, so a device's state comes from the worker that
        watched it). Conditions that moved to another slot are left to it, not cleared.

        Raises:
            RuleError: a snapshot is not one this engine wrote.
        """
        engine = cls(registry, rules, clock, slot=slot)
        with engine._lock:
            now = engine.clock()
            events: list[ConditionEvent] = []
            for snapshot in snapshots:
                events += engine._load(snapshot, now)
            engine._rewatch()
            events += engine._derive(events, now, everything=True)
            engine._pending += events
        return engine

    def save(self, path: str | Path) -> None:
        """Write `state_snapshot` to ``path`` atomically (a crash leaves the old file or the new one)."""
        target = Path(path)
        blob = self.state_snapshot()
        fd, tmp = tempfile.mkstemp(prefix=target.name + ".", suffix=".tmp", dir=target.parent)
        try:
            with os.fdopen(fd, "wb") as f:
                f.write(blob)
                f.flush()
                os.fsync(f.fileno())
            Path(tmp).replace(target)
        except BaseException:
            Path(tmp).unlink(missing_ok=True)
            raise
        dir_fd = os.open(target.parent, os.O_RDONLY)
        try:
            os.fsync(dir_fd)
        finally:
            os.close(dir_fd)

    @classmethod
    def load(
        cls,
        path: str | Path,
        registry: Registry,
        rules: Sequence[Rule],
        clock: Clock,
        *,
        slot: Slot | None = None,
    ) -> Self:
        """`restore` from a file `save` wrote; a missing file gives a fresh engine."""
        target = Path(path)
        if not target.exists():
            return cls(registry, rules, clock, slot=slot)
        return cls.restore(target.read_bytes(), registry, rules, clock, slot=slot)

    def _load(self, snapshot: bytes, now: int) -> list[ConditionEvent]:
        try:
            archive = StateFile(snapshot)
        except StateFileError as exc:
            raise RuleError(str(exc)) from exc
        header = archive.header
        if header.get("format") != SNAPSHOT_FORMAT:
            msg = (
                f"rule engine snapshot format {header.get('format')!r}, expected {SNAPSHOT_FORMAT}"
            )
            raise RuleError(msg)
        with archive:
            downtime = max(0, now - int(header["saved_ms"]))
            # Only what the writer watched: another worker's snapshot says nothing of our devices.
            watched = np.flatnonzero(writer_owned(header.get("slot"), self._table))
            heard = archive["heard"]
            rows = watched[watched < min(len(heard), len(self._heard))]
            self._heard[rows] = heard[rows] + downtime
            metrics = self.registry.interner.metrics
            for i, name in enumerate(header["newest"]):
                m = metrics.get(name)
                if m is not None:
                    arr = archive[f"newest.{i}"]
                    rows = watched[watched < min(len(arr), self._newest.size)]
                    self._newest.series(m)[rows] = arr[rows]
            rules = {r.id: r for r in self._rules}
            events: list[ConditionEvent] = []
            for i, entry in enumerate(header["rules"]):
                rt = self._runtimes.get(entry["id"])
                if rt is None or rt.kind != entry["kind"]:
                    why = "its rule was removed or changed kind while the hub was down"
                    events += [
                        _active_from_json(a).cleared(now, why)
                        for a in entry["active"]
                        if self.owns_source(a["source"])
                    ]
                    continue
                data: StateData = {f: archive[f"r{i}.{f}"] for f in entry["fields"]}
                if self.slot is not None:
                    data = only_mine(rt.kind, data, self._table, self.slot)
                same = rules[entry["id"]].fingerprint() == entry["fingerprint"]
                events += rt.take(data, keep_pending=same, now_ms=now)
        return events


def _active_json(a: Active) -> dict[str, Any]:
    d = asdict(a)
    d["level"] = int(a.level)
    return d


def _active_from_json(d: dict[str, Any]) -> Active:
    return Active(**{**d, "level": Level(int(d["level"]))})
