"""An incident's record (结案报告): what happened, who did what when, the alerts, readings, pictures; as HTML.

`gather` collects the record: the incident and its history, its dispatches and units, the alerts it
was opened from, the readings of their devices around it (from a `ReadingsSource`: the same store
the readings API reads), camera snapshots near it (from a `SnapshotSource`, when the hub has video)
and the units' photos. `html_report` renders it as one self-contained page: charts are inline SVG,
pictures are data URIs, so the file can be mailed or archived as it is. `alerts.report_pdf` renders
the same record as PDF.
"""

from __future__ import annotations

import base64
import html
from collections.abc import Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime, tzinfo
from typing import Protocol

import numpy as np
from numpy.typing import NDArray

from alerts.incident_records import Dispatch, Photo
from alerts.incidents import Incident, IncidentEntry
from alerts.lifecycle import Alert
from alerts.photos import PhotoStore
from alerts.units import Unit

MAX_POINTS = 400
"""Points per chart line: more than a page can show; longer series are cut to min/max per bucket."""


@dataclass(frozen=True, slots=True)
class Series:
    """One metric of one device over time (epoch ms, values in the metric's unit)."""

    device: str
    metric: str
    unit: str
    ts: NDArray[np.int64]
    value: NDArray[np.float64]


@dataclass(frozen=True, slots=True)
class Snapshot:
    """A camera picture near the incident."""

    camera: str
    at_ms: int
    jpeg: bytes
    distance_m: float | None = None


class ReadingsSource(Protocol):
    """Stored readings (the hub hands in its time-series store)."""

    def series(self, device: str, metric: str, start_ms: int, end_ms: int) -> Series | None:
        """The readings of ``device``'s ``metric`` in ``[start_ms, end_ms)``; None if unknown."""
        ...


class SnapshotSource(Protocol):
    """Camera pictures (the hub hands in the video package's, when it has cameras)."""

    def near(self, lat: float, lon: float, k: int) -> list[Snapshot]:
        """The newest pictures of up to ``k`` working cameras nearest the point."""
        ...


@dataclass(frozen=True, slots=True)
class IncidentRecord:
    """Everything the report of one incident shows."""

    incident: Incident
    history: list[IncidentEntry]
    dispatches: list[Dispatch]
    units: dict[str, Unit]
    alerts: list[Alert]
    series: list[Series]
    snapshots: list[Snapshot]
    photos: list[tuple[Photo, bytes]]
    generated_ms: int
    area_name: str = ""
    notes: list[str] = field(default_factory=list)


def decimate(
    ts: NDArray[np.int64], value: NDArray[np.float64], max_points: int = MAX_POINTS
) -> tuple[NDArray[np.int64], NDArray[np.float64]]:
    """At most ``max_points`` points keeping each bucket's minimum and maximum (peaks survive)."""
    n = len(ts)
    if n <= max_points:
        return ts, value
    buckets = max_points // 2
    edges = np.linspace(0, n, buckets + 1).astype(np.int64)
    idx = np.arange(n)
    bucket = np.searchsorted(edges, idx, side="right") - 1
    v = np.where(np.isnan(value), np.inf, value)
    lo = np.full(buckets, -1, dtype=np.int64)
    order = np.lexsort((v, bucket))  # by bucket, then value: the first of a bucket is its min
    first = np.ones(n, dtype=np.bool_)
    first[1:] = bucket[order][1:] != bucket[order][:-1]
    lo[bucket[order][first]] = order[first]
    v2 = np.where(np.isnan(value), -np.inf, value)
    order = np.lexsort((-v2, bucket))
    hi = np.full(buckets, -1, dtype=np.int64)
    hi[bucket[order][first]] = order[first]
    keep = np.unique(np.concatenate([lo[lo >= 0], hi[hi >= 0]]))
    return ts[keep], value[keep]


def chart_points(
    s: Series, width: float, height: float, t0: int, t1: int
) -> tuple[NDArray[np.float64], float, float]:
    """The series as (x, y) in a ``width`` x ``height`` box (y down), and its value range.

    Shared by the SVG and the PDF charts: one scaling, vectorised.
    """
    ts, value = decimate(s.ts, s.value)
    ok = np.isfinite(value)
    ts, value = ts[ok], value[ok]
    if len(value) == 0:
        return np.empty((0, 2)), 0.0, 0.0
    lo, hi = float(value.min()), float(value.max())
    span = hi - lo or max(abs(hi), 1.0) * 0.1
    lo, hi = lo - span * 0.05, hi + span * 0.05
    x = (ts - t0) / max(t1 - t0, 1) * width
    y = height - (value - lo) / (hi - lo) * height
    return np.column_stack([x, y]), lo, hi


def _time(ms: int | None, tz: tzinfo, fmt: str = "%Y-%m-%d %H:%M:%S") -> str:
    if ms is None:
        return ""
    return datetime.fromtimestamp(ms / 1000, tz=tz).strftime(fmt)


def svg_chart(s: Series, t0: int, t1: int, tz: tzinfo, *, marker_ms: int | None = None) -> str:
    """An inline SVG line chart of ``s`` over ``[t0, t1]`` (with a line where the incident opened)."""
    w, h, left, top = 560.0, 160.0, 56.0, 12.0
    pts, lo, hi = chart_points(s, w, h, t0, t1)
    e = html.escape
    parts = [
        f'<svg xmlns="http://www.w3.org/2000/svg" class="chart" viewBox="0 0 {w + left + 12:.0f} '
        f'{h + top + 34:.0f}" role="img" aria-label="{e(s.device)} {e(s.metric)}">',
        f'<rect x="{left}" y="{top}" width="{w}" height="{h}" fill="#fafafa" stroke="#999"/>',
    ]
    if len(pts):
        coords = " ".join(f"{x + left:.1f},{y + top:.1f}" for x, y in pts.tolist())
        parts.append(
            f'<polyline fill="none" stroke="#1f5fbf" stroke-width="1.5" points="{coords}"/>'
        )
        for v, y in ((hi, top + 10), (lo, top + h)):
            parts.append(f'<text x="{left - 4}" y="{y:.0f}" text-anchor="end">{v:.3g}</text>')
    else:
        parts.append(
            f'<text x="{left + w / 2}" y="{top + h / 2}" text-anchor="middle">no readings</text>'
        )
    if marker_ms is not None and t0 <= marker_ms <= t1:
        mx = left + (marker_ms - t0) / max(t1 - t0, 1) * w
        parts.append(
            f'<line x1="{mx:.1f}" y1="{top}" x2="{mx:.1f}" y2="{top + h}" stroke="#c00" '
            'stroke-dasharray="4 3"/>'
        )
    for ms, anchor, x in ((t0, "start", left), (t1, "end", left + w)):
        parts.append(
            f'<text x="{x}" y="{top + h + 16}" text-anchor="{anchor}">{_time(ms, tz, "%m-%d %H:%M")}</text>'
        )
    label = f"{s.device} {s.metric} ({s.unit})"
    parts.append(
        f'<text x="{left + w / 2}" y="{top + h + 30}" text-anchor="middle">{e(label)}</text>'
    )
    parts.append("</svg>")
    return "".join(parts)


def gather(
    incident: Incident,
    history: list[IncidentEntry],
    dispatches: list[Dispatch],
    units: dict[str, Unit],
    alerts: list[Alert],
    photos: Sequence[Photo],
    photo_store: PhotoStore,
    *,
    readings: ReadingsSource | None,
    snapshots: SnapshotSource | None,
    readings_before_ms: int,
    cameras: int,
    now_ms: int,
    area_name: str = "",
) -> IncidentRecord:
    """Collect an incident's record from its parts and the readings and snapshot sources."""
    start = min([incident.opened_ms, *(a.first_ms for a in alerts)]) - readings_before_ms
    end = incident.closed_ms or now_ms
    series: list[Series] = []
    notes: list[str] = []
    if readings is not None:
        seen = set()
        for a in alerts:
            if a.device and a.metric and (a.device, a.metric) not in seen:
                seen.add((a.device, a.metric))
                s = readings.series(a.device, a.metric, start, end + 1)
                if s is not None:
                    series.append(s)
    shots: list[Snapshot] = []
    if snapshots is not None and cameras and incident.lat is not None and incident.lon is not None:
        try:
            shots = snapshots.near(incident.lat, incident.lon, cameras)
        except Exception as exc:  # a report without pictures beats no report
            notes.append(f"camera snapshots unavailable: {exc}")
    kept = []
    for p in photos:
        data = photo_store.read(p)
        if data is None:
            notes.append(f"photo {p.id} is missing from the photo store")
        else:
            kept.append((p, data))
    return IncidentRecord(
        incident=incident,
        history=history,
        dispatches=dispatches,
        units=units,
        alerts=alerts,
        series=series,
        snapshots=shots,
        photos=kept,
        generated_ms=now_ms,
        area_name=area_name,
        notes=notes,
    )


def _minutes(a: int | None, b: int | None) -> str:
    if a is None or b is None:
        return ""
    return f"{(b - a) / 60_000:.1f} min"


_CSS = """
body{font-family:"Noto Sans CJK SC","Microsoft YaHei",sans-serif;margin:2em;color:#222}
h1{font-size:1.4em}h2{font-size:1.1em;border-bottom:1px solid #ccc;margin-top:1.6em}
table{border-collapse:collapse;width:100%;font-size:.9em}td,th{border:1px solid #ddd;padding:3px 6px;
text-align:left;vertical-align:top}th{background:#f3f3f3}.chart{width:100%;max-width:640px}
.chart text{font-size:10px}.pics img{max-width:300px;margin:4px;border:1px solid #ccc}
.level-red{color:#c00}.level-orange{color:#e67e00}.level-yellow{color:#b8a000}.level-blue{color:#06c}
"""


def html_report(r: IncidentRecord, tz: tzinfo = UTC) -> str:
    """The record as one self-contained HTML page."""
    i, e = r.incident, html.escape
    rows = [
        ("Incident", f"#{i.id} {i.title}"),
        ("Type / level", f"{i.type} / {i.level.label}"),
        ("Area", f"{i.area} {r.area_name}".strip()),
        ("Handled by", i.owner + (f" (escalated {i.escalations}x)" if i.escalations else "")),
        ("Place", f"{i.lat:.5f}, {i.lon:.5f}" if i.lat is not None and i.lon is not None else ""),
        ("State", i.state.value + (f" ({i.outcome})" if i.outcome else "")),
        ("Opened", f"{_time(i.opened_ms, tz)} by {i.opened_by}"),
        ("To register", _minutes(i.opened_ms, i.registered_ms)),
        ("To dispatch", _minutes(i.opened_ms, i.dispatched_ms)),
        ("To arrive", _minutes(i.opened_ms, i.arrived_ms)),
        ("To close", _minutes(i.opened_ms, i.closed_ms)),
    ]
    out = [
        "<!doctype html><html lang='zh'><head><meta charset='utf-8'>",
        f"<title>Incident {i.id}: {e(i.title)}</title><style>{_CSS}</style></head><body>",
        f"<h1 class='level-{i.level.label}'>Incident {i.id}: {e(i.title)}</h1>",
        "<table>",
        *(f"<tr><th>{e(k)}</th><td>{e(v)}</td></tr>" for k, v in rows),
        "</table>",
    ]
    if i.description:
        out.append(f"<p>{e(i.description)}</p>")
    out += [
        "<h2>Timeline</h2><table><tr><th>Time</th><th>Who</th><th>Action</th><th>State</th>"
        "<th>About</th><th>Note</th></tr>"
    ]
    for h in r.history:
        state = f"{h.from_state.value if h.from_state else ''} → {h.to_state.value}"
        photos = f" (photos {', '.join(map(str, h.photos))})" if h.photos else ""
        out.append(
            f"<tr><td>{_time(h.at_ms, tz)}</td><td>{e(h.actor)}</td><td>{e(h.action.value)}</td>"
            f"<td>{e(state)}</td><td>{e(h.target or '')}</td><td>{e(h.note)}{photos}</td></tr>"
        )
    out.append("</table>")
    out += [
        "<h2>Units</h2><table><tr><th>Unit</th><th>Instructions</th><th>Status</th>"
        "<th>Sent</th><th>Arrived</th><th>Completed</th></tr>"
    ]
    for d in r.dispatches:
        unit = r.units.get(d.unit_id)
        name = f"{d.unit_id} {unit.name} ({unit.kind.value})" if unit else d.unit_id
        out.append(
            f"<tr><td>{e(name)}</td><td>{e(d.instructions)}</td><td>{e(d.status)}</td>"
            f"<td>{_time(d.dispatched_ms, tz)}</td><td>{_time(d.arrived_ms, tz)}</td>"
            f"<td>{_time(d.completed_ms, tz)}</td></tr>"
        )
    out.append("</table>")
    out += [
        "<h2>Alerts</h2><table><tr><th>Alert</th><th>Level</th><th>Rule</th><th>Raised</th>"
        "<th>State</th><th>Summary</th></tr>"
    ]
    for a in r.alerts:
        out.append(
            f"<tr><td>{a.id}</td><td class='level-{a.level.label}'>{a.level.label}</td>"
            f"<td>{e(a.rule)}</td><td>{_time(a.first_ms, tz)}</td><td>{a.state.value}</td>"
            f"<td>{e(a.summary)}</td></tr>"
        )
    out.append("</table>")
    if r.series:
        out.append("<h2>Readings</h2>")
        t0 = (
            min(int(s.ts[0]) for s in r.series if len(s.ts))
            if any(len(s.ts) for s in r.series)
            else i.opened_ms
        )
        t1 = max(
            [
                r.incident.closed_ms or r.generated_ms,
                *(int(s.ts[-1]) for s in r.series if len(s.ts)),
            ]
        )
        out += [svg_chart(s, t0, t1, tz, marker_ms=i.opened_ms) for s in r.series]
    if r.snapshots:
        out.append("<h2>Cameras nearby</h2><div class='pics'>")
        out += [
            f"<figure><img alt='{e(s.camera)}' src='data:image/jpeg;base64,"
            f"{base64.b64encode(s.jpeg).decode()}'><figcaption>{e(s.camera)} "
            f"{_time(s.at_ms, tz)}</figcaption></figure>"
            for s in r.snapshots
        ]
        out.append("</div>")
    if r.photos:
        out.append("<h2>Photos from the units</h2><div class='pics'>")
        out += [
            f"<figure><img alt='photo {p.id}' src='data:{p.content_type};base64,"
            f"{base64.b64encode(data).decode()}'><figcaption>{e(p.unit_id or p.actor)} "
            f"{_time(p.at_ms, tz)} {e(p.caption)}</figcaption></figure>"
            for p, data in r.photos
        ]
        out.append("</div>")
    for note in r.notes:
        out.append(f"<p><em>{e(note)}</em></p>")
    out.append(f"<p><small>Generated {_time(r.generated_ms, tz)}</small></p></body></html>")
    return "\n".join(out)
