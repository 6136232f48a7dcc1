"""Citizens' reports on the situation feed: the recent ones in snapshots, each new one as a change.

`FeedReports` queues new reports (the report service calls it on the submitting thread) and turns
them into ``reports`` entries at the feed's next tick; `FeedWithReports` adds them to the response's
part of the feed (`hub.feed_response.FeedResponse`), so they travel with incidents, units and
warnings: the same ticks, the same stream filters, never coalesced. Reports are casework: staff see
them (an area-bound account within its area), vendors' streams do not.

A delta entry is ``{"action": "reported", "at": <iso>, "report": <the API's ReportView>}``; the
snapshot carries ``"reports": [<ReportView>, ...]``, placed reports of the past ``feed_hours``.
"""

from __future__ import annotations

import threading
from collections.abc import Callable, Sequence

from alerts.citizen_records import Report, ReportQuery
from alerts.citizen_reports import CitizenReports
from alerts.citizen_reports_api import feed_item
from alerts.response import ResponseService
from hub.feed_frames import Filter
from hub.feed_response import Change, Changes, FeedResponse, Item, Sight

MAX_SNAPSHOT_REPORTS = 2000
KEY = "reports"


class FeedReports:
    """New reports waiting for the feed's next tick, and the recent ones for snapshots."""

    def __init__(self, service: CitizenReports) -> None:
        """Follow ``service`` once attached."""
        self._service = service
        self._lock = threading.Lock()
        self._pending: list[Report] = []

    def attach(self, wake: Callable[[], None]) -> Callable[[], None]:
        """Queue each new report and call ``wake``; returns the unsubscriber."""

        def on_report(report: Report) -> None:
            with self._lock:
                self._pending.append(report)
            wake()

        return self._service.subscribe(on_report)

    @property
    def pending(self) -> bool:
        """Whether reports wait for the next tick."""
        return bool(self._pending)

    def prepare(self) -> list[Change]:
        """The waiting reports as feed changes (placed ones only: the feed is the map's)."""
        with self._lock:
            reports, self._pending = self._pending, []
        out = []
        for r in reports:
            if r.placed:
                item = feed_item(r)
                entry = {"action": "reported", "at": item["received_at"], "report": item}
                out.append(Change(KEY, r.area or "", entry))
        return out

    def snapshot(self, sight: Sight) -> list[Item]:
        """Placed reports of the past ``feed_hours`` that a stream of ``sight`` shows, newest first."""
        if not sight.casework:
            return []
        since = self._service.now_ms() - int(self._service.settings.feed_hours * 3_600_000)
        found, _ = self._service.store.query(
            ReportQuery(
                since_ms=since,
                within=sight.filter_scope,
                placed=True,
                limit=MAX_SNAPSHOT_REPORTS,
            )
        )
        return [feed_item(r) for r in found if sight.sees(r.area or "")]


class FeedWithReports(FeedResponse):
    """The response's part of the feed with citizens' reports added (``reports`` entries)."""

    def __init__(self, service: ResponseService, reports: FeedReports) -> None:
        """Carry ``service``'s incidents, units and warnings, and ``reports``."""
        super().__init__(service)
        self._reports = reports

    def attach(self, wake: Callable[[], None]) -> Callable[[], None]:
        """Follow both; the unsubscriber stops both."""
        stop_response = super().attach(wake)
        stop_reports = self._reports.attach(wake)

        def stop() -> None:
            stop_response()
            stop_reports()

        return stop

    @property
    def pending(self) -> bool:
        """Whether response events or reports wait for the next tick."""
        return super().pending or self._reports.pending

    def prepare(self, filters: Sequence[Filter] = ()) -> Changes | None:
        """The response's changes, then the new reports (see `FeedResponse.prepare`)."""
        changes = super().prepare(filters)
        reports = self._reports.prepare()
        if not reports:
            return changes
        if changes is None:
            return Changes(reports, {f: self.sight(f) for f in filters}, self.sight)
        changes.items.extend(reports)
        return changes

    def snapshot(self, filt: Filter) -> dict[str, list[Item]]:
        """The response's snapshot parts and the recent reports."""
        out = super().snapshot(filt)
        out[KEY] = self._reports.snapshot(self.sight(filt))
        return out
