"""Alert changes going out: a fan-out feed, MQTT ``hub/alerts/{level}/{alert_id}``, and webhooks.

Every `AlertChange` the store commits goes to `AlertFeed.publish`, which hands it to each subscriber
in turn: the MQTT notifier, one `alerts.webhook.WebhookNotifier` per target, the people's
notification router (`alerts.grouping`), and (next issue) the websocket feed.
Subscribers are called on the thread that changed the alert (an ingest task, an API request), so
they must not block: MQTT publishing is queued by paho, and a webhook only appends to its own bounded
queue, which a thread of its own drains. A dead webhook therefore costs memory up to its queue bound
and then drops its oldest changes (counted and written to the delivery log), and never slows
ingestion or another channel.

MQTT messages are QoS 1 and **not retained**. Retaining "the active alerts" sounds useful to a late
subscriber, but the topic carries the level, so every level change and every close would have to
clear the old retained message, and one missed clear (a crash between the commit and the publish)
leaves a ghost alert on every screen forever. The database is the one truth: a late subscriber reads
``GET /api/v1/alerts?active=true`` and then follows the topic, ordering by ``seq`` per alert.
"""

from __future__ import annotations

import logging
import threading
from collections.abc import Callable
from typing import Protocol

from pydantic import BaseModel, ConfigDict, Field

from alerts.grouping import Escalations, GroupingSettings, NotificationRouter
from alerts.lifecycle import Alert, AlertChange
from alerts.silences import Silence
from alerts.webhook import DeliveryLog, WebhookNotifier, WebhookSettings
from alerts.wire import encode

logger = logging.getLogger(__name__)

TOPIC_PREFIX = "hub/alerts"

Subscriber = Callable[[AlertChange], None]


def alert_topic(change: AlertChange, prefix: str = TOPIC_PREFIX) -> str:
    """``hub/alerts/{level}/{alert_id}``, at the alert's level after the change."""
    return f"{prefix}/{change.alert.level.label}/{change.alert.id}"


class NotifySettings(BaseModel):
    """Where alert changes go besides MQTT (settings section ``notify``)."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    mqtt_prefix: str = Field(TOPIC_PREFIX, title="Topic prefix of alert changes on MQTT")
    webhooks: list[WebhookSettings] = Field(
        default_factory=list,
        title="Webhook targets of every change",
        description="For systems: each alert change, as it happens (what MQTT carries)",
    )
    people: GroupingSettings = Field(
        default_factory=GroupingSettings,
        title="Notifications to people",
        description="Grouped, silenced, inhibited, repeated and escalated (alerts/grouping.py)",
    )
    webhook_queue_size: int = Field(
        1000,
        ge=1,
        title="Changes queued per webhook",
        description="When a target cannot keep up (or is down), its oldest queued changes are "
        "dropped beyond this, and logged as dropped; ingestion never waits for a webhook",
    )
    webhook_max_attempts: int = Field(8, ge=1, title="Attempts per change on recoverable errors")
    webhook_base_delay_s: float = Field(0.5, gt=0, title="First retry delay (doubles each time)")
    webhook_max_delay_s: float = Field(60, gt=0, title="Longest retry delay")
    webhook_timeout_s: float = Field(5, gt=0, title="Timeout of one webhook request")

    def webhook_notifiers(self, log: DeliveryLog | None) -> list[WebhookNotifier]:
        """One (not yet started) notifier per configured target."""
        return [
            WebhookNotifier(
                w.url,
                log=log,
                headers=w.headers,
                queue_size=self.webhook_queue_size,
                max_attempts=self.webhook_max_attempts,
                base_delay_s=self.webhook_base_delay_s,
                max_delay_s=self.webhook_max_delay_s,
                timeout_s=self.webhook_timeout_s,
            )
            for w in self.webhooks
        ]


class AlertFeed:
    """A fan-out of alert changes to subscribers; one failing subscriber never stops the others."""

    def __init__(self) -> None:
        self._subscribers: list[Subscriber] = []
        self._lock = threading.Lock()
        self.failures = 0

    def subscribe(self, callback: Subscriber) -> Callable[[], None]:
        """Call ``callback`` with every change from now on; returns the function that unsubscribes.

        The callback runs on the thread that changed the alert: it must return quickly (queue the
        work) and should not raise (an exception is logged and counted, and the change goes on).
        """
        with self._lock:
            self._subscribers = [*self._subscribers, callback]

        def unsubscribe() -> None:
            with self._lock:
                self._subscribers = [s for s in self._subscribers if s is not callback]

        return unsubscribe

    def publish(self, change: AlertChange) -> None:
        """Hand ``change`` to every subscriber, in subscription order."""
        for subscriber in self._subscribers:  # a copy-on-write list: no lock while calling out
            try:
                subscriber(change)
            except Exception:
                self.failures += 1
                logger.exception(
                    "alert subscriber %r failed on alert %s", subscriber, change.alert.id
                )


class Publisher(Protocol):
    """Publishes MQTT messages without blocking (``ingest.mqtt.MqttTransport`` is one)."""

    def publish(self, topic: str, payload: bytes, qos: int = 1, *, retain: bool = False) -> None:
        """Queue ``payload`` for ``topic``."""
        ...


class MqttNotifier:
    """Subscriber publishing each change on ``hub/alerts/{level}/{alert_id}`` (QoS 1, not retained)."""

    def __init__(self, publisher: Publisher, prefix: str = TOPIC_PREFIX) -> None:
        self._publisher = publisher
        self.prefix = prefix
        self.published = 0

    def __call__(self, change: AlertChange) -> None:
        """Publish ``change``."""
        self._publisher.publish(alert_topic(change, self.prefix), encode(change), 1, retain=False)
        self.published += 1


class AlertSource(Escalations, DeliveryLog, Protocol):
    """What the notifications need of the alert store (``alerts.store.AlertStore``)."""

    def active_alerts(self) -> list[Alert]:
        """Every active alert."""
        ...


class SilenceSource(Protocol):
    """Where silences come from (``alerts.silences.SilenceStore``)."""

    def silences(self, *, current_at: int | None = None) -> list[Silence]:
        """The silences not expired at ``current_at``."""
        ...


class Notifications:
    """Every way alert changes leave the hub, built from settings and wired to one feed.

    MQTT and the change webhooks get each change; the people's router groups, mutes, repeats and
    escalates (`alerts.grouping`). The composition root builds this, `start`s it, runs `run` as a
    task and `stop`s it; the websocket feed subscribes to ``feed`` itself.
    """

    def __init__(
        self,
        settings: NotifySettings,
        *,
        feed: AlertFeed,
        publisher: Publisher,
        store: AlertSource,
        silences: SilenceSource,
        mine: Callable[[Alert], bool] | None = None,
    ) -> None:
        """Subscribe MQTT, the change webhooks and the people's router to ``feed``.

        ``mine`` picks, of the active alerts at start, those this process answers for (one ingest
        worker of several: its own devices' alerts; the others' workers group and escalate theirs).
        """
        self.feed = feed
        self.mqtt = MqttNotifier(publisher, settings.mqtt_prefix)
        feed.subscribe(self.mqtt)
        self.people, people_hooks = NotificationRouter.with_webhooks(
            settings.people,
            escalations=store,
            silences=lambda now: silences.silences(current_at=now),
            log=store,
        )
        active = store.active_alerts()
        self.people.load([a for a in active if mine(a)] if mine is not None else active)
        feed.subscribe(self.people.observe)
        change_hooks = settings.webhook_notifiers(store)
        for hook in change_hooks:
            feed.subscribe(hook)
        self.webhooks = [*change_hooks, *people_hooks]

    def start(self) -> None:
        """Start the webhooks' delivery threads."""
        for hook in self.webhooks:
            hook.start()

    async def run(self) -> None:
        """The people's router's ticks (grouping, repeats, escalation), until cancelled."""
        await self.people.run()

    def stop(self) -> None:
        """Stop the webhooks' threads (what is still queued stays unsent, and is logged)."""
        for hook in self.webhooks:
            hook.stop()
