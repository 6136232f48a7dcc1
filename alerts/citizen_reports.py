"""Citizens' reports: taken in, linked to alerts and each other, clustered, and correlated with sensors.

A report (a 12345 hotline ticket, a grid worker's report) is checked, kept with its photos, and linked
to every alert and every other report within ``radius_m`` and ``window_s`` of it (`citizen_linking`:
one kd-tree pass for a whole import). Linked reports form a cluster (connected components of the
links; the cluster keeps the id of its first report). When a cluster holds ``cluster_min`` reports
within the window, the sensors of the reports' category (``categories``) near them decide:

- a sensor near them alarms: a ``citizen-reports-confirm`` alert, at the alarm's level: people on
  the street confirm what the sensors say;
- sensors of the category stand there and all are quiet: a ``citizen-reports-sensors-quiet`` alert
  on the nearest of them: a sensor may be broken (or the reports are wrong);
- no such sensor stands there: nothing beyond the reports themselves.

Both go down the rule engine's ordered path into the alert store (``emit``), with the source
``report-cluster:<cluster id>``, so they are acknowledged, dispatched, notified and shown like any
alert. `tick` re-decides clusters with an alert (sensors start or stop alarming) and clears them
once no report came within the window.
"""

from __future__ import annotations

import logging
import threading
import time
from collections import Counter
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Protocol

import numpy as np
from numpy.typing import NDArray
from sqlalchemy.engine import Connection

from alerts.citizen_linking import Places, near
from alerts.citizen_records import (
    InvalidReportError,
    Link,
    NewReport,
    Report,
    StoredPhoto,
    Submitted,
)
from alerts.citizen_settings import (
    CONFIRM_RULE,
    QUIET_RULE,
    SOURCE_PREFIX,
    CitizenReportSettings,
)
from alerts.citizen_store import ReportStore
from alerts.events import ConditionEvent, Level
from alerts.lifecycle import Alert
from alerts.photos import PhotoStore
from alerts.store import AlertQuery

logger = logging.getLogger(__name__)

KIND = "report-cluster"
MAX_LINKED_ALERTS = 5000
FUTURE_SLACK_MS = 10 * 60_000  # a report "from the future" beyond this is a typing error


@dataclass(frozen=True, slots=True)
class SensorPlaces:
    """Where the city's sensors stand: row ``i`` is device ``ids[i]`` of ``type[i]``."""

    ids: NDArray[np.object_]
    type: NDArray[np.object_]
    lat: NDArray[np.float64]
    lon: NDArray[np.float64]


class AlertReader(Protocol):
    """What the reports read of the alert store (`alerts.store.AlertStore`)."""

    def query(self, q: AlertQuery) -> tuple[list[Alert], int]:
        """Alerts matching ``q``."""
        ...

    def active_alerts(self) -> list[Alert]:
        """Every active alert."""
        ...


def _now_ms() -> int:
    return time.time_ns() // 1_000_000


class CitizenReports:
    """Takes reports in, links, clusters and correlates them; tells subscribers of new ones."""

    def __init__(
        self,
        store: ReportStore,
        settings: CitizenReportSettings,
        photo_root: Path,
        *,
        alerts: AlertReader,
        sensors: Callable[[], SensorPlaces],
        emit: Callable[[list[ConditionEvent]], None],
        locate: Callable[[NDArray[np.float64], NDArray[np.float64]], list[str | None]]
        | None = None,
        clock: Callable[[], int] = _now_ms,
    ) -> None:
        """Keep reports in ``store`` and photos under ``photo_root``; alerts go out through ``emit``.

        ``locate`` gives the area of positions (the area tree's boundaries), for reports sent
        without one; ``sensors`` the sensors' positions now (read at each decision).
        """
        self.store = store
        self.settings = settings
        self.photos = PhotoStore(photo_root, max_bytes=settings.photo_max_bytes)
        self._alerts = alerts
        self._sensors = sensors
        self._emit = emit
        self._locate = locate
        self._clock = clock
        # One submission at a time: a report's cluster is decided from what is stored before it.
        self._lock = threading.Lock()
        self._subscribers: list[Callable[[Report], None]] = []

    @property
    def window_ms(self) -> int:
        """The linking window in milliseconds."""
        return int(self.settings.window_s * 1000)

    def subscribe(self, callback: Callable[[Report], None]) -> Callable[[], None]:
        """Call ``callback`` with each new report (on the submitting thread); returns the unsubscriber."""
        self._subscribers.append(callback)
        return lambda: self._subscribers.remove(callback)

    def now_ms(self) -> int:
        """The service's clock."""
        return self._clock()

    # -- taking reports in ------------------------------------------------------------------------

    def check(self, report: NewReport) -> None:
        """Raise InvalidReportError (or PhotoRejectedError) if ``report`` cannot be kept as it is."""
        categories = self.settings.categories
        if report.category not in categories:
            msg = f"category {report.category!r} is not one of {', '.join(sorted(categories))}"
            raise InvalidReportError(msg)
        if (report.lat is None) != (report.lon is None):
            msg = "give both lat and lon, or neither"
            raise InvalidReportError(msg)
        if report.lat is None and not report.address.strip():
            msg = "a report needs a place: lat and lon, or an address"
            raise InvalidReportError(msg)
        if report.at_ms > self._clock() + FUTURE_SLACK_MS:
            msg = "the report's time is in the future: check the time and its zone"
            raise InvalidReportError(msg)
        if len(report.photos) > self.settings.photos_per_report:
            msg = (
                f"{len(report.photos)} photos: at most {self.settings.photos_per_report} per report"
            )
            raise InvalidReportError(msg)
        for p in report.photos:
            self.photos.check(p.data, p.content_type)

    def submit(self, reports: Sequence[NewReport]) -> Submitted:
        """Keep, link and cluster ``reports`` (checked first, all or nothing), then correlate.

        A report whose ``(source, external_id)`` is kept already (an import run twice) is skipped
        and named in ``duplicates``.
        """
        for r in reports:
            self.check(r)
        now = self._clock()
        with self._lock:
            out, ids = self._keep(reports, now)
            out.created = self.store.many(ids)
            events = self._decide_touched(out.created, now)
        if events:
            self._emit(events)
        out.alerts = [{"rule": e.rule, "source": e.source, "firing": e.firing} for e in events]
        for report in out.created:
            for callback in list(self._subscribers):
                try:
                    callback(report)
                except Exception:  # a screen's bug must not lose a report
                    logger.exception("report subscriber %r failed", callback)
        return out

    def _decide_touched(self, created: list[Report], now: int) -> list[ConditionEvent]:
        """Decide the clusters new reports joined that are big enough, or already alerting."""
        touched = {r.cluster_id for r in created if r.cluster_id is not None}
        if not touched:
            return []
        alerts = self._alerts.active_alerts()
        alerting = {a.source for a in alerts if a.source.startswith(SOURCE_PREFIX)}
        sizes = self.store.cluster_sizes(sorted(touched))
        wanted = [
            c
            for c in sorted(touched)
            if sizes.get(c, 0) >= self.settings.cluster_min or f"{SOURCE_PREFIX}{c}" in alerting
        ]
        return [e for c in wanted for e in self.decide(c, now, alerts)]

    def _keep(self, reports: Sequence[NewReport], now: int) -> tuple[Submitted, list[int]]:
        out = Submitted()
        with self.store.engine.begin() as conn:
            keys = [(r.source, r.external_id) for r in reports if r.external_id]
            known: dict[tuple[str, str], int | None] = dict(self.store.known(conn, keys))
            fresh: list[NewReport] = []
            for row, r in enumerate(reports):
                key = (r.source, r.external_id) if r.external_id else None
                if key is not None and key in known:
                    out.duplicates.append((row, known[key]))
                    continue
                if key is not None:
                    known[key] = None  # a later row of the same ticket in this upload
                fresh.append(r)
            fresh = self._with_areas(fresh)
            ids = self.store.insert(conn, fresh, now)
            for report_id, r in zip(ids, fresh, strict=True):
                saved = [
                    StoredPhoto.of(
                        n, self.photos.save(report_id, p.data, p.content_type, p.caption)
                    )
                    for n, p in enumerate(r.photos, start=1)
                ]
                self.store.add_photos(conn, report_id, saved)
            clusters, links = self._link(conn, ids, fresh, now)
            self.store.set_clusters(conn, ids, clusters)
            self.store.add_links(conn, links)
        return out, ids

    def _with_areas(self, reports: list[NewReport]) -> list[NewReport]:
        """Reports placed but without an area get the area their position lies in."""
        if self._locate is None:
            return reports
        rows = [i for i, r in enumerate(reports) if r.area is None and r.lat is not None]
        if not rows:
            return reports
        lat = np.array([reports[i].lat for i in rows], dtype=np.float64)
        lon = np.array([reports[i].lon for i in rows], dtype=np.float64)
        out = list(reports)
        for i, area in zip(rows, self._locate(lat, lon), strict=True):
            if area is not None:
                r = out[i]
                out[i] = NewReport(
                    source=r.source,
                    category=r.category,
                    text=r.text,
                    at_ms=r.at_ms,
                    reporter=r.reporter,
                    lat=r.lat,
                    lon=r.lon,
                    address=r.address,
                    area=area,
                    external_id=r.external_id,
                    photos=r.photos,
                )
        return out

    # -- linking and clusters ---------------------------------------------------------------------

    def _link(
        self, conn: Connection, ids: list[int], fresh: list[NewReport], now: int
    ) -> tuple[list[int | None], list[tuple[int, Link]]]:
        """Each new report's cluster, and the links of (and to) the new reports."""
        new = Places.of(
            ids, [r.lat for r in fresh], [r.lon for r in fresh], [r.at_ms for r in fresh]
        )
        if not len(new):
            return [None] * len(ids), []
        w = self.window_ms
        pool, cluster_of = self.store.placed_between(
            conn, int(new.at_ms.min()) - w, int(new.at_ms.max()) + w
        )
        pairs = near(new, pool, radius_m=self.settings.radius_m, window_ms=w)
        a, b = new.ids[pairs.left], pool.ids[pairs.right]
        other = a != b
        a, b = a[other], b[other]
        dist, dt_s = pairs.distance_m[other], pairs.dt_ms[other] / 1000.0
        is_new = np.isin(b, new.ids)
        links: list[tuple[int, Link]] = [
            (int(x), Link("report", int(y), float(d), float(t)))
            for x, y, d, t in zip(a.tolist(), b.tolist(), dist.tolist(), dt_s.tolist(), strict=True)
        ]
        # The older report learns of the new one too (a pair of new ones has both rows already).
        links += [
            (int(y), Link("report", int(x), float(d), -float(t)))
            for x, y, d, t in zip(
                a[~is_new].tolist(),
                b[~is_new].tolist(),
                dist[~is_new].tolist(),
                dt_s[~is_new].tolist(),
                strict=True,
            )
        ]
        links += self._alert_links(new, now)
        clusters = _clusters(new, pool, cluster_of, a, b)
        by_id = dict(zip(new.ids.tolist(), clusters, strict=True))
        return [by_id.get(i) for i in ids], links

    def _alert_links(self, new: Places, now: int) -> list[tuple[int, Link]]:
        """Links of new reports to alerts about a placed device near them, alive within the window."""
        w = self.window_ms
        found, _ = self._alerts.query(
            AlertQuery(
                since_ms=int(new.at_ms.min()) - w,
                until_ms=int(new.at_ms.max()) + w + 1,
                limit=MAX_LINKED_ALERTS,
            )
        )
        found = [
            a for a in found if a.device is not None and not a.source.startswith(SOURCE_PREFIX)
        ]
        if not found:
            return []
        sensors = self._sensors()
        row_of = {str(d): i for i, d in enumerate(sensors.ids.tolist()) if d}
        rows = np.array([row_of.get(str(a.device), -1) for a in found], dtype=np.intp)
        placed = rows >= 0
        if not placed.any():
            return []
        alerts = [a for a, p in zip(found, placed.tolist(), strict=True) if p]
        places = Places(
            np.array([a.id for a in alerts], dtype=np.int64),
            sensors.lat[rows[placed]],
            sensors.lon[rows[placed]],
            np.array([a.first_ms for a in alerts], dtype=np.int64),
        )
        ends = np.array(
            [a.cleared_ms or a.closed_ms or (now if a.firing else a.last_ms) for a in alerts],
            dtype=np.int64,
        )
        pairs = near(new, places, radius_m=self.settings.radius_m, window_ms=None)
        t = new.at_ms[pairs.left]
        gap = np.maximum.reduce([places.at_ms[pairs.right] - t, t - ends[pairs.right], 0 * t])
        keep = gap <= w
        return [
            (int(x), Link("alert", int(y), float(d), float(s) / 1000.0))
            for x, y, d, s in zip(
                new.ids[pairs.left][keep].tolist(),
                places.ids[pairs.right][keep].tolist(),
                pairs.distance_m[keep].tolist(),
                pairs.dt_ms[keep].tolist(),
                strict=True,
            )
        ]

    # -- correlation ------------------------------------------------------------------------------

    def decide(self, cluster_id: int, now: int, alerts: Sequence[Alert]) -> list[ConditionEvent]:
        """The condition events a cluster calls for now (firing, switching or clearing its alert).

        ``alerts``: the active alerts now (read once for all clusters decided together).
        """
        members = self.store.members(cluster_id, since_ms=0)
        source = f"{SOURCE_PREFIX}{cluster_id}"
        active = {
            a.rule: a
            for a in alerts
            if a.source == source and a.firing and a.rule in (CONFIRM_RULE, QUIET_RULE)
        }
        if not members:
            return [self._cleared(a, now, "its reports are gone") for a in active.values()]
        newest = max(m.at_ms for m in members)
        w = self.window_ms
        if newest < now - w:
            why = f"no new report within {self.settings.window_s / 60:g} min"
            return [self._cleared(a, now, why) for a in active.values()]
        recent = [m for m in members if m.at_ms >= newest - w and m.placed]
        if len(recent) < self.settings.cluster_min:
            return []
        verdict = self._verdict(recent, alerts)
        if verdict is None:
            why = "no sensor of the reports' category stands near them any more"
            return [self._cleared(a, now, why) for a in active.values()]
        rule, level, device, summary = verdict
        events = [
            self._cleared(a, now, "the sensors' picture changed")
            for r, a in active.items()
            if r != rule
        ]
        held = active.get(rule)
        if held is None or held.level != level or held.summary != summary:
            area = Counter(m.area for m in recent if m.area).most_common(1)
            events.append(
                ConditionEvent(
                    rule=rule,
                    source=source,
                    kind=KIND,
                    level=level,
                    firing=True,
                    at_ms=now,
                    summary=summary,
                    device=device,
                    area=area[0][0] if area else None,
                    value=float(len(recent)),
                )
            )
        return events

    def _verdict(
        self, recent: list[Report], alerts: Sequence[Alert]
    ) -> tuple[str, Level, str, str] | None:
        """``(rule, level, device, summary)`` for a cluster's recent reports, or None (no sensor)."""
        categories = sorted({m.category for m in recent})
        types = {t for c in categories for t in self.settings.categories.get(c, ())}
        if not types:
            return None
        sensors = self._sensors()
        mask = np.isin(sensors.type, list(types)) & np.isfinite(sensors.lat)
        rows = np.flatnonzero(mask)
        if not len(rows):
            return None
        places = Places(
            rows.astype(np.int64),
            sensors.lat[rows],
            sensors.lon[rows],
            np.zeros(len(rows), np.int64),
        )
        members = Places.of(
            [m.id for m in recent],
            [m.lat for m in recent],
            [m.lon for m in recent],
            [0] * len(recent),
        )
        pairs = near(members, places, radius_m=self.settings.radius_m, window_ms=None)
        if not len(pairs):
            return None
        # Nearest first: each sensor by its smallest distance to any of the reports.
        order = np.argsort(pairs.distance_m, kind="stable")
        _, first = np.unique(pairs.right[order], return_index=True)
        nearby = [str(sensors.ids[places.ids[j]]) for j in pairs.right[order][np.sort(first)]]
        what = f"{len(recent)} citizens' reports of {', '.join(categories)}"
        radius = f"within {self.settings.radius_m:g} m"
        # An offline sensor's alert is no alarm about the street: it backs "a sensor may be broken".
        alarms = [
            a
            for a in alerts
            if a.firing
            and a.device in nearby
            and a.kind != "offline"
            and not a.source.startswith(SOURCE_PREFIX)
        ]
        if alarms:
            top = max(alarms, key=lambda a: (a.level, -nearby.index(str(a.device))))
            summary = f"{what} {radius} confirm {top.rule} on {top.device} ({top.level.label})"
            return CONFIRM_RULE, top.level, str(top.device), summary
        shown = ", ".join(nearby[:5]) + (" ..." if len(nearby) > 5 else "")
        summary = (
            f"{what} {radius}, while {len(nearby)} sensor(s) there stay quiet ({shown}): "
            "a sensor may be broken"
        )
        return QUIET_RULE, Level.parse(self.settings.quiet_level), nearby[0], summary

    @staticmethod
    def _cleared(alert: Alert, now: int, why: str) -> ConditionEvent:
        return ConditionEvent(
            rule=alert.rule,
            source=alert.source,
            kind=KIND,
            level=alert.level,
            firing=False,
            at_ms=now,
            summary=f"{alert.summary.split(':')[0]}: cleared, {why}",
            device=alert.device,
            area=alert.area,
        )

    def tick(self) -> int:
        """Re-decide every cluster with a firing alert; returns how many events that made."""
        now = self._clock()
        clusters = sorted(
            {
                int(a.source.removeprefix(SOURCE_PREFIX))
                for a in self._alerts.active_alerts()
                if a.firing and a.source.startswith(SOURCE_PREFIX)
            }
        )
        with self._lock:
            alerts = self._alerts.active_alerts()
            events = [e for c in clusters for e in self.decide(c, now, alerts)]
        if events:
            self._emit(events)
        return len(events)

    def photo_path(self, report_id: int, photo: StoredPhoto) -> Path:
        """Where a report's photo file is."""
        return self.photos.root / str(report_id) / photo.name


def _clusters(
    new: Places,
    pool: Places,
    cluster_of: dict[int, int | None],
    a: NDArray[np.int64],
    b: NDArray[np.int64],
) -> list[int]:
    """The cluster each new report joins: connected components of the report links, vectorised.

    A component keeps the smallest cluster id its older reports already carry (the oldest cluster
    wins when a new report joins two); a component of new reports only is named after its smallest
    report id.
    """
    # scipy (~30 MB resident) is imported when reports first need clustering, not with the hub.
    from scipy.sparse import coo_matrix  # noqa: PLC0415
    from scipy.sparse.csgraph import connected_components  # noqa: PLC0415

    order = np.argsort(pool.ids)
    sorted_ids = pool.ids[order]
    row = order[np.searchsorted(sorted_ids, np.concatenate([a, b, new.ids]))]
    n_links = len(a)
    ra, rb, rnew = row[:n_links], row[n_links : 2 * n_links], row[2 * n_links :]
    graph = coo_matrix((np.ones(n_links, dtype=np.int8), (ra, rb)), shape=(len(pool), len(pool)))
    n, label = connected_components(graph, directed=False)
    big = np.iinfo(np.int64).max
    known = np.array(
        [c if c is not None else big for c in map(cluster_of.get, pool.ids.tolist())],
        dtype=np.int64,
    )
    least_known = np.full(n, big, dtype=np.int64)
    np.minimum.at(least_known, label, known)
    least_id = np.full(n, big, dtype=np.int64)
    np.minimum.at(least_id, label, pool.ids)
    chosen = np.where(least_known < big, least_known, least_id)
    return [int(c) for c in chosen[label[rnew]].tolist()]
