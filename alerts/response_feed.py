"""Incident, unit and warning changes going out: a fan-out to subscribers (the websocket feed, screens).

Anything may `ResponseFeed.subscribe` and gets every `ResponseEvent` after its commit, as the alert
feed (`alerts.notify.AlertFeed`) does for alerts; the situation feed (``hub/feed_response.py``)
subscribes and carries the changes to the screens. Subscribers run on the thread that made the change and must only queue.
"""

from __future__ import annotations

import logging
import threading
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any, Literal

logger = logging.getLogger(__name__)

EventKind = Literal["incident", "unit", "warning"]


@dataclass(frozen=True, slots=True)
class ResponseEvent:
    """One change: what kind of object, what happened, which one, where, and the object as on the wire.

    ``body`` is the object's API view (`alerts.response_views`) as JSON-ready data; for incidents
    and warnings ``entry`` is the history line the change added.
    """

    kind: EventKind
    action: str
    id: str
    area: str
    at_ms: int
    body: dict[str, Any]
    entry: dict[str, Any] | None = None

    def wire(self) -> dict[str, Any]:
        """The event as one JSON object (``type`` names the kind, as feed frames do)."""
        out: dict[str, Any] = {
            "type": self.kind,
            "action": self.action,
            "id": self.id,
            "area": self.area,
            "at": self.at_ms,
            self.kind: self.body,
        }
        if self.entry is not None:
            out["entry"] = self.entry
        return out


Subscriber = Callable[[ResponseEvent], None]


class ResponseFeed:
    """A fan-out of response events; one failing subscriber never stops the others."""

    def __init__(self) -> None:
        self._subscribers: list[Subscriber] = []
        self._lock = threading.Lock()
        self.published = 0
        self.failures = 0

    def subscribe(self, callback: Subscriber) -> Callable[[], None]:
        """Call ``callback`` with every event from now on; returns the function that unsubscribes."""
        with self._lock:
            self._subscribers = [*self._subscribers, callback]

        def unsubscribe() -> None:
            with self._lock:
                self._subscribers = [s for s in self._subscribers if s is not callback]

        return unsubscribe

    def publish(self, event: ResponseEvent) -> None:
        """Hand ``event`` to every subscriber, in subscription order."""
        self.published += 1
        for subscriber in self._subscribers:  # copy-on-write: no lock while calling out
            try:
                subscriber(event)
            except Exception:
                self.failures += 1
                logger.exception(
                    "response subscriber %r failed on %s %s", subscriber, event.kind, event.id
                )
