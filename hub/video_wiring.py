"""The camera index in the running hub: fleet and patrol, their findings on the alert path, alerts' places.

`video` knows cameras and pictures and nothing of alerts; `alerts` knows alerts and nothing of
cameras. Here the two meet:

- a confirmed finding (or its recovery) becomes an `alerts.events.ConditionEvent` on the same
  applier as the rule engine's events: source ``camera:<id>``, rule ``video.<finding>``, kind
  ``video``, the level from ``video.levels``. The patrol's debounce (``raise_after`` checks in a
  row) and recovery (``clear_after``) play the part a rule's ``for``/``repeat`` plays for sensors;
- at start, the alert store is brought in line with the cameras' stored standing (a finding
  confirmed with no firing alert raises one; a firing camera alert the fleet no longer holds clears);
- `VideoWiring.locate` tells the camera routes where an alert is, for ``/alerts/{id}/cameras``;
- `FeedCameras` is the situation feed's `hub.feed.CameraSource`.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Callable
from typing import Any, Protocol

from fastapi import FastAPI

from alerts.events import ConditionEvent, Evidence, Level
from alerts.lifecycle import Alert
from alerts.store import AlertStore
from devices.errors import NotFoundError
from devices.registry import DeviceQuery, Registry
from hub.settings import HubSettings
from video.cameras import Camera
from video.diagnose import FindingKind
from video.fleet import CameraFleet, StatusChange, now_ms
from video.history import CameraStatus, HistoryStore
from video.patrol import Patrol
from video.registry import CameraRegistry
from video.snapshots import SnapshotStore

logger = logging.getLogger(__name__)

SOURCE_PREFIX = "camera:"
RULE_PREFIX = "video."
KIND = "video"


def condition_event(change: StatusChange, level: Level) -> ConditionEvent:
    """The alert path's event for a camera finding confirmed or recovered."""
    camera, t = change.camera, change.transition
    who = f"camera {camera.id}" + (f" ({camera.name})" if camera.name else "")
    if t.firing and t.finding is not None:
        summary = f"{who}: {t.finding.detail}"
        value: float | None = t.finding.value
        evidence: tuple[Evidence, ...] = (
            Evidence(
                device=camera.id, metric=t.kind.value, ts_ms=change.at_ms, value=t.finding.value
            ),
        )
    else:
        summary = f"{who}: {t.kind.value.replace('_', ' ')} cleared" + (
            f" ({change.reason})" if change.reason else ""
        )
        value, evidence = None, ()
    return ConditionEvent(
        rule=RULE_PREFIX + t.kind.value,
        source=SOURCE_PREFIX + camera.id,
        kind=KIND,
        level=level,
        firing=t.firing,
        at_ms=change.at_ms,
        summary=summary,
        area=camera.area or None,
        metric=t.kind.value,
        value=value,
        evidence=evidence,
    )


class AlertPath(Protocol):
    """Where condition events go (`hub.alerting.Alerting`: the rule engine's applier)."""

    def emit(self, events: list[ConditionEvent]) -> None:
        """Queue events for the alert store, in order."""
        ...

    def drain(self, timeout: float = 10.0) -> bool:
        """Wait until every queued event is in the alert store."""
        ...


class FeedCameras:
    """The situation feed's camera source (`hub.feed.CameraSource`) over the fleet."""

    def __init__(self, fleet: CameraFleet) -> None:
        """Serve ``fleet``'s cameras."""
        self.fleet = fleet
        # Each camera's entry with the camera and stored status it was made from. Both are frozen
        # and replaced, never changed, on every change, so the same two objects mean the same
        # entry: a snapshot of 6,000 cameras then costs 1-2 ms here instead of ~22.
        self._entries: dict[str, tuple[Camera, CameraStatus | None, dict[str, Any]]] = {}

    @staticmethod
    def entry(camera: Camera, status: CameraStatus) -> dict[str, Any]:
        """A camera as the feed shows it (also what an api node makes of a relayed one)."""
        # Cameras belong to the city, not to a sensor vendor: no "vendor", so no vendor's stream
        # shows them (the feed's filter wants a matching vendor).
        return {
            "id": camera.id,
            "name": camera.name,
            "lat": camera.lat,
            "lon": camera.lon,
            "heading": camera.heading,
            "fov": camera.fov,
            "area": camera.area,
            "department": camera.department,
            "status": status.state.value,
            "findings": sorted(k.value for k in status.track.active),
        }

    def cameras(self) -> list[dict[str, Any]]:
        """Every camera with its standing (the entries are shared: read them, do not change them)."""
        fleet = self.fleet
        stored = fleet.statuses
        made = self._entries
        out = []
        for camera in fleet.registry.all():
            status = stored.get(camera.id)
            known = made.get(camera.id)
            if known is not None and known[0] is camera and known[1] is status:
                out.append(known[2])
                continue
            entry = self.entry(camera, fleet.status(camera.id))
            made[camera.id] = (camera, status, entry)
            out.append(entry)
        if len(made) > len(out):  # cameras were removed: forget their entries
            self._entries = {e["id"]: made[e["id"]] for e in out}
        return out

    def subscribe(self, callback: Callable[[dict[str, Any]], None]) -> Callable[[], None]:
        """Call ``callback`` with each camera whose state or findings changed (any thread)."""
        return self.fleet.subscribe(lambda camera, status: callback(self.entry(camera, status)))


class VideoWiring:
    """The fleet, its patrol, and their bridges to the alert path and the HTTP routes."""

    def __init__(
        self,
        settings: HubSettings,
        registry: Registry,
        alerts: AlertStore,
        path: AlertPath,
    ) -> None:
        """Open the camera tables (the registry's database) and the snapshot directory."""
        v = settings.video
        self.settings = v
        self.devices = registry
        self.alerts = alerts
        self._path = path
        self._levels = {kind: Level.parse(name) for kind, name in v.levels.items()}
        self.cameras = CameraRegistry(settings.registry)
        self.history = HistoryStore(settings.registry)
        self.snapshots = SnapshotStore(
            settings.data_dir / v.snapshot_dir,
            keep_latest=v.snapshots_kept,
            finding_days=v.finding_snapshot_days,
            keep_findings=v.finding_snapshots_kept,
        )
        self.fleet = CameraFleet(
            self.cameras, self.history, self.snapshots, v, on_changes=self.to_alerts
        )
        self.patrol = Patrol(self.fleet, v)
        self.feed_source = FeedCameras(self.fleet)
        self.reconcile()

    def install(self, app: FastAPI) -> None:
        """Give the camera routes what they depend on."""
        app.state.video_fleet = self.fleet
        app.state.video_patrol = self.patrol
        app.state.alert_locator = self

    async def run(self) -> None:
        """Patrol until cancelled; then stop the check workers (also those of "check now")."""
        try:
            if self.settings.patrol:
                await self.patrol.run()
            else:
                await asyncio.Event().wait()  # no patrol: only checks asked for over the API
        finally:
            await self.patrol.pool.close()

    def close(self) -> None:
        """Close the camera tables' connections."""
        self.cameras.dispose()
        self.history.dispose()

    # -- the alert path -------------------------------------------------------------------------

    def to_alerts(self, changes: list[StatusChange]) -> None:
        """Queue alert events for confirmed and recovered findings (any thread)."""
        events = [
            condition_event(c, self._levels[c.transition.kind])
            for c in changes
            if c.transition.kind in self._levels
        ]
        if events:
            self._path.emit(events)

    def reconcile(self) -> None:
        """Make the alert store agree with the cameras' stored standing (at start).

        What the rule engine's own reconciliation queued goes in first: it clears firing alerts it
        does not hold, camera alerts among them, and those must be raised again here, not be
        mistaken for still firing.
        """
        self._path.drain()
        firing: set[tuple[str, str]] = set()
        events: list[ConditionEvent] = []
        at = now_ms()
        for alert in self.alerts.active_alerts():
            if alert.kind != KIND or not alert.firing:
                continue
            camera_id = alert.source.removeprefix(SOURCE_PREFIX)
            kind = alert.rule.removeprefix(RULE_PREFIX)
            status = self.fleet.statuses.get(camera_id)
            if status is not None and kind in {k.value for k in status.track.active}:
                firing.add((camera_id, kind))
                continue
            events.append(_cleared(alert, at))
        for camera_id, status in self.fleet.statuses.items():
            camera = self.cameras.cameras.get(camera_id)
            if camera is None:
                continue
            held = {f.kind: f for f in status.findings}
            for kind in status.track.active:
                if (camera_id, kind.value) in firing or kind not in self._levels:
                    continue
                events.append(self._held(camera, kind, held, at))
        if events:
            logger.info(
                "reconciled %s camera alerts with the cameras' stored standing", len(events)
            )
            self._path.emit(events)

    def _held(
        self, camera: Camera, kind: FindingKind, held: dict[FindingKind, Any], at: int
    ) -> ConditionEvent:
        finding = held.get(kind)
        detail = finding.detail if finding is not None else kind.value
        return ConditionEvent(
            rule=RULE_PREFIX + kind.value,
            source=SOURCE_PREFIX + camera.id,
            kind=KIND,
            level=self._levels[kind],
            firing=True,
            at_ms=at,
            summary=f"camera {camera.id}: {detail} (held at restart)",
            area=camera.area or None,
            metric=kind.value,
            value=finding.value if finding is not None else None,
        )

    # -- where alerts are -----------------------------------------------------------------------

    def locate(self, alert_id: int) -> tuple[float, float] | None:
        """Where an alert is: its camera, its device, the devices of its evidence, or its area.

        Raises:
            AlertNotFoundError: no such alert.
        """
        alert = self.alerts.get(alert_id)
        if alert.source.startswith(SOURCE_PREFIX):
            camera = self.cameras.cameras.get(alert.source.removeprefix(SOURCE_PREFIX))
            if camera is not None and camera.lat is not None and camera.lon is not None:
                return camera.lat, camera.lon
        devices = [alert.device] if alert.device else []
        devices += [e.device for e in self.alerts.evidence(alert_id)]
        found = self.devices.devices_by_id(devices)
        place = _centre([(d.lat, d.lon) for d in found.values()])
        if place is None and alert.area:
            place = self._area_centre(alert)
        return place

    def _area_centre(self, alert: Alert) -> tuple[float, float] | None:
        area = alert.area or ""
        try:
            devices, _ = self.devices.devices(DeviceQuery(area=area, limit=10_000))
        except NotFoundError:
            devices = []
        points = [(d.lat, d.lon) for d in devices]
        prefix = area.rstrip("/") + "/"
        points += [
            (c.lat, c.lon)
            for c in self.cameras.cameras.values()
            if c.area == area or c.area.startswith(prefix)
        ]
        return _centre(points)


def _centre(points: list[tuple[float | None, float | None]]) -> tuple[float, float] | None:
    """The mean of the points with a position (fine at a city's scale), or None."""
    placed = [(lat, lon) for lat, lon in points if lat is not None and lon is not None]
    if not placed:
        return None
    return (sum(p[0] for p in placed) / len(placed), sum(p[1] for p in placed) / len(placed))


def _cleared(alert: Alert, at: int) -> ConditionEvent:
    return ConditionEvent(
        rule=alert.rule,
        source=alert.source,
        kind=alert.kind,
        level=alert.level,
        firing=False,
        at_ms=at,
        summary=f"{alert.source}: no longer held by the camera patrol after a restart",
        area=alert.area,
        metric=alert.metric,
    )
