"""Citizens' reports wired into the hub: their store, the sensors' positions, the alert path, the feed.

The report service (`alerts.citizen_reports`) gets from here what it must not import: where the
registry's sensors stand (rebuilt when the registry changes), the area tree's boundaries for reports
sent without an area, the alert store to link to, and the rule engine's ``emit`` (the ordered path
into the alert store) for its correlation alerts; and a clock task that re-decides clusters.
"""

from __future__ import annotations

import asyncio
import logging
import threading
from collections.abc import Callable

import numpy as np
from fastapi import FastAPI

from alerts.citizen_reports import CitizenReports, SensorPlaces
from alerts.citizen_store import ReportStore
from alerts.events import ConditionEvent
from alerts.store import AlertStore
from devices.areas import AreaTree
from devices.registry import Registry
from hub.feed_devices import FeedDevices
from hub.feed_reports import FeedReports
from hub.settings import HubSettings

logger = logging.getLogger(__name__)

TICK_S = 5.0
"""How often clusters with an alert are re-decided (sensors that started or stopped alarming)."""


class RegistrySensors:
    """The registry's active devices as `SensorPlaces`, rebuilt only when the registry changed."""

    def __init__(self, registry: Registry) -> None:
        self._registry = registry
        self._lock = threading.Lock()
        self._version = -1
        self._places: SensorPlaces | None = None

    def __call__(self) -> SensorPlaces:
        """The sensors now (called on worker threads)."""
        with self._lock:
            if self._places is None or self._version != self._registry.version:
                version = self._registry.version
                d = FeedDevices.from_registry(self._registry)
                active = np.flatnonzero(d.active)
                self._places = SensorPlaces(
                    ids=d.ids[active], type=d.type[active], lat=d.lat[active], lon=d.lon[active]
                )
                self._version = version
            return self._places


class ReportsWiring:
    """The report store and service, their route state, feed part and clock task."""

    def __init__(
        self,
        settings: HubSettings,
        registry: Registry,
        alerts: AlertStore,
        emit: Callable[[list[ConditionEvent]], None],
        tree: AreaTree,
    ) -> None:
        """Open the report tables (the registry's database) and build the service."""
        self.store = ReportStore(settings.registry)
        self.service = CitizenReports(
            self.store,
            settings.reports,
            settings.data_dir / settings.reports.photo_dir,
            alerts=alerts,
            sensors=RegistrySensors(registry),
            emit=emit,
            locate=tree.locate,
        )
        self.feed = FeedReports(self.service)

    def install(self, app: FastAPI) -> None:
        """Give the routes what they depend on."""
        app.state.citizen_reports = self.service

    async def run(self) -> None:
        """Re-decide clusters with an alert until cancelled."""
        while True:
            await asyncio.sleep(TICK_S)
            try:
                await asyncio.to_thread(self.service.tick)
            except Exception:
                logger.exception("re-deciding report clusters failed")

    def close(self) -> None:
        """Close the database connections."""
        self.store.dispose()
