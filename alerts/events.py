"""What the rule engine tells the alert lifecycle: a condition started, changed level, or cleared.

The engine (`alerts.engine`) knows rules and series; the lifecycle (`alerts.lifecycle`) knows alerts,
people and audit. This module is the whole contract between them, so each can be built and tested
alone: the engine emits `ConditionEvent`s, the lifecycle applies them, one active alert per
(source, rule).
"""

from __future__ import annotations

import enum
from dataclasses import dataclass, field


class Level(enum.IntEnum):
    """China's four warning colours, ordered (and ``info`` below them); comparisons mean severity."""

    INFO = 0
    BLUE = 1
    YELLOW = 2
    ORANGE = 3
    RED = 4

    @classmethod
    def parse(cls, name: str) -> Level:
        """``"orange"`` -> ``Level.ORANGE``; raises ValueError naming the valid levels."""
        try:
            return cls[name.upper()]
        except KeyError:
            valid = ", ".join(m.name.lower() for m in cls)
            msg = f"level {name!r} is not one of {valid}"
            raise ValueError(msg) from None

    @property
    def label(self) -> str:
        """The level's lower-case name, as on the wire."""
        return self.name.lower()


@dataclass(frozen=True, slots=True)
class Evidence:
    """A reading that made (or kept) a condition true."""

    device: str
    metric: str
    ts_ms: int
    value: float


@dataclass(frozen=True, slots=True)
class ConditionEvent:
    """A rule's condition on one source: started or changed level (``firing``) or ended (cleared).

    Attributes:
        rule: the rule's id.
        source: what the condition is about: ``device:<id>``, ``area:<path>`` or
            ``cluster:<rule>:<first device>``; with ``rule`` it names the one active alert.
        kind: the rule kind (threshold, rate, accumulation, offline, composite, cluster).
        level: the level now (for a cleared event, the level it had).
        firing: True while the condition holds; False when it cleared.
        at_ms: when the engine decided (the clock's time, epoch ms UTC).
        summary: one sentence for a duty officer, e.g. "water level 5.32 m above orange 5.20 m".
        device, area, metric, value: what it is about, where known.
        evidence: the readings that triggered it (a few, newest last).
    """

    rule: str
    source: str
    kind: str
    level: Level
    firing: bool
    at_ms: int
    summary: str
    device: str | None = None
    area: str | None = None
    metric: str | None = None
    value: float | None = None
    evidence: tuple[Evidence, ...] = field(default_factory=tuple)
