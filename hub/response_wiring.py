"""The emergency response wired into the hub: area tree, incidents, units, warnings, roster, their routes.

The response service (`alerts.response`) gets from here what it must not import: stored readings for
report charts (from the hub's time-series store, as the readings API reads them), camera snapshots
near an incident (from the video package's fleet), device positions (from the registry), the
ordered path into the alert store (the rule engine's ``emit``), and the hub's clock task.

Its changes are published on ``service.feed`` (`alerts.response_feed.ResponseFeed`); the situation
feed subscribes to it (``hub/feed_response.py``) and carries incidents, units and warnings to the
screens.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Callable, Sequence
from zoneinfo import ZoneInfo

import numpy as np
from fastapi import APIRouter, FastAPI

from alerts import incident_api, reports_api, roster_api, units_api, warnings_api
from alerts._response_tables import ResponseDb
from alerts.events import ConditionEvent
from alerts.lifecycle import AlertChange
from alerts.notify import AlertFeed
from alerts.reports import Series, Snapshot
from alerts.response import ResponseService
from alerts.store import AlertStore
from devices import area_tree_api
from devices.areas import AreaTree
from devices.registry import Registry
from hub.settings import HubSettings
from ingest.store import Store
from video.fleet import CameraFleet

logger = logging.getLogger(__name__)

ROUTERS: tuple[APIRouter, ...] = (
    area_tree_api.router,
    reports_api.rollup_router,
    incident_api.router,
    units_api.router,
    warnings_api.router,
    roster_api.router,
    reports_api.router,
)
"""The response's HTTP routes, for `hub.app.create_app` to mount."""

MAX_REPORT_POINTS = 20_000


class StoreReadings:
    """Report charts' readings, from the hub's time-series store (what the readings API serves)."""

    def __init__(self, registry: Registry, store: Store) -> None:
        self._registry = registry
        self._store = store

    def series(self, device: str, metric: str, start_ms: int, end_ms: int) -> Series | None:
        """The readings of ``device``'s ``metric`` in the window; None for an unknown pair."""
        entry = self._registry.interner.devices.get(device)
        midx = self._registry.interner.metrics.get(metric)
        if entry is None or midx is None:
            return None
        spec = self._registry.profile(entry.profile).metric(metric)
        batch = self._store.range(entry.index, midx, start_ms, end_ms, MAX_REPORT_POINTS)
        return Series(
            device=device,
            metric=metric,
            unit=spec.unit if spec is not None else "",
            ts=np.asarray(batch.ts, dtype=np.int64),
            value=np.asarray(batch.value, dtype=np.float64),
        )


class FleetSnapshots:
    """Report pictures: the newest snapshot of the working cameras nearest an incident."""

    def __init__(self, fleet: CameraFleet, radius_m: float = 1000.0) -> None:
        self._fleet = fleet
        self._radius_m = radius_m

    def near(self, lat: float, lon: float, k: int) -> list[Snapshot]:
        """Up to ``k`` snapshots, nearest camera first."""
        fleet = self._fleet
        index = fleet.index()
        hits = index.nearest(
            lat, lon, k=k, radius_m=self._radius_m, mask=fleet.mask(index, working=True)
        )
        out = []
        for h in hits:
            camera = index.ids[h.index]
            ref = fleet.snapshots.latest(camera)
            if ref is None:
                continue
            try:
                jpeg = fleet.snapshots.path(camera, ref.name).read_bytes()
            except OSError:
                continue
            out.append(Snapshot(camera=camera, at_ms=ref.at_ms, jpeg=jpeg, distance_m=h.distance_m))
        return out


def device_places(registry: Registry) -> Callable[[Sequence[str]], list[tuple[float, float]]]:
    """Device ids -> the positions the registry has for them."""

    def places(ids: Sequence[str]) -> list[tuple[float, float]]:
        found = registry.devices_by_id(ids)
        return [(d.lat, d.lon) for d in found.values() if d.lat is not None and d.lon is not None]

    return places


class ResponseWiring:
    """The area tree and the response service, their routes' state, and their clock task."""

    def __init__(
        self,
        settings: HubSettings,
        registry: Registry,
        store: Store,
        alerts: AlertStore,
        alert_feed: AlertFeed,
        emit: Callable[[list[ConditionEvent]], None],
        fleet: CameraFleet | None = None,
    ) -> None:
        """Open the tree and the response tables (the registry's database) and build the service."""
        self.tree = AreaTree(settings.registry)
        self.db = ResponseDb(settings.registry)
        self.service = ResponseService(
            self.db,
            settings.response,
            self.tree,
            alerts=alerts,
            emit=emit,
            data_dir=settings.data_dir,
            places=device_places(registry),
        )
        self.service.readings = StoreReadings(registry, store)
        self.service.snapshots = FleetSnapshots(fleet) if fleet is not None else None
        self.service.tz = ZoneInfo(settings.ingest.site_zone)
        # Which alert changes the duty notifier takes: all of this process's (a one-process hub);
        # in a cluster only the api node holding the jobs lease tells people, of every node's
        # changes (hub/singleton_jobs.py), and the other nodes queue none.
        self.duty_wanted: Callable[[], bool] = lambda: True
        # An api node standing by for the jobs lease remembers the last changes, so that taking
        # the lease from a holder that died tells people of what it had not (`DutyNotifier.adopt`).
        self.duty_standby: Callable[[], bool] = lambda: False
        alert_feed.subscribe(self.to_duty)
        self.service.start()
        # Overdue steps whose alert a crash may have lost (queued behind the engine's reconcile).
        self.service.reconcile()

    def to_duty(self, change: AlertChange) -> None:
        """Queue an alert change for the people on duty, if this process tells them (any thread)."""
        if self.duty_wanted():
            self.service.duty.observe(change)
        elif self.duty_standby():
            self.service.duty.observe_standby(change)

    def install(self, app: FastAPI) -> None:
        """Give the routes what they depend on."""
        app.state.response = self.service
        app.state.area_tree = self.tree

    async def run(self) -> None:
        """Tick until cancelled: overdue steps, expired warnings, duty notices."""
        tick = self.service.settings.tick_s
        while True:
            try:
                await asyncio.to_thread(self.service.tick)
            except Exception:
                logger.exception("the response tick failed")
            await asyncio.sleep(tick)

    def close(self) -> None:
        """Stop the duty receivers and close the database connections."""
        self.service.stop()
        self.db.dispose()
        self.tree.dispose()
