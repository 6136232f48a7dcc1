"""People's notifications on a timeline with an injected clock (no sleeps): grouping, repeats,
silences, inhibition and escalation when nobody acknowledges; then once against a real webhook."""

from __future__ import annotations

import json
import time
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path

import pytest

from alerts.events import ConditionEvent, Level
from alerts.grouping import (
    GroupEntry,
    GroupingSettings,
    NotificationRouter,
    NotifyReason,
    escalation_due,
    needs_notify,
)
from alerts.lifecycle import Action, Alert, State
from alerts.notify import AlertFeed
from alerts.silences import Matcher, Silence, SilenceStore
from alerts.store import AlertStore
from alerts.webhook import Outcome, Outgoing
from devices.access import Role
from tests.alerts.test_notify import Receiver

S = 1000  # ms
M = 60 * S
H = 60 * M

WAIT, INTERVAL, REPEAT = 30 * S, 5 * M, 4 * H


@pytest.mark.parametrize(
    ("entry", "pending", "now", "expected"),
    [
        (GroupEntry(0), frozenset(), 100 * S, NotifyReason.NOTHING_NEW),
        (GroupEntry(0), {(1, Level.RED)}, 29 * S, NotifyReason.WAITING),
        (GroupEntry(0), {(1, Level.RED)}, 30 * S, NotifyReason.FIRST_NOTIFICATION),
        (
            GroupEntry(0, 30 * S, frozenset({(1, Level.RED)})),
            {(1, Level.RED)},
            60 * S,
            NotifyReason.NOTHING_NEW,
        ),
        (
            GroupEntry(0, 30 * S, frozenset({(1, Level.RED)})),
            {(1, Level.RED), (2, Level.BLUE)},
            60 * S,
            NotifyReason.WAITING,  # new, but within group_interval of the last notification
        ),
        (
            GroupEntry(0, 30 * S, frozenset({(1, Level.RED)})),
            {(1, Level.RED), (2, Level.BLUE)},
            30 * S + INTERVAL,
            NotifyReason.NEW_ALERTS_IN_GROUP,
        ),
        (
            GroupEntry(0, 30 * S, frozenset({(1, Level.ORANGE)})),
            {(1, Level.RED)},
            30 * S + INTERVAL,
            NotifyReason.NEW_ALERTS_IN_GROUP,  # a level change is news
        ),
        (
            GroupEntry(0, 30 * S, frozenset({(1, Level.RED), (2, Level.RED)})),
            {(1, Level.RED)},
            30 * S + INTERVAL,
            NotifyReason.NOTHING_NEW,  # one was acknowledged: nothing to tell
        ),
        (
            GroupEntry(0, 30 * S, frozenset({(1, Level.RED)})),
            {(1, Level.RED)},
            30 * S + REPEAT,
            NotifyReason.REPEAT_INTERVAL_ELAPSED,
        ),
    ],
)
def test_needs_notify(
    entry: GroupEntry, pending: set[tuple[int, Level]], now: int, expected: NotifyReason
) -> None:
    reason = needs_notify(
        entry, frozenset(pending), now, wait_ms=WAIT, interval_ms=INTERVAL, repeat_ms=REPEAT
    )
    assert reason is expected


def _alert(state: State, level: Level, state_ms: int, escalated_ms: int | None = None) -> Alert:
    return Alert(
        id=1,
        rule="r",
        source="device:d",
        kind="threshold",
        level=level,
        state=state,
        firing=True,
        summary="s",
        first_ms=0,
        last_ms=0,
        updated_ms=0,
        seq=1,
        state_ms=state_ms,
        escalated_ms=escalated_ms,
    )


@pytest.mark.parametrize(
    ("alert", "now", "expected"),
    [
        (_alert(State.RAISED, Level.RED, 0), 15 * M - 1, False),
        (_alert(State.RAISED, Level.RED, 0), 15 * M, True),
        (_alert(State.RAISED, Level.RED, 10 * M), 20 * M, False),  # raised again at 10 min
        (_alert(State.RAISED, Level.RED, 0, escalated_ms=15 * M), 60 * M, False),  # only once
        (_alert(State.ACKNOWLEDGED, Level.RED, 0), 60 * M, False),
        (_alert(State.RAISED, Level.INFO, 0), 60 * M, False),  # below min_level
    ],
)
def test_escalation_due(alert: Alert, now: int, expected: bool) -> None:
    assert escalation_due(alert, now, 15 * M, Level.BLUE) is expected


@dataclass
class Inbox:
    """A receiver that keeps what it was sent (the router's `Sender`)."""

    messages: list[dict[str, object]] = field(default_factory=list)

    def send(self, message: Outgoing) -> None:
        self.messages.append(json.loads(message.body))

    def take(self) -> list[dict[str, object]]:
        taken, self.messages = self.messages, []
        return taken


class Timeline:
    """A store, a feed and a router on one injected clock; `at(t)` moves the clock and ticks."""

    def __init__(self, tmp_path: Path, **settings: object) -> None:
        self.now = 0
        self.silences: list[Silence] = []
        self.people, self.commanders = Inbox(), Inbox()
        feed = AlertFeed()
        self.store = AlertStore(
            f"sqlite:///{tmp_path / 'hub.db'}", on_change=feed.publish, clock=lambda: self.now
        )
        self.router = NotificationRouter(
            GroupingSettings.model_validate(settings),
            escalations=self.store,
            silences=lambda _now: self.silences,
            receivers=[self.people],
            escalation_receivers=[self.commanders],
            clock=lambda: self.now,
        )
        feed.subscribe(self.router.observe)

    def fire(
        self,
        device: str,
        level: Level = Level.ORANGE,
        *,
        area: str = "sh/huangpu/bund",
        kind: str = "threshold",
        source: str | None = None,
        firing: bool = True,
    ) -> int:
        change = self.store.apply(
            ConditionEvent(
                rule=f"{kind}-rule",
                source=source or f"device:{device}",
                kind=kind,
                level=level,
                firing=firing,
                at_ms=self.now,
                summary=f"{device} {level.label}",
                device=device if source is None else None,
                area=area,
            )
        )
        assert change is not None
        return change.alert.id

    def ack(self, alert_id: int) -> None:
        self.store.act(alert_id, Action.ACKNOWLEDGE, actor="li", role=Role.OFFICER)

    def at(self, t: int) -> list[tuple[str, list[int]]]:
        """Tick at ``t``: what the people were told, as (reason, alert ids)."""
        self.now = t
        return [(n.reason.value, sorted(a.id for a in n.alerts)) for n in self.router.tick()]


@pytest.fixture
def timeline(tmp_path: Path) -> Iterator[Timeline]:
    t = Timeline(tmp_path, escalate_after_s=None)
    yield t
    t.store.dispose()


def test_a_burst_becomes_one_notification_then_news_then_reminders(timeline: Timeline) -> None:
    t = timeline
    a = t.fire("wl-00001")
    assert t.at(10 * S) == []  # group_wait: the rest of the burst may come
    b = t.fire("wl-00002", Level.RED)
    other = t.fire("wl-00003", area="sh/xuhui/x")  # another area: another group
    assert t.at(29 * S) == []
    assert t.at(30 * S) == [("first_notification", [a, b])]
    assert t.at(39 * S) == []
    assert t.at(40 * S) == [("first_notification", [other])]
    (message,) = [m for m in t.people.take() if m["count"] == 2]
    assert message["group"] == {"area": "sh/huangpu/bund", "kind": "threshold"}
    assert [x["device"] for x in message["alerts"]] == ["wl-00002", "wl-00001"]  # red first
    t.ack(other)
    t.now = 1 * M
    c = t.fire("wl-00004")
    assert t.at(2 * M) == []  # news, but group_interval (5 min) has not passed
    assert t.at(30 * S + 5 * M) == [("new_alerts_in_group", [a, b, c])]
    t.ack(a)
    t.ack(b)
    assert t.at(10 * M) == []
    t.now = 11 * M
    t.fire("wl-00004", Level.RED)  # a level change is news
    assert t.at(11 * M) == [("new_alerts_in_group", [c])]  # 5.5 min after the last one
    assert t.at(11 * M + 4 * H - 1) == []
    assert t.at(11 * M + 4 * H) == [("repeat_interval_elapsed", [c])]
    t.ack(c)
    assert t.at(5 * H) == []
    assert t.router._groups == {}  # emptied groups are forgotten
    t.now = 6 * H
    d = t.fire("wl-00005")  # the next alert of the area starts a new group...
    e = t.fire("wl-00001", kind="rate")  # ...and another kind is another group
    assert t.at(6 * H) == []  # which waits again
    assert sorted(ids for _, ids in t.at(6 * H + 30 * S)) == [[d], [e]]


def test_silenced_and_inhibited_alerts_are_not_told(timeline: Timeline) -> None:
    t = timeline
    dark = t.fire("", source="area:sh/xuhui/street-0", kind="offline", area="sh/xuhui/street-0")
    t.fire("bin-00001", kind="offline", area="sh/xuhui/street-0")
    t.fire("bin-00002", kind="offline", area="sh/xuhui/street-0/grid-1")
    outside = t.fire("bin-00003", kind="offline", area="sh/xuhui/street-1")
    quiet = t.fire("wl-00001")
    t.silences = [Silence(1, (Matcher(name="device", value="wl-00001"),), 0, H, "wang", "works")]
    told = t.at(30 * S)
    assert sorted(ids for _, ids in told) == [[dark], [outside]]
    assert set(t.router.muted().values()) == {"inhibited", "silenced"}
    assert quiet not in {a for _, ids in told for a in ids}
    # The silence ends: the gauge's alert waited long enough, and is told at once.
    assert t.at(H) == [("first_notification", [quiet])]
    # The area comes back: its devices' alerts are no longer inhibited.
    t.now = 2 * H
    t.fire("", source="area:sh/xuhui/street-0", kind="offline", firing=False)
    assert sorted(t.at(2 * H)) == [
        ("first_notification", [dark + 2]),  # grid-1 is a group of its own, waiting since 0
        ("new_alerts_in_group", [dark, dark + 1]),
    ]


def test_nobody_acknowledges_so_the_next_role_is_told_once(tmp_path: Path) -> None:
    t = Timeline(tmp_path, escalate_after_s=15 * 60, min_level="yellow")
    a = t.fire("wl-00001", Level.RED)
    b = t.fire("wl-00002", Level.RED)
    t.fire("wl-00003", Level.BLUE)  # below min_level: nobody is paged
    t.at(10 * M)
    t.ack(b)
    assert t.at(15 * M - 1) == []
    assert t.commanders.take() == []
    t.at(15 * M)
    (up,) = t.commanders.take()
    assert (up["change"], up["action"], up["alert_id"]) == ("escalated", "escalate_unacked", a)
    assert up["note"] == "not acknowledged within 15 min"
    history = t.store.history(a)
    assert [e.action for e in history] == [Action.RAISE, Action.ESCALATE_UNACKED]
    assert history[-1].actor == "system"
    assert t.store.get(a).escalated_ms == 15 * M
    t.at(60 * M)
    assert t.commanders.take() == []  # once
    assert t.router.escalated == 1
    # Acknowledged, resolved, back again: raised anew, and escalated anew if left alone.
    t.ack(a)
    t.store.act(a, Action.RESOLVE, actor="li", role=Role.OFFICER)
    t.now = 2 * H
    t.fire("wl-00001", Level.RED, firing=False)
    t.fire("wl-00001", Level.RED)
    assert t.store.get(a).state is State.RAISED
    t.at(2 * H + 15 * M)
    assert [m["alert_id"] for m in t.commanders.take()] == [a]
    t.store.dispose()


def test_a_silence_also_holds_back_escalation(tmp_path: Path) -> None:
    t = Timeline(tmp_path, escalate_after_s=60)
    t.fire("wl-00001", Level.RED)
    t.silences = [Silence(1, (Matcher(name="level", value="red"),), 0, H, "wang", "drill")]
    t.at(30 * M)
    assert t.commanders.take() == []
    assert t.router.escalated == 0
    t.store.dispose()


def test_router_starts_from_the_stores_active_alerts(tmp_path: Path) -> None:
    t = Timeline(tmp_path, escalate_after_s=None)
    a = t.fire("wl-00001")
    fresh = NotificationRouter(
        GroupingSettings(),
        escalations=t.store,
        silences=lambda _now: [],
        receivers=[t.people],
        clock=lambda: t.now,
    )
    fresh.load(t.store.active_alerts())
    t.now = 30 * S
    assert [n.alerts[0].id for n in fresh.tick()] == [a]
    t.store.dispose()


def test_grouped_notifications_reach_a_real_webhook(tmp_path: Path) -> None:
    receiver = Receiver([503])
    url = f"sqlite:///{tmp_path / 'hub.db'}"
    feed = AlertFeed()
    store = AlertStore(url, on_change=feed.publish)
    silences = SilenceStore(url)
    settings = GroupingSettings.model_validate(
        {"receivers": [{"url": receiver.url}], "group_wait_s": 0, "escalate_after_s": None}
    )
    router, hooks = NotificationRouter.with_webhooks(
        settings,
        escalations=store,
        silences=lambda now: silences.silences(current_at=now),
        log=store,
    )
    for hook in hooks:
        hook.base_delay_s = 0.05
        hook.start()
    feed.subscribe(router.observe)
    try:
        ids = []
        for device in ("wl-00001", "wl-00002"):
            change = store.apply(
                ConditionEvent(
                    rule="r",
                    source=f"device:{device}",
                    kind="threshold",
                    level=Level.RED,
                    firing=True,
                    at_ms=int(time.time() * 1000),
                    summary="s",
                    device=device,
                    area="sh/huangpu/bund",
                )
            )
            assert change is not None
            ids.append(change.alert.id)
        (note,) = router.tick()
        assert note.reason is NotifyReason.FIRST_NOTIFICATION
        deadline = time.monotonic() + 10
        while len(store.deliveries(ids[1])) < 1 and time.monotonic() < deadline:
            time.sleep(0.02)
        for alert_id in ids:
            (d,) = store.deliveries(alert_id)
            assert (d.channel, d.outcome, d.attempts) == ("people", Outcome.DELIVERED, 2)
        body = json.loads(receiver.requests[-1][1])
        assert (body["reason"], body["count"]) == ("first_notification", 2)
        assert receiver.requests[0][0]["idempotency-key"].startswith("group:area=sh/huangpu/bund")
    finally:
        for hook in hooks:
            hook.stop()
        receiver.stop()
        store.dispose()
        silences.dispose()
