"""Notifications to people: grouped, silenced, inhibited, repeated, and escalated when nobody acks.

Machines get every change as it happens (MQTT, change webhooks). People get Alertmanager's
treatment, because a duty officer paged 500 times in a storm stops reading pages:

* Alerts that need someone (state ``raised``, at or above ``min_level``, not muted by a silence or
  an inhibition rule) are **grouped** by ``group_by`` (area and kind by default). A new group is
  told about ``group_wait`` after its first member was raised (so the rest of a burst joins it); a group that was told is told
  again when it holds an alert (or a level) it did not report, at most every ``group_interval``;
  and while alerts stay unacknowledged it is reminded every ``repeat_interval``. Acknowledging an
  alert takes it out of its group; an empty group is forgotten, and the next alert starts a new one.
  (Alertmanager counts group_interval from the group's last flush; here it counts from the last
  notification, which sends a new alert of a quiet group at the next tick: same bound on the rate.)
* An alert nobody acknowledged within ``escalate_after`` is **escalated** once: an audit line by the
  hub (``escalate_unacked``, so the wall screen and MQTT show it) and a message to the escalation
  receivers (the commanders' channel). It escalates again only if it is raised anew.

`needs_notify` and `escalation_due` are pure and take the clock; `NotificationRouter.tick` applies
them to the live alerts, and the hub calls it every ``tick_s``.
"""

from __future__ import annotations

import asyncio
import enum
import json
import logging
import threading
import time
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass, replace
from typing import Literal, Protocol

from pydantic import BaseModel, ConfigDict, Field

from alerts.events import Level
from alerts.lifecycle import Alert, AlertChange, State
from alerts.silences import (
    AREA_DARK_MUTES_ITS_DEVICES,
    AlertField,
    InhibitRule,
    MuteReason,
    Silence,
    SilenceState,
    inhibited,
    matches_all,
)
from alerts.webhook import DeliveryLog, Outgoing, WebhookNotifier, WebhookSettings
from alerts.wire import alert_body, iso

logger = logging.getLogger(__name__)

LevelName = Literal["info", "blue", "yellow", "orange", "red"]


class GroupingSettings(BaseModel):
    """How people are told (settings section ``notify.people``); Alertmanager's defaults."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    receivers: list[WebhookSettings] = Field(
        default_factory=list,
        title="Where grouped notifications go",
        description="e.g. the webhook of an IM or SMS gateway for the duty officers",
    )
    escalation_receivers: list[WebhookSettings] = Field(
        default_factory=list,
        title="Where escalations go",
        description="The next role (commanders) when an alert is not acknowledged in time",
    )
    group_by: tuple[AlertField, ...] = Field(("area", "kind"), title="Alert fields forming a group")
    group_wait_s: float = Field(30, ge=0, title="Wait before telling about a new group")
    group_interval_s: float = Field(
        300, gt=0, title="Least time between two notifications of a group"
    )
    repeat_interval_s: float = Field(4 * 3600, gt=0, title="Remind of unacknowledged alerts after")
    escalate_after_s: float | None = Field(
        900, gt=0, title="Escalate an alert nobody acknowledged after", description="None: never"
    )
    min_level: LevelName = Field("blue", title="Least level people are told about")
    inhibit_rules: list[InhibitRule] = Field(
        default_factory=lambda: [AREA_DARK_MUTES_ITS_DEVICES],
        title="Inhibition rules",
        description="Default: an area gone dark mutes its devices' offline alerts",
    )
    tick_s: float = Field(1.0, gt=0, le=60, title="How often groups and escalations are checked")


class NotifyReason(enum.StrEnum):
    """Why a group is (or is not) notified now (Alertmanager's dedup stage reasons)."""

    FIRST_NOTIFICATION = "first_notification"
    NEW_ALERTS_IN_GROUP = "new_alerts_in_group"
    REPEAT_INTERVAL_ELAPSED = "repeat_interval_elapsed"
    WAITING = "waiting"  # something to tell, but group_wait or group_interval has not passed
    NOTHING_NEW = "nothing_new"


SEND = (
    NotifyReason.FIRST_NOTIFICATION,
    NotifyReason.NEW_ALERTS_IN_GROUP,
    NotifyReason.REPEAT_INTERVAL_ELAPSED,
)

Member = tuple[int, Level]
"""An alert in a group, with its level: a level change is news, as a new alert is."""


@dataclass(frozen=True, slots=True)
class GroupEntry:
    """What a group has been told: when it appeared, when it was last notified, and of what."""

    created_ms: int
    notified_ms: int | None = None
    notified: frozenset[Member] = frozenset()


def needs_notify(
    entry: GroupEntry,
    pending: frozenset[Member],
    now_ms: int,
    *,
    wait_ms: int,
    interval_ms: int,
    repeat_ms: int,
) -> NotifyReason:
    """Whether a group with ``pending`` alerts is notified at ``now_ms``, and why."""
    if not pending:
        return NotifyReason.NOTHING_NEW
    if entry.notified_ms is None:
        if now_ms >= entry.created_ms + wait_ms:
            return NotifyReason.FIRST_NOTIFICATION
        return NotifyReason.WAITING
    since = now_ms - entry.notified_ms
    if not pending <= entry.notified:
        return NotifyReason.NEW_ALERTS_IN_GROUP if since >= interval_ms else NotifyReason.WAITING
    if since >= repeat_ms:
        return NotifyReason.REPEAT_INTERVAL_ELAPSED
    return NotifyReason.NOTHING_NEW


def needs_someone(alert: Alert, min_level: Level) -> bool:
    """Whether people should be told of ``alert`` (before muting): raised, and severe enough."""
    return alert.state is State.RAISED and alert.level >= min_level


def escalation_due(alert: Alert, now_ms: int, after_ms: int, min_level: Level) -> bool:
    """Whether ``alert`` has waited ``after_ms`` for an acknowledgement and was not escalated yet."""
    return (
        needs_someone(alert, min_level)
        and alert.escalated_ms is None
        and now_ms - alert.state_ms >= after_ms
    )


GroupKey = tuple[str, ...]


def group_key(alert: Alert, group_by: Sequence[str]) -> GroupKey:
    """The values of ``group_by`` fields of ``alert`` (levels by name, missing fields as "")."""
    body = alert_body(alert)
    return tuple("" if body.get(f) is None else str(body[f]) for f in group_by)


@dataclass(frozen=True, slots=True)
class GroupNotification:
    """One message to people about one group."""

    group: dict[str, str]
    reason: NotifyReason
    at_ms: int
    alerts: tuple[Alert, ...]

    def outgoing(self) -> Outgoing:
        """The message as a webhook POST, most severe alerts first."""
        ordered = sorted(self.alerts, key=lambda a: (-a.level, a.first_ms, a.id))
        body = {
            "group": self.group,
            "reason": self.reason.value,
            "at": iso(self.at_ms),
            "count": len(ordered),
            "alerts": [alert_body(a) for a in ordered],
        }
        key = "group:" + "|".join(f"{k}={v}" for k, v in self.group.items()) + f":{self.at_ms}"
        payload = json.dumps(body, separators=(",", ":"), ensure_ascii=False).encode()
        return Outgoing(key=key, body=payload, refs=tuple((a.id, a.seq) for a in ordered))


class Escalations(Protocol):
    """Records an escalation (``alerts.store.AlertStore``)."""

    def escalate_unacked(self, alert_id: int, *, at_ms: int, note: str) -> AlertChange | None:
        """Record it once; None if the alert no longer needs it."""
        ...


class Sender(Protocol):
    """Takes a message for delivery without blocking (`alerts.webhook.WebhookNotifier`)."""

    def send(self, message: Outgoing) -> None:
        """Queue ``message``."""
        ...


def _now_ms() -> int:
    return int(time.time() * 1000)


class NotificationRouter:
    """Keeps the active alerts (from the change feed), and on each tick notifies and escalates."""

    def __init__(
        self,
        settings: GroupingSettings,
        *,
        escalations: Escalations,
        silences: Callable[[int], Sequence[Silence]],
        receivers: Sequence[Sender] = (),
        escalation_receivers: Sequence[Sender] = (),
        clock: Callable[[], int] = _now_ms,
    ) -> None:
        """Route with ``settings``; ``silences(now_ms)`` gives the silences not yet expired."""
        self.settings = settings
        self._escalations = escalations
        self._silences = silences
        self._receivers = list(receivers)
        self._escalation_receivers = list(escalation_receivers)
        self._clock = clock
        self._min_level = Level.parse(settings.min_level)
        self._alerts: dict[int, Alert] = {}
        self._groups: dict[GroupKey, GroupEntry] = {}
        self._lock = threading.Lock()
        self.sent: list[GroupNotification] = []  # the newest few, for inspection
        self.escalated = 0

    @classmethod
    def with_webhooks(
        cls,
        settings: GroupingSettings,
        *,
        escalations: Escalations,
        silences: Callable[[int], Sequence[Silence]],
        log: DeliveryLog | None,
    ) -> tuple[NotificationRouter, list[WebhookNotifier]]:
        """A router whose receivers are the settings' webhooks; returns them too (to start/stop)."""
        people = [
            WebhookNotifier(w.url, log=log, headers=w.headers, channel="people")
            for w in settings.receivers
        ]
        up = [
            WebhookNotifier(w.url, log=log, headers=w.headers, channel="escalation")
            for w in settings.escalation_receivers
        ]
        router = cls(
            settings,
            escalations=escalations,
            silences=silences,
            receivers=people,
            escalation_receivers=up,
        )
        return router, [*people, *up]

    def load(self, alerts: Iterable[Alert]) -> None:
        """Start from the active alerts in the store (at hub start)."""
        with self._lock:
            for alert in alerts:
                if alert.active:
                    self._alerts[alert.id] = alert

    def observe(self, change: AlertChange) -> None:
        """Feed subscriber: keep the newest view of every active alert."""
        alert = change.alert
        with self._lock:
            known = self._alerts.get(alert.id)
            if known is not None and known.seq > alert.seq:
                return  # an older change delivered late (another thread's): keep the newer
            if alert.active:
                self._alerts[alert.id] = alert
            else:
                self._alerts.pop(alert.id, None)

    def muted(self, now_ms: int | None = None) -> dict[int, MuteReason]:
        """The alerts people are not told about now, and why."""
        now = self._clock() if now_ms is None else now_ms
        with self._lock:
            alerts = list(self._alerts.values())
        return self._muted(alerts, now, self._silences(now))

    def _muted(
        self, alerts: list[Alert], now: int, silences: Sequence[Silence]
    ) -> dict[int, MuteReason]:
        current = [s for s in silences if s.state(now) is SilenceState.ACTIVE]
        reasons: dict[int, MuteReason] = {}
        if current:
            for a in alerts:
                if any(matches_all(s.matchers, a) for s in current):
                    reasons[a.id] = MuteReason.SILENCED
        for alert_id in inhibited(alerts, self.settings.inhibit_rules):
            reasons.setdefault(alert_id, MuteReason.INHIBITED)
        return reasons

    def tick(self, now_ms: int | None = None) -> list[GroupNotification]:
        """Escalate what waited too long, then notify the groups that are due; what was sent."""
        now = self._clock() if now_ms is None else now_ms
        with self._lock:
            alerts = list(self._alerts.values())
        muted = self._muted(alerts, now, self._silences(now))
        audible = [a for a in alerts if a.id not in muted]
        self._escalate(audible, now)
        with self._lock:  # escalations changed some alerts (seen through observe)
            audible = [self._alerts.get(a.id, a) for a in audible]
            return self._notify_groups(audible, now)

    def _escalate(self, alerts: list[Alert], now: int) -> None:
        after_s = self.settings.escalate_after_s
        if after_s is None:
            return
        after_ms = int(after_s * 1000)
        for alert in alerts:
            if not escalation_due(alert, now, after_ms, self._min_level):
                continue
            note = f"not acknowledged within {after_s / 60:g} min"
            try:
                change = self._escalations.escalate_unacked(alert.id, at_ms=now, note=note)
            except Exception:  # one alert's problem must not stop the others' escalation
                logger.exception("escalating alert %s failed", alert.id)
                continue
            if change is None:
                continue
            self.escalated += 1
            self.observe(change)
            for receiver in self._escalation_receivers:
                receiver.send(Outgoing.of(change))

    def _notify_groups(self, alerts: list[Alert], now: int) -> list[GroupNotification]:
        s = self.settings
        pending: dict[GroupKey, list[Alert]] = {}
        for alert in alerts:
            if needs_someone(alert, self._min_level):
                pending.setdefault(group_key(alert, s.group_by), []).append(alert)
        for key in [k for k in self._groups if k not in pending]:
            del self._groups[key]  # everyone in it was acknowledged (or closed, or muted)
        sent: list[GroupNotification] = []
        for key, members in pending.items():
            # A group is as old as its oldest member's wait: a tick's lateness, a restart or a
            # silence that ended do not restart group_wait.
            started = min(now, *(a.state_ms for a in members))
            entry = self._groups.setdefault(key, GroupEntry(created_ms=started))
            current = frozenset((a.id, a.level) for a in members)
            reason = needs_notify(
                entry,
                current,
                now,
                wait_ms=int(s.group_wait_s * 1000),
                interval_ms=int(s.group_interval_s * 1000),
                repeat_ms=int(s.repeat_interval_s * 1000),
            )
            if reason not in SEND:
                continue
            note = GroupNotification(
                dict(zip(s.group_by, key, strict=True)), reason, now, tuple(members)
            )
            message = note.outgoing()
            for receiver in self._receivers:
                receiver.send(message)
            self._groups[key] = replace(entry, notified_ms=now, notified=current)
            sent.append(note)
        self.sent = [*self.sent, *sent][-100:]
        return sent

    async def run(self) -> None:
        """Tick every ``tick_s`` until cancelled (the hub runs this in its lifespan)."""
        while True:
            try:
                await asyncio.to_thread(self.tick)
            except Exception:
                logger.exception("alert notification tick failed")
            await asyncio.sleep(self.settings.tick_s)
