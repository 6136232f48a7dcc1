"""Incident types and step time limits: the shipped ``alerts/data/incidents.yaml``, merged with the city's file.

The file says, per level, how many minutes each step may take (`alerts.incidents.NEXT_STEP`), and
per type which unit skills suit it, which alert rules make it, and which limits it tightens. The
city's own file (settings ``response.limits_file``) has the same shape and is merged over the
shipped one: a level or type it names replaces those steps, everything else stays.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from importlib import resources
from pathlib import Path
from typing import Any

import yaml
from pydantic import BaseModel, ConfigDict, Field, ValidationError

from alerts.errors import AlertError
from alerts.events import Level
from alerts.incidents import ACTIVE_STATES, IncidentState

DEFAULT_TYPE = "other"


class IncidentRulesError(AlertError):
    """The incidents file cannot be used (raised at start-up, naming the file and the problem)."""


class StepMinutes(BaseModel):
    """Minutes per step; a step left out has no limit (or keeps the one it is merged over)."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    reported: float | None = Field(None, gt=0)
    registered: float | None = Field(None, gt=0)
    dispatched: float | None = Field(None, gt=0)
    in_progress: float | None = Field(None, gt=0)
    verified: float | None = Field(None, gt=0)

    def merged(self, over: StepMinutes | None) -> StepMinutes:
        """These minutes with those ``over`` sets replacing them."""
        if over is None:
            return self
        return self.model_copy(update=over.model_dump(exclude_none=True))


LevelName = str


class IncidentType(BaseModel):
    """One type of incident: its names, the unit skills that suit it, the rules that make it."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    name: str
    name_zh: str = ""
    skills: tuple[str, ...] = ()
    rules: tuple[str, ...] = ()
    limits: dict[LevelName, StepMinutes] = Field(default_factory=dict)


class IncidentFile(BaseModel):
    """The shape of an incidents file."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    limits: dict[LevelName, StepMinutes] = Field(default_factory=dict)
    types: dict[str, IncidentType] = Field(default_factory=dict)


def _levels(limits: Mapping[str, StepMinutes], where: str) -> dict[Level, StepMinutes]:
    out = {}
    for name, minutes in limits.items():
        try:
            out[Level.parse(name)] = minutes
        except ValueError as exc:
            msg = f"{where}: {exc}"
            raise IncidentRulesError(msg) from exc
    return out


class IncidentRules:
    """Types and limits in force: ``limit_ms(type, level, state)`` and ``type_for(rules)``."""

    def __init__(self, files: Sequence[IncidentFile]) -> None:
        """Merge ``files`` in order (later ones over earlier ones)."""
        limits: dict[Level, StepMinutes] = {}
        types: dict[str, IncidentType] = {}
        for f in files:
            for level, minutes in _levels(f.limits, "limits").items():
                limits[level] = limits.get(level, StepMinutes()).merged(minutes)
            for tid, t in f.types.items():
                old = types.get(tid)
                if old is None:
                    types[tid] = t
                    continue
                merged = {**old.limits}
                for name, m in t.limits.items():
                    merged[name] = merged.get(name, StepMinutes()).merged(m)
                types[tid] = t.model_copy(update={"limits": merged})
        if DEFAULT_TYPE not in types:
            types[DEFAULT_TYPE] = IncidentType(name="Other", name_zh="其他")
        self.limits = limits
        self.types = types
        self._type_limits = {tid: _levels(t.limits, f"type {tid}") for tid, t in types.items()}
        self._by_rule: dict[str, str] = {}
        for tid, t in types.items():
            for rule in t.rules:
                self._by_rule.setdefault(rule, tid)

    @classmethod
    def load(cls, city_file: Path | None = None) -> IncidentRules:
        """The shipped file, and ``city_file`` over it.

        Raises:
            IncidentRulesError: a file is unreadable or not of the expected shape.
        """
        shipped = resources.files("alerts") / "data" / "incidents.yaml"
        files = [_parse(shipped.read_text(encoding="utf-8"), "alerts/data/incidents.yaml")]
        if city_file is not None:
            try:
                text = city_file.read_text(encoding="utf-8")
            except OSError as exc:
                msg = f"incidents file {city_file}: {exc}"
                raise IncidentRulesError(msg) from exc
            files.append(_parse(text, str(city_file)))
        return cls(files)

    def limit_ms(self, type_id: str, level: Level, state: IncidentState) -> int | None:
        """How long ``state`` may last for an incident of ``type_id`` at ``level``; None: no limit."""
        if state not in ACTIVE_STATES:
            return None
        base = self.limits.get(level, StepMinutes())
        minutes = base.merged(self._type_limits.get(type_id, {}).get(level))
        value: float | None = getattr(minutes, state.value)
        return None if value is None else int(value * 60_000)

    def check_type(self, type_id: str) -> str:
        """``type_id`` if known; raises IncidentRulesError naming the known types otherwise."""
        if type_id not in self.types:
            msg = f"incident type {type_id!r} is not one of {', '.join(sorted(self.types))}"
            raise IncidentRulesError(msg)
        return type_id

    def type_for(self, rules: Sequence[str]) -> str:
        """The type the first of ``rules`` that names one makes; ``other`` when none does."""
        for rule in rules:
            if rule in self._by_rule:
                return self._by_rule[rule]
        return DEFAULT_TYPE

    def skills(self, type_id: str) -> tuple[str, ...]:
        """The unit skills that suit ``type_id`` (empty: any unit)."""
        t = self.types.get(type_id)
        return t.skills if t is not None else ()

    def describe(self) -> dict[str, Any]:
        """The types and limits in force, minutes per step (for ``GET /api/v1/incidents/types``)."""
        out: dict[str, Any] = {}
        for tid, t in sorted(self.types.items()):
            steps = {
                level.label: {
                    s.value: (None if (ms := self.limit_ms(tid, level, s)) is None else ms / 60_000)
                    for s in ACTIVE_STATES
                }
                for level in Level
            }
            out[tid] = {
                "name": t.name,
                "name_zh": t.name_zh,
                "skills": list(t.skills),
                "limits": steps,
            }
        return out


def _parse(text: str, where: str) -> IncidentFile:
    try:
        data = yaml.safe_load(text) or {}
        return IncidentFile.model_validate(data)
    except (yaml.YAMLError, ValidationError) as exc:
        msg = f"incidents file {where}: {exc}"
        raise IncidentRulesError(msg) from exc
