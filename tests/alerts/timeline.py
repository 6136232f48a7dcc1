"""Timeline tests for the rule engine: push readings and tick the clock at given seconds, then want events.

Modelled on Alertmanager's acceptance tests (``Push(At(1), ...)``, ``Want(Between(2, 2.5), ...)``):
time is an injected clock, never a sleep. Seconds are relative to the timeline's start.

    tl = Timeline(registry, rules)
    tl.push(at=0, device="wl-a1", metric="water_level", value=5.1)
    tl.want(fired("water-level-high", "wl-a1", "yellow", at=0))
    tl.tick(at=60)
    tl.want()  # nothing new

``want`` checks the events emitted since the previous ``want`` (or in ``between`` when given), exactly
and in order, matching only the fields a pattern names.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

from alerts.engine import RuleEngine
from alerts.events import ConditionEvent, Level
from alerts.rules import Rule
from alerts.ruleset import parse_text
from devices.registry import Registry
from ingest.batch import ReadingBatch

T0_MS = 1_767_225_600_000  # 2026-01-01T00:00:00Z


def rules(text: str) -> list[Rule]:
    """Rules from a YAML snippet."""
    return parse_text(text, "test rules")


class Clock:
    """The engine's clock: epoch ms, moved only by the timeline."""

    def __init__(self, now_ms: int = T0_MS) -> None:
        self.now_ms = now_ms

    def __call__(self) -> int:
        return self.now_ms


@dataclass(frozen=True)
class Want:
    """A pattern for one event; None fields match anything."""

    rule: str | None = None
    source: str | None = None
    level: str | None = None
    firing: bool | None = None
    at: float | None = None
    summary_has: str | None = None

    def matches(self, ev: ConditionEvent, t0_ms: int) -> bool:
        return (
            (self.rule is None or ev.rule == self.rule)
            and (self.source is None or ev.source == self.source)
            and (self.level is None or ev.level == Level.parse(self.level))
            and (self.firing is None or ev.firing == self.firing)
            and (self.at is None or ev.at_ms == t0_ms + round(self.at * 1000))
            and (self.summary_has is None or self.summary_has in ev.summary)
        )


def _source(device_or_source: str) -> str:
    return device_or_source if ":" in device_or_source else f"device:{device_or_source}"


def fired(
    rule: str, device: str, level: str, at: float | None = None, summary_has: str | None = None
) -> Want:
    """A firing event (start, level change or reminder) of ``rule`` on a device (or ``area:...``)."""
    return Want(rule, _source(device), level, True, at, summary_has)


def cleared(rule: str, device: str, at: float | None = None, level: str | None = None) -> Want:
    """A cleared event of ``rule`` on a device (or ``area:...``)."""
    return Want(rule, _source(device), level, False, at)


class Timeline:
    """An engine on an injected clock, fed reading by reading."""

    def __init__(
        self, registry: Registry, rules: Sequence[Rule], engine: RuleEngine | None = None
    ) -> None:
        self.registry = registry
        self.clock = Clock()
        self.engine = engine if engine is not None else RuleEngine(registry, rules, self.clock)
        self.events: list[ConditionEvent] = []
        self._cursor = 0

    def ms(self, seconds: float) -> int:
        return T0_MS + round(seconds * 1000)

    def _record(self, events: list[ConditionEvent]) -> list[ConditionEvent]:
        # The engine logs and skips a failing rule so the others go on; in tests that is a bug.
        assert not self.engine.failures, f"rules failed: {self.engine.failures}"
        self.events += events
        return events

    def push(
        self,
        at: float,
        device: str,
        metric: str,
        value: float,
        ts: float | None = None,
        quality: int = 0,
    ) -> list[ConditionEvent]:
        """One reading received at ``at`` (taken at ``ts``, default ``at``)."""
        return self.push_many(at, [(device, metric, value, at if ts is None else ts, quality)])

    def push_many(
        self, at: float, readings: Sequence[tuple[str, str, float, float, int]]
    ) -> list[ConditionEvent]:
        """One batch received at ``at``: rows of (device, metric, value, ts seconds, quality)."""
        interner = self.registry.interner
        self.clock.now_ms = self.ms(at)
        batch = ReadingBatch.from_columns(
            [interner.devices[d].index for d, _, _, _, _ in readings],
            [interner.metrics[m] for _, m, _, _, _ in readings],
            [self.ms(t) for _, _, _, t, _ in readings],
            [v for _, _, v, _, _ in readings],
            [q for _, _, _, _, q in readings],
        )
        return self._record(self.engine.evaluate(batch))

    def tick(self, at: float) -> list[ConditionEvent]:
        """The engine's timer at ``at``."""
        self.clock.now_ms = self.ms(at)
        return self._record(self.engine.tick(self.ms(at)))

    def ticks(self, start: float, stop: float, every: float = 1.0) -> list[ConditionEvent]:
        """Ticks from ``start`` to ``stop`` inclusive, ``every`` seconds apart."""
        out: list[ConditionEvent] = []
        t = start
        while t <= stop + 1e-9:
            out += self.tick(t)
            t += every
        return out

    def want(self, *patterns: Want, between: tuple[float, float] | None = None) -> None:
        """Exactly ``patterns``, in order: among events since the last ``want``, or ``between``."""
        if between is None:
            got = self.events[self._cursor :]
            self._cursor = len(self.events)
        else:
            lo, hi = self.ms(between[0]), self.ms(between[1])
            got = [e for e in self.events if lo <= e.at_ms <= hi]
        ok = len(got) == len(patterns) and all(
            p.matches(e, T0_MS) for p, e in zip(patterns, got, strict=True)
        )
        if not ok:
            shown = "\n  ".join(self.describe(e) for e in got) or "(none)"
            wanted = "\n  ".join(repr(p) for p in patterns) or "(none)"
            msg = f"wanted:\n  {wanted}\ngot:\n  {shown}"
            raise AssertionError(msg)

    def describe(self, e: ConditionEvent) -> str:
        state = "FIRING" if e.firing else "CLEARED"
        at = (e.at_ms - T0_MS) / 1000
        return f"t={at:g} {e.rule} {e.source} {e.level.label} {state}: {e.summary}"
