"""Silences and inhibition: which alerts people are *not* told about right now, and why.

Alertmanager's semantics. A **silence** is a set of matchers and a time window (a maintenance crew
at a pumping station; a gauge known to be broken until Tuesday); every matcher must match. An
**inhibition rule** mutes *target* alerts while a firing *source* alert exists with the same values
of some fields, e.g. the default rule: an area that went dark (``area:<path>``, kind ``offline``)
mutes the offline alerts of the devices in it, so the duty officer gets one message, not 500.

Muting is about *notifications to people* only: a muted alert is still stored, audited, shown in
the API and published on MQTT (a screen decides what to grey out), and it still changes state.
Everything here but `SilenceStore` is pure.
"""

from __future__ import annotations

import enum
import json
import re
import time
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from typing import Any, Literal

import sqlalchemy as sa
from pydantic import BaseModel, ConfigDict, Field, field_validator
from sqlalchemy.engine import Engine

from alerts.errors import InvalidAlertRequestError, SilenceNotFoundError
from alerts.lifecycle import Alert

AlertField = Literal["rule", "source", "kind", "level", "area", "device", "metric"]
Op = Literal["=", "!=", "=~", "!~"]


class Matcher(BaseModel):
    """One condition on an alert field: equal, not equal, regex match, regex non-match.

    Regexes are anchored at both ends, as in Alertmanager: ``area =~ sh/huangpu(/.*)?`` matches the
    district and everything in it. A field the alert lacks (an area alert has no device) is "".
    """

    model_config = ConfigDict(extra="forbid", frozen=True)

    name: AlertField = Field(title="Alert field")
    op: Op = Field("=", title="Operator")
    value: str = Field(title="Value, or a regular expression for =~ and !~", max_length=500)

    @field_validator("value")
    @classmethod
    def _compiles(cls, value: str, info: Any) -> str:  # noqa: ANN401 - pydantic's ValidationInfo
        if info.data.get("op") in ("=~", "!~"):
            try:
                re.compile(value)
            except re.error as exc:
                msg = f"not a regular expression: {exc}"
                raise ValueError(msg) from exc
        return value

    def matches(self, alert: Alert) -> bool:
        """Whether ``alert`` satisfies this matcher."""
        actual = _field(alert, self.name)
        if self.op == "=":
            return actual == self.value
        if self.op == "!=":
            return actual != self.value
        found = re.fullmatch(self.value, actual) is not None
        return found if self.op == "=~" else not found


def _field(alert: Alert, name: str) -> str:
    if name == "level":
        return alert.level.label
    value = getattr(alert, name)
    return "" if value is None else str(value)


def matches_all(matchers: Iterable[Matcher], alert: Alert) -> bool:
    """Every matcher matches (an empty set matches everything)."""
    return all(m.matches(alert) for m in matchers)


class SilenceState(enum.StrEnum):
    """Where a silence is in its window."""

    PENDING = "pending"
    ACTIVE = "active"
    EXPIRED = "expired"


@dataclass(frozen=True, slots=True)
class Silence:
    """Matchers muting alerts from ``starts_ms`` until ``ends_ms`` (epoch ms UTC)."""

    id: int
    matchers: tuple[Matcher, ...]
    starts_ms: int
    ends_ms: int
    created_by: str
    comment: str

    def state(self, now_ms: int) -> SilenceState:
        """Pending before its window, active in it, expired after (Alertmanager's CurrentState)."""
        if now_ms < self.starts_ms:
            return SilenceState.PENDING
        return SilenceState.ACTIVE if now_ms < self.ends_ms else SilenceState.EXPIRED

    def mutes(self, alert: Alert, now_ms: int) -> bool:
        """Whether this silence mutes ``alert`` at ``now_ms``."""
        return self.state(now_ms) is SilenceState.ACTIVE and matches_all(self.matchers, alert)


class InhibitRule(BaseModel):
    """While a firing alert matches ``source``, alerts matching ``target`` with ``equal`` fields are muted.

    ``area_within`` also requires the target's area to lie inside the source's area path (an area
    alert on ``sh/xuhui/street-0`` covers devices in ``sh/xuhui/street-0`` and below).
    """

    model_config = ConfigDict(extra="forbid", frozen=True)

    source: tuple[Matcher, ...] = Field(title="Matchers of the muting alert")
    target: tuple[Matcher, ...] = Field(title="Matchers of the muted alerts")
    equal: tuple[AlertField, ...] = Field((), title="Fields that must be equal in both")
    area_within: bool = Field(False, title="The target's area lies within the source's area")

    def inhibits(self, source: Alert, target: Alert) -> bool:
        """Whether ``source`` mutes ``target`` under this rule."""
        if source.id == target.id or not source.active or not source.firing:
            return False
        if not (matches_all(self.source, source) and matches_all(self.target, target)):
            return False
        if any(_field(source, f) != _field(target, f) for f in self.equal):
            return False
        if self.area_within:
            return source.area is not None and within(target.area, source.area)
        return True


def within(area: str | None, prefix: str) -> bool:
    """Whether ``area`` is ``prefix`` or lies below it on the area path."""
    prefix = prefix.rstrip("/")
    return area is not None and (area == prefix or area.startswith(prefix + "/"))


AREA_DARK_MUTES_ITS_DEVICES = InhibitRule(
    source=(
        Matcher(name="kind", value="offline"),
        Matcher(name="source", op="=~", value="area:.*"),
    ),
    target=(
        Matcher(name="kind", value="offline"),
        Matcher(name="source", op="=~", value="device:.*"),
    ),
    area_within=True,
)
"""The default rule: one alert for a dark area instead of one per device in it (issue 4)."""


def inhibited(alerts: Sequence[Alert], rules: Sequence[InhibitRule]) -> set[int]:
    """Ids of the alerts some firing alert inhibits: `InhibitRule.inhibits` over every pair, in O(n).

    A storm holds thousands of active alerts, and the notifications judge them every second: per
    rule, the sources are indexed once by their ``equal`` fields (and area, for ``area_within``),
    then each target is one lookup per prefix of its area path, not a scan of every source.
    """
    muted: set[int] = set()
    for rule in rules:
        index: dict[tuple[str, ...], dict[str, set[int]]] = {}
        for src in alerts:
            if src.active and src.firing and matches_all(rule.source, src):
                if rule.area_within and src.area is None:
                    continue
                key = tuple(_field(src, f) for f in rule.equal)
                area = (src.area or "").rstrip("/") if rule.area_within else ""
                index.setdefault(key, {}).setdefault(area, set()).add(src.id)
        if not index:
            continue
        for target in alerts:
            if target.id in muted or not matches_all(rule.target, target):
                continue
            by_area = index.get(tuple(_field(target, f) for f in rule.equal))
            if by_area is None:
                continue
            if not rule.area_within:
                candidates = [by_area[""]]
            elif target.area is None:
                continue
            else:
                parts = target.area.split("/")
                prefixes = ("/".join(parts[: k + 1]) for k in range(len(parts)))
                candidates = [by_area[p] for p in prefixes if p in by_area]
            if any(ids - {target.id} for ids in candidates):
                muted.add(target.id)
    return muted


class MuteReason(enum.StrEnum):
    """Why people are not told about an alert."""

    SILENCED = "silenced"
    INHIBITED = "inhibited"


def mute_reason(
    alert: Alert,
    now_ms: int,
    silences: Sequence[Silence],
    rules: Sequence[InhibitRule],
    active: Sequence[Alert],
) -> MuteReason | None:
    """Why ``alert`` is muted at ``now_ms`` (silences first), or None when people should hear of it.

    ``active`` holds the alerts that may inhibit (the active ones; only firing ones do).
    """
    if any(s.mutes(alert, now_ms) for s in silences):
        return MuteReason.SILENCED
    if any(rule.inhibits(src, alert) for rule in rules for src in active):
        return MuteReason.INHIBITED
    return None


_metadata = sa.MetaData()

silences_table = sa.Table(
    "alert_silences",
    _metadata,
    sa.Column("id", sa.Integer, primary_key=True, autoincrement=True),
    sa.Column("matchers", sa.Text, nullable=False),  # JSON list of matchers
    sa.Column("starts_ms", sa.BigInteger, nullable=False),
    sa.Column("ends_ms", sa.BigInteger, nullable=False, index=True),
    sa.Column("created_by", sa.String(64), nullable=False),
    sa.Column("comment", sa.Text, nullable=False),
)


class SilenceStore:
    """Silences in SQL (the registry's database). Expiring one ends it now; none is ever deleted."""

    def __init__(self, url: str) -> None:
        """Open (and create if needed) the silence table."""
        self.engine: Engine = sa.create_engine(url)
        _metadata.create_all(self.engine)

    def dispose(self) -> None:
        """Close the database connections."""
        self.engine.dispose()

    def create(
        self,
        matchers: Sequence[Matcher],
        *,
        starts_ms: int,
        ends_ms: int,
        created_by: str,
        comment: str,
    ) -> Silence:
        """Keep a new silence.

        Raises:
            InvalidAlertRequestError: no matchers (it would mute everything), or an empty window.
        """
        if not matchers:
            msg = "a silence needs at least one matcher (none would mute every alert)"
            raise InvalidAlertRequestError(msg)
        if ends_ms <= starts_ms:
            msg = "a silence must end after it starts"
            raise InvalidAlertRequestError(msg)
        body = json.dumps([m.model_dump() for m in matchers])
        with self.engine.begin() as conn:
            new_id = conn.execute(
                sa.insert(silences_table)
                .values(
                    matchers=body,
                    starts_ms=starts_ms,
                    ends_ms=ends_ms,
                    created_by=created_by,
                    comment=comment,
                )
                .returning(silences_table.c.id)
            ).scalar_one()
        return Silence(int(new_id), tuple(matchers), starts_ms, ends_ms, created_by, comment)

    def get(self, silence_id: int) -> Silence:
        """The silence ``silence_id``; raises SilenceNotFoundError."""
        with self.engine.connect() as conn:
            row = conn.execute(
                sa.select(silences_table).where(silences_table.c.id == silence_id)
            ).first()
        if row is None:
            raise SilenceNotFoundError(silence_id)
        return _silence(row)

    def expire(self, silence_id: int, now_ms: int | None = None) -> Silence:
        """End a silence now (a pending one never starts); an expired one stays as it was."""
        now = now_ms if now_ms is not None else int(time.time() * 1000)
        silence = self.get(silence_id)
        if silence.state(now) is SilenceState.EXPIRED:
            return silence
        # A pending silence gets the empty window [now, now): it never mutes anything.
        with self.engine.begin() as conn:
            conn.execute(
                sa.update(silences_table)
                .where(silences_table.c.id == silence_id)
                .values(ends_ms=now, starts_ms=min(silence.starts_ms, now))
            )
        return self.get(silence_id)

    def silences(self, *, current_at: int | None = None) -> list[Silence]:
        """Every silence, newest first; with ``current_at``, only those not expired then."""
        query = sa.select(silences_table).order_by(silences_table.c.id.desc())
        if current_at is not None:
            query = query.where(silences_table.c.ends_ms > current_at)
        with self.engine.connect() as conn:
            return [_silence(r) for r in conn.execute(query)]


def _silence(row: sa.Row[Any]) -> Silence:
    matchers = tuple(Matcher.model_validate(m) for m in json.loads(row.matchers))
    return Silence(row.id, matchers, row.starts_ms, row.ends_ms, row.created_by, row.comment)
