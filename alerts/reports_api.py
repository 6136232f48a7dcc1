"""HTTP routes of figures: incidents and response times per area and period, and roll-ups along the area tree.

``GET /api/v1/statistics/incidents`` gives, for the incidents opened in a period, counts and the
minutes to register, dispatch, arrive and close, per area at a chosen depth.
``GET /api/v1/areas/rollup`` gives the live picture of an area's children: devices, active alerts
by level, open incidents by state, overdue steps, warnings in force, units by status. Staff only,
within their own area.
"""

from __future__ import annotations

from dataclasses import asdict
from datetime import datetime, timedelta
from typing import Annotated, Any

from fastapi import APIRouter, Query

from alerts.errors import InvalidAlertRequestError, ResponseNotFoundError
from alerts.incident_api import ResponseDep
from alerts.incident_records import IncidentQuery
from alerts.report_period import period_report
from alerts.response_views import at, ms_of
from alerts.rollup import Part, rollup
from devices.access import StaffOnly

# Under /statistics: /api/v1/reports is the citizens' reports' (alerts/citizen_reports_api.py).
router = APIRouter(prefix="/api/v1/statistics", tags=["statistics"])
rollup_router = APIRouter(prefix="/api/v1/areas", tags=["areas"])

MAX_PERIOD = timedelta(days=400)


@router.get("/incidents", summary="Incidents and times to respond per area, for a period")
def incident_figures(
    principal: StaffOnly,
    service: ResponseDep,
    since: Annotated[datetime, Query(description="Start of the period (opened at or after)")],
    until: Annotated[datetime | None, Query(description="End of the period; default: now")] = None,
    depth: Annotated[int, Query(ge=1, le=6, description="Area path depth to group by")] = 2,
    area: Annotated[str | None, Query(max_length=300, description="Only within this area")] = None,
) -> dict[str, Any]:
    """Figures per area for the incidents opened in the period.

    Opened, closed, dismissed, open at the end, overdue steps, escalated, by level and type, and
    minutes from opening to each step (count, mean, median, p90).
    """
    since_ms = ms_of(since)
    until_ms = ms_of(until) if until else service.warnings.now_ms()
    if not 0 < until_ms - since_ms <= MAX_PERIOD.total_seconds() * 1000:
        msg = f"the period must end after it starts and span at most {MAX_PERIOD.days} days"
        raise InvalidAlertRequestError(msg)
    within = service.scope(principal)
    if area is not None:
        asked = service.tree.covers(area.strip("/"))
        within = asked if within is None or any(service.sees(principal, a) for a in asked) else ()
    found, _ = service.incidents.query(
        IncidentQuery(within=within, opened_since_ms=since_ms, until_ms=until_ms, limit=1_000_000)
    )
    report = period_report(
        found,
        service.incidents.overdue_counts([i.id for i in found]),
        since_ms=since_ms,
        until_ms=until_ms,
        depth=depth,
    )
    out = asdict(report)
    out["since"], out["until"] = at(since_ms), at(until_ms)
    return out


@rollup_router.get("/rollup", summary="An area's children: devices, alerts, incidents, warnings")
def area_rollup(
    principal: StaffOnly,
    service: ResponseDep,
    area: Annotated[
        str | None, Query(max_length=300, description="Default: your area, or the tree's roots")
    ] = None,
) -> dict[str, Any]:
    """Counts per child area of ``area`` (live): what the situation screen's area list shows."""
    tree = service.tree
    area = area.strip("/") if area else principal.area
    if area is not None and not service.sees(principal, area):
        raise ResponseNotFoundError(kind="area", key=area)
    if area is None:
        children = [a.path for a in tree.areas() if a.parent is None]
    else:
        children = [c.path for c in tree.children(area)]
    parts = [Part(c, tree.covers(c)) for c in children]
    now = service.warnings.now_ms()
    figures = service.db.read(lambda conn: rollup(conn, parts, now))
    # The whole area apart: each path goes to one part only, and the area's own objects (a
    # warning for the district itself) belong to none of its children.
    whole = [Part(area, tree.covers(area))] if area is not None else []
    total = service.db.read(lambda conn: rollup(conn, whole, now)) if whole else []
    rows = []
    for f in [*figures, *total]:
        known = tree.find(f.area)
        row = asdict(f)
        row["name"] = known.name if known else ""
        row["name_zh"] = known.name_zh if known else ""
        row["level"] = known.level.label if known else None
        rows.append(row)
    return {"area": area, "children": rows[: len(figures)], "total": rows[-1] if total else None}
