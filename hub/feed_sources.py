"""Where the situation feed gets cameras and active alerts from: small protocols, and the empty camera source.

The video package will provide the real camera source; until it is wired, the hub passes `NoCameras`.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any, Protocol

from alerts.lifecycle import Alert


class CameraSource(Protocol):
    """Where cameras come from (the video package's registry; none until it is wired)."""

    def cameras(self) -> list[dict[str, Any]]:
        """Every camera: ``id``, ``name``, ``lat``, ``lon``, ``area``, ``status``, ``findings``.

        A camera a vendor's account may see also names its ``vendor``. Called on a worker thread
        (while a snapshot is built), so it must not touch event-loop state.
        """
        ...

    def subscribe(self, callback: Callable[[dict[str, Any]], None]) -> Callable[[], None]:
        """Call ``callback`` with each status change; returns the function that unsubscribes.

        A change carries ``id``, ``status``, ``findings`` and, for filtering, ``area`` and
        ``vendor``; ``callback`` may be called on any thread.
        """
        ...


class NoCameras:
    """The camera source of a hub without video."""

    def cameras(self) -> list[dict[str, Any]]:
        """No cameras."""
        return []

    def subscribe(self, callback: Callable[[dict[str, Any]], None]) -> Callable[[], None]:
        """Nothing will ever change."""
        return lambda: None


class ActiveAlerts(Protocol):
    """What the feed reads of the alert store (``alerts.store.AlertStore``)."""

    def active_alerts(self) -> list[Alert]:
        """Every active alert."""
        ...
