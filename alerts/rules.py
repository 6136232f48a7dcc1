"""The rule model: what a rule says, validated when it loads (errors name the field), read from YAML.

Rules are plain data (pydantic, frozen); the engine (`alerts.engine`) compiles them into arrays. Kinds:

- ``threshold``: a metric against ordered levels ``blue < yellow < orange < red``, each with its bound
  and direction (``above``/``below``), overridable per device or area prefix;
- ``rate``: how far a metric rose (or fell) within a window, e.g. water level +0.3 m in 1 h;
- ``accumulation``: a metric summed over a window (per level, optionally its own window), e.g. rainfall;
- ``offline``: no data for k x the profile's report interval, with reminders and area aggregation;
- ``composite``: every one of several rules active somewhere in the same area;
- ``cluster``: N devices of one rule starting to fire within R metres within T seconds.

Level kinds share ``for_s`` (breached continuously that long), ``repeat`` (that many readings in a row),
``deadband``/``clear_below``/``clear_above`` (hysteresis) and ``clear_after_s`` (normal that long first).

Reading files and checking a whole rule set (unique ids, references) is `alerts.ruleset`.
"""

from __future__ import annotations

import hashlib
import math
import re
from collections.abc import Mapping
from typing import Annotated, Any, Literal, TypeAlias

from pydantic import BaseModel, ConfigDict, Field, field_validator, model_validator

from alerts.events import Level

LevelName = Literal["blue", "yellow", "orange", "red"]
Direction = Literal["above", "below"]

_ID = re.compile(r"^[A-Za-z0-9][A-Za-z0-9_.:-]{0,63}$")


class RuleError(ValueError):
    """A rule file or rule set that does not validate; the message names the file, rule and field."""


class _Model(BaseModel):
    # No NaN or infinity anywhere (JSON bodies may carry them: Python's json reads NaN, Infinity and
    # 1e999): an infinite window or bound means nothing, and one crashed the bucket arithmetic.
    model_config = ConfigDict(extra="forbid", frozen=True, allow_inf_nan=False)


class Bound(_Model):
    """One level's bound: ``{above: x}`` or ``{below: x}`` (a bare number takes the rule's direction)."""

    above: float | None = Field(None, title="Breached at or above this value")
    below: float | None = Field(None, title="Breached at or below this value")
    window_s: float | None = Field(
        None,
        gt=0,
        title="Window of this level (accumulation only)",
        description="e.g. rainstorm signals: yellow 50 mm in 6 h, orange 50 mm in 3 h",
    )

    @model_validator(mode="after")
    def _one_direction(self) -> Bound:
        if (self.above is None) == (self.below is None):
            msg = "give exactly one of 'above' or 'below'"
            raise ValueError(msg)
        value = self.above if self.above is not None else self.below
        if value is not None and not math.isfinite(value):
            msg = "the bound must be a finite number"
            raise ValueError(msg)
        return self

    @property
    def direction(self) -> Direction:
        """``above`` or ``below``."""
        return "above" if self.above is not None else "below"

    @property
    def value(self) -> float:
        """The bound itself."""
        if self.above is not None:
            return self.above
        if self.below is not None:
            return self.below
        msg = "a bound without a value"  # unreachable: `_one_direction` runs at validation
        raise AssertionError(msg)


Levels: TypeAlias = dict[LevelName, Bound]


def _normalise_levels(levels: Any, direction: str) -> Any:  # noqa: ANN401 - raw YAML
    """``{yellow: 4.8}`` -> ``{yellow: {above: 4.8}}``: a bare number takes the rule's direction."""
    if not isinstance(levels, Mapping):
        return levels
    return {
        k: ({direction: v} if isinstance(v, int | float) and not isinstance(v, bool) else v)
        for k, v in levels.items()
    }


def bound_of(levels: Levels, level: Level) -> Bound | None:
    """The bound a level has in ``levels``, if any."""
    for name, bound in levels.items():
        if name == level.label:
            return bound
    return None


def ordered_levels(levels: Levels) -> list[tuple[Level, Bound]]:
    """The levels of a rule, lowest first."""
    return sorted(((Level.parse(k), b) for k, b in levels.items()), key=lambda kb: kb[0])


def _check_monotone(levels: Levels, where: str) -> None:
    """Higher levels must be further out: above-bounds rise with the level, below-bounds fall.

    Levels with their own windows (accumulation) are compared only with levels of the same window:
    50 mm in 3 h is a higher level than 50 mm in 6 h.
    """
    last: dict[tuple[str, float | None], tuple[Level, float]] = {}
    for level, bound in ordered_levels(levels):
        key = (bound.direction, bound.window_s)
        prev = last.get(key)
        if prev is not None:
            worse = bound.value > prev[1] if bound.direction == "above" else bound.value < prev[1]
            if not worse:
                side = "above" if bound.direction == "above" else "below"
                msg = (
                    f"{where}levels.{level.label}: bound {bound.value:g} must be {side} "
                    f"{prev[0].label}'s {prev[1]:g} (a higher level is further out)"
                )
                raise ValueError(msg)
        last[key] = (level, bound.value)


def _check_clear_bounds(
    levels: Levels, clear_below: float | None, clear_above: float | None, where: str
) -> None:
    """A clear bound lies on the normal side of the lowest level in its direction."""
    ordered = ordered_levels(levels)
    for name, value, direction in (
        ("clear_below", clear_below, "above"),
        ("clear_above", clear_above, "below"),
    ):
        if value is None:
            continue
        lowest = next((b for _, b in ordered if b.direction == direction), None)
        if lowest is None:
            msg = f"{where}{name}: the rule has no level breached {direction} a bound to clear"
            raise ValueError(msg)
        inside = value <= lowest.value if direction == "above" else value >= lowest.value
        if not inside:
            side = "at or below" if direction == "above" else "at or above"
            msg = f"{where}{name}: {value:g} must be {side} the lowest bound {lowest.value:g}"
            raise ValueError(msg)


class Override(_Model):
    """Other bounds for one device, or for every device under an area prefix (a gauge's own levels).

    The most specific override wins: a device's own, else the longest matching area prefix. Its
    levels replace the rule's levels of the same name; levels it does not name keep the rule's.
    """

    device: str | None = Field(None, title="Device id")
    area: str | None = Field(None, title="Area prefix", description="e.g. demo/riverside")
    levels: Levels = Field(default_factory=dict, title="Bounds by level")
    clear_below: float | None = Field(None, title="Clear only at or below this value")
    clear_above: float | None = Field(None, title="Clear only at or above this value")
    disabled: bool = Field(False, title="The rule does not apply here (e.g. under maintenance)")

    @field_validator("area")
    @classmethod
    def _strip(cls, v: str | None) -> str | None:
        return v.rstrip("/") if v is not None else None

    @model_validator(mode="after")
    def _one_target(self) -> Override:
        if (self.device is None) == (self.area is None):
            msg = "give exactly one of 'device' or 'area'"
            raise ValueError(msg)
        return self

    @property
    def target(self) -> str:
        """``device <id>`` or ``area <prefix>``, for messages."""
        return f"device {self.device}" if self.device is not None else f"area {self.area}"


class _RuleBase(_Model):
    id: str = Field(title="Rule id", description="Unique; names the alert with the source")
    name: str = Field("", title="Human name")
    description: str = Field("", title="Why the rule exists, for the duty officer")
    enabled: bool = Field(True, title="Whether the engine evaluates the rule")

    @field_validator("id")
    @classmethod
    def _id_ok(cls, v: str) -> str:
        if not _ID.match(v):
            msg = f"rule id {v!r} must be 1-64 characters of letters, digits, '_', '.', ':' or '-'"
            raise ValueError(msg)
        return v

    def fingerprint(self) -> str:
        """A digest of the whole definition: equal digests mean the rule did not change."""
        return hashlib.sha256(self.model_dump_json().encode()).hexdigest()[:16]


class _ScopedRule(_RuleBase):
    device_type: tuple[str, ...] = Field(
        (),
        title="Device types",
        description="Profile types the rule watches, e.g. water_level; empty: every type",
    )
    areas: tuple[str, ...] = Field(
        (), title="Area prefixes", description="Only devices under these; empty: everywhere"
    )

    @field_validator("device_type", "areas", mode="before")
    @classmethod
    def _one_or_many(cls, v: Any) -> Any:  # noqa: ANN401 - raw YAML
        return (v,) if isinstance(v, str) else v

    @field_validator("areas")
    @classmethod
    def _strip(cls, v: tuple[str, ...]) -> tuple[str, ...]:
        return tuple(a.rstrip("/") for a in v)


class _LevelRule(_ScopedRule):
    """Rules whose value is compared with per-level bounds (threshold, rate, accumulation)."""

    metric: str = Field(title="Metric", description="Canonical metric name, e.g. water_level")
    levels: Levels = Field(min_length=1, title="Bounds by level (blue < yellow < orange < red)")
    for_s: float = Field(0, ge=0, title="Breached continuously this long before firing (s)")
    repeat: int = Field(1, ge=1, title="Breached by this many readings in a row before firing")
    deadband: float = Field(
        0, ge=0, title="Hysteresis", description="A level is kept until the value is this far back"
    )
    clear_below: float | None = Field(None, title="Clear only at or below this value")
    clear_above: float | None = Field(None, title="Clear only at or above this value")
    clear_after_s: float = Field(0, ge=0, title="Clear only after this long back to normal (s)")
    overrides: tuple[Override, ...] = Field((), title="Per device or area bounds")
    skip_out_of_range: bool = Field(
        False, title="Ignore readings flagged out of the profile's valid range"
    )

    @model_validator(mode="before")
    @classmethod
    def _bare_numbers(cls, data: Any) -> Any:  # noqa: ANN401 - raw YAML
        if not isinstance(data, dict):
            return data
        direction = data.get("direction", "above")
        if direction not in ("above", "below"):
            direction = "above"  # rate's rise/fall: the level is a change, breached above it
        data = dict(data)
        if "levels" in data:
            data["levels"] = _normalise_levels(data["levels"], direction)
        if isinstance(data.get("overrides"), list):
            data["overrides"] = [
                {**o, "levels": _normalise_levels(o["levels"], direction)}
                if isinstance(o, Mapping) and "levels" in o
                else o
                for o in data["overrides"]
            ]
        return data

    @model_validator(mode="after")
    def _consistent(self) -> _LevelRule:
        _check_monotone(self.levels, "")
        _check_clear_bounds(self.levels, self.clear_below, self.clear_above, "")
        for i, o in enumerate(self.overrides):
            where = f"overrides[{i}] ({o.target}): "
            for k, b in o.levels.items():
                mine = self.levels.get(k)
                if mine is not None and mine.direction != b.direction:
                    msg = f"{where}levels.{k}: the rule's {k} is breached {mine.direction} its bound; an override changes bounds, not directions"
                    raise ValueError(msg)
                if b.window_s is not None:
                    msg = f"{where}levels.{k}.window_s: an override changes bounds, not windows"
                    raise ValueError(msg)
            merged = self.merged_levels(o)
            _check_monotone(merged, where)
            _check_clear_bounds(
                merged,
                o.clear_below if o.clear_below is not None else self.clear_below,
                o.clear_above if o.clear_above is not None else self.clear_above,
                where,
            )
        return self

    def merged_levels(self, override: Override | None) -> Levels:
        """The rule's levels with an override's replacing those it names."""
        if override is None:
            return dict(self.levels)
        return {**self.levels, **override.levels}


class ThresholdRule(_LevelRule):
    """A metric against ordered level bounds, e.g. river water level above its warning levels."""

    kind: Literal["threshold"]
    direction: Direction = Field(
        "above", title="Direction of bare-number levels", description="above or below"
    )

    @model_validator(mode="after")
    def _no_windows(self) -> ThresholdRule:
        _forbid_windows(self.levels, "")
        return self


class RateRule(_LevelRule):
    """How far a metric moved within a window: the newest value against the lowest (or highest) in it."""

    kind: Literal["rate"]
    direction: Literal["rise", "fall"] = Field("rise", title="Watch rises or falls")
    window_s: float = Field(gt=0, title="Window (s)", description="e.g. 3600 for +0.3 m in 1 h")
    max_samples: int = Field(
        64, ge=2, le=1024, title="Readings kept per device for the window (the newest win)"
    )

    @model_validator(mode="after")
    def _changes_above(self) -> RateRule:
        _only_above(self.levels, "a change within the window")
        _forbid_windows(self.levels, "")
        for i, o in enumerate(self.overrides):
            _only_above(o.levels, "a change within the window", f"overrides[{i}].")
        return self


class AccumulationRule(_LevelRule):
    """A metric summed over a window, e.g. rainfall in 1 h, 3 h or 24 h; each level may have its own."""

    kind: Literal["accumulation"]
    window_s: float = Field(gt=0, title="Default window of the levels (s)")
    resolution_s: float = Field(
        300,
        gt=0,
        title="Bucket width (s)",
        description="Sums are kept in buckets this wide: a window covers its last W/resolution buckets",
    )

    @model_validator(mode="after")
    def _windows_fit(self) -> AccumulationRule:
        _only_above(self.levels, "a total over the window")
        for i, o in enumerate(self.overrides):
            _only_above(o.levels, "a total over the window", f"overrides[{i}].")
        windows = {"window_s": self.window_s}
        windows.update(
            {f"levels.{k}.window_s": b.window_s for k, b in self.levels.items() if b.window_s}
        )
        for name, w in windows.items():
            buckets = w / self.resolution_s
            if abs(buckets - round(buckets)) > 1e-9 or round(buckets) < 1:
                msg = f"{name}: {w:g} s is not a whole number of resolution_s ({self.resolution_s:g} s)"
                raise ValueError(msg)
        if max(windows.values()) / self.resolution_s > 4096:
            msg = (
                "resolution_s: too fine for the longest window (more than 4096 buckets per device)"
            )
            raise ValueError(msg)
        return self

    def level_window_s(self, bound: Bound) -> float:
        """The window a level sums over."""
        return bound.window_s or self.window_s


def _only_above(levels: Levels, what: str, where: str = "") -> None:
    for k, b in levels.items():
        if b.direction != "above" or b.value <= 0:
            msg = f"{where}levels.{k}: the level is {what}: give a positive number or {{above: x}}"
            raise ValueError(msg)


def _forbid_windows(levels: Levels, where: str) -> None:
    for k, b in levels.items():
        if b.window_s is not None:
            msg = f"{where}levels.{k}.window_s: only accumulation levels have their own window"
            raise ValueError(msg)


class AreaAggregation(_Model):
    """One ``area:<path>`` event instead of many device events when much of an area goes dark together.

    An area (the device's path cut to ``depth`` segments) is dark while at least ``min_devices`` of the
    rule's devices there, and at least ``min_fraction`` of them, have missed ``suspect_intervals``
    reports, and one of them is offline by the rule. Devices of a dark area raise no events of their
    own; those already alerted keep their alert.
    """

    depth: int = Field(3, ge=1, title="Area path segments", description="3: city/district/street")
    min_devices: int = Field(3, ge=1, title="At least this many devices down")
    min_fraction: float = Field(0.5, ge=0, le=1, title="And at least this share of the area's")
    suspect_intervals: float = Field(
        1.5,
        ge=1,
        title="Down once silent this many report intervals",
        description="Lower than the rule's own limit, so a street going dark together is seen as "
        "one before its devices cross the limit one by one",
    )


class OfflineRule(_ScopedRule):
    """No data from a device for ``after_intervals`` x its profile's report interval (or ``after_s``)."""

    kind: Literal["offline"]
    after_intervals: float = Field(
        3, ge=1, title="Silent this many report intervals", description="Debounces short gaps"
    )
    after_s: float | None = Field(None, gt=0, title="Or silent this long (s), for every profile")
    level: LevelName = Field("yellow", title="Level of the offline condition")
    remind_s: float | None = Field(None, gt=0, title="Remind every this long while offline (s)")
    area: AreaAggregation | None = Field(None, title="One event per dark area")

    @model_validator(mode="after")
    def _suspect_first(self) -> OfflineRule:
        if (
            self.area is not None
            and self.after_s is None
            and self.area.suspect_intervals > self.after_intervals
        ):
            msg = "area.suspect_intervals: must not exceed after_intervals"
            raise ValueError(msg)
        return self


class CompositeRule(_RuleBase):
    """Every rule in ``all_of`` active (at ``min_level`` or above) on some device of the same area."""

    kind: Literal["composite"]
    all_of: tuple[str, ...] = Field(min_length=2, title="Rule ids that must all be active")
    area_depth: int = Field(2, ge=1, title="Area path segments", description="2: city/district")
    min_level: LevelName = Field("blue", title="Count member conditions at this level or above")
    level: LevelName = Field("orange", title="Level of the composite condition")


class ClusterRule(_RuleBase):
    """At least ``min_devices`` conditions of rule ``rule`` starting within ``radius_m`` and ``window_s``."""

    kind: Literal["cluster"]
    rule: str = Field(title="The rule whose conditions cluster, e.g. manhole-cover-open")
    min_devices: int = Field(3, ge=2, title="Devices in one cluster")
    radius_m: float = Field(gt=0, title="Of the first device (m)")
    window_s: float = Field(gt=0, title="Started within this long of each other (s)")
    level: LevelName = Field("orange", title="Level of the cluster condition")


Rule = Annotated[
    ThresholdRule | RateRule | AccumulationRule | OfflineRule | CompositeRule | ClusterRule,
    Field(discriminator="kind"),
]
LevelRule: TypeAlias = ThresholdRule | RateRule | AccumulationRule
DEVICE_KINDS = ("threshold", "rate", "accumulation", "offline")
