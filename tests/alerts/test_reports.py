"""Incident records as HTML (inline SVG charts, data-URI pictures) and PDF, and the per-period figures."""

from __future__ import annotations

import base64
import re
import zlib
from datetime import UTC
from pathlib import Path

import cv2
import numpy as np
import pytest

from alerts.events import Level
from alerts.incident_records import Dispatch, Photo
from alerts.incidents import Incident, IncidentAction, IncidentEntry, IncidentState
from alerts.lifecycle import Alert, State
from alerts.photos import PhotoStore
from alerts.report_pdf import pdf_report
from alerts.report_period import period_report
from alerts.reports import (
    IncidentRecord,
    Series,
    Snapshot,
    chart_points,
    decimate,
    gather,
    html_report,
)
from alerts.units import Unit, UnitKind, UnitStatus

MIN = 60_000
T0 = 1_750_000_000_000
S = IncidentState


def _incident(i: int = 3, **kw: object) -> Incident:
    fields: dict[str, object] = {
        "id": i,
        "title": "滨江路 underpass flooded",
        "type": "waterlogging",
        "level": Level.RED,
        "state": S.CLOSED,
        "area": "demo/riverside/binjiang-rd",
        "owner": "demo/riverside",
        "opened_ms": T0,
        "state_ms": T0 + 60 * MIN,
        "updated_ms": T0 + 60 * MIN,
        "seq": 6,
        "opened_by": "officer",
        "lat": 30.26,
        "lon": 120.08,
        "escalations": 1,
        "registered_ms": T0 + 2 * MIN,
        "dispatched_ms": T0 + 4 * MIN,
        "arrived_ms": T0 + 14 * MIN,
        "verified_ms": T0 + 50 * MIN,
        "closed_ms": T0 + 60 * MIN,
        "outcome": "handled",
    }
    fields.update(kw)
    return Incident(**fields)  # type: ignore[arg-type]


def _jpeg(color: int) -> bytes:
    frame = np.full((48, 64, 3), color, dtype=np.uint8)
    ok, buf = cv2.imencode(".jpg", frame)
    assert ok
    return bytes(buf)


def pdf_text(pdf: bytes) -> str:
    """The text ReportLab wrote: its page streams are ASCII85 + Flate; a string shown in the CID
    font (``/Encoding /UniGB-UCS2-H``) is UCS-2, any other Latin-1."""
    cid = {m.group(1) for m in re.finditer(rb"/Encoding /UniGB-UCS2-H /Name /(F\d+)", pdf)}
    out = []
    for m in re.finditer(rb"stream\r?\n(.*?)endstream", pdf, re.S):
        raw = m.group(1).strip().removesuffix(b"~>")
        try:
            data = zlib.decompress(base64.a85decode(raw))
        except (ValueError, zlib.error):
            continue  # a picture
        font = b""
        for token in re.finditer(rb"/(F\d+) [\d.]+ Tf|\(((?:\\.|[^\\)])*)\) Tj", data, re.S):
            if token.group(1):
                font = token.group(1)
                continue
            text = re.sub(rb"\\([0-7]{1,3}|.)", lambda e: _unescape(e.group(1)), token.group(2))
            out.append(text.decode("utf-16-be" if font in cid else "latin-1"))
    return "\n".join(out)


def _unescape(code: bytes) -> bytes:
    if code.isdigit():
        return bytes([int(code, 8)])
    return {b"n": b"\n", b"r": b"\r", b"t": b"\t", b"b": b"\b", b"f": b"\f"}.get(code, code)


@pytest.fixture
def record(tmp_path: Path) -> IncidentRecord:
    photos = PhotoStore(tmp_path / "photos", max_bytes=1 << 20)
    kept = photos.save(3, _jpeg(90), "image/jpeg", "pump running")
    photo = Photo(
        1,
        3,
        T0 + 20 * MIN,
        "crew",
        "drain-1",
        kept.content_type,
        kept.size,
        kept.sha256,
        kept.name,
        kept.caption,
    )
    ts = np.arange(T0 - 60 * MIN, T0 + 60 * MIN, 10_000, dtype=np.int64)
    level = 3.0 + np.clip((ts - T0 + 30 * MIN) / (30 * MIN), 0, 1) * 3.0
    history = [
        IncidentEntry(
            3,
            1,
            T0,
            "officer",
            IncidentAction.OPEN,
            None,
            S.REPORTED,
            "from alerts",
            "11,12",
            "officer",
        ),
        IncidentEntry(
            3,
            2,
            T0 + 14 * MIN,
            "crew",
            IncidentAction.ARRIVE,
            S.DISPATCHED,
            S.IN_PROGRESS,
            "on site",
            "drain-1",
            "unit",
            (1,),
        ),
    ]
    dispatch = Dispatch(
        1,
        3,
        "drain-1",
        "pump out the underpass",
        "completed",
        T0 + 4 * MIN,
        "commander",
        T0 + 14 * MIN,
        T0 + 45 * MIN,
    )
    unit = Unit(
        "drain-1",
        "滨江排水抢险队",
        UnitKind.DRAINAGE,
        "demo/riverside",
        ("drainage",),
        UnitStatus.AVAILABLE,
        0,
    )

    class Readings:
        def series(self, device: str, metric: str, start_ms: int, end_ms: int) -> Series | None:
            keep = (ts >= start_ms) & (ts < end_ms)
            return Series(device, metric, "m", ts[keep], level[keep])

    class Cameras:
        def near(self, lat: float, lon: float, k: int) -> list[Snapshot]:
            return [Snapshot("cam-7", T0 + 5 * MIN, _jpeg(200), 120.0)][:k]

    alert = Alert(
        11,
        "water-level-high",
        "device:wl-1",
        "threshold",
        Level.RED,
        State.CLOSED,
        False,
        "wl-1 above red 6.0 m",
        T0 - MIN,
        T0,
        T0,
        5,
        T0,
        device="wl-1",
        area="demo/riverside/binjiang-rd/g0203",
        metric="water_level",
    )
    return gather(
        _incident(),
        history,
        [dispatch],
        {"drain-1": unit},
        [alert],
        [photo],
        photos,
        readings=Readings(),
        snapshots=Cameras(),
        readings_before_ms=60 * MIN,
        cameras=3,
        now_ms=T0 + 61 * MIN,
        area_name="Binjiang Road 滨江路",
    )


def test_html_report_is_self_contained(record: IncidentRecord) -> None:
    page = html_report(record, UTC)
    assert "Incident 3: 滨江路 underpass flooded" in page
    assert page.count("<svg") == 1
    assert "<polyline" in page
    assert "pump out the underpass" in page
    assert "滨江排水抢险队" in page
    assert "wl-1 above red 6.0 m" in page
    assert page.count("data:image/jpeg;base64,") == 2  # the camera snapshot and the unit's photo
    assert "To arrive</th><td>14.0 min" in page
    assert "src='http" not in page  # nothing to fetch: it can be mailed or archived as it is
    # The chart's line spans the readings: the last point at the right edge of the plot.
    xs = [float(p.split(",")[0]) for p in re.search(r'points="([^"]+)"', page).group(1).split()]  # type: ignore[union-attr]
    assert min(xs) == pytest.approx(56.0)
    assert max(xs) <= 56.0 + 560.0 + 0.1


def test_pdf_report_carries_the_same_record(record: IncidentRecord) -> None:
    pdf = pdf_report(record, UTC)
    assert pdf.startswith(b"%PDF-")
    assert pdf.rstrip().endswith(b"%%EOF")
    text = pdf_text(pdf)
    assert "Incident 3: 滨江路 underpass flooded" in text
    assert "pump out the underpass" in text
    assert "wl-1 water_level (m)" in text  # the chart's title
    assert pdf.count(b"/Subtype /Image") == 2


def test_decimate_keeps_the_peaks_and_chart_points_fit_the_box() -> None:
    ts = np.arange(100_000, dtype=np.int64)
    v = np.sin(ts / 700.0)
    v[54_321] = 9.0
    v[77_777] = -9.0
    t, x = decimate(ts, v, 400)
    assert len(t) <= 400
    assert x.max() == 9.0
    assert x.min() == -9.0
    assert np.all(np.diff(t) > 0)
    pts, lo, hi = chart_points(Series("d", "m", "u", ts, v), 500, 100, 0, 100_000)
    assert lo < -9.0 < 9.0 < hi
    assert pts[:, 0].min() >= 0
    assert pts[:, 0].max() <= 500
    assert pts[:, 1].min() >= 0
    assert pts[:, 1].max() <= 100


def test_period_figures_per_area() -> None:
    a = _incident(1)  # handled: register 2, dispatch 4, arrive 14, close 60 min
    b = _incident(
        2,
        area="demo/riverside/x",
        registered_ms=T0 + 4 * MIN,
        dispatched_ms=T0 + 10 * MIN,
        arrived_ms=None,
        verified_ms=None,
        closed_ms=None,
        outcome=None,
        state=S.DISPATCHED,
        escalations=0,
    )
    c = _incident(
        3,
        area="demo/oldtown/y",
        level=Level.YELLOW,
        type="fire",
        registered_ms=None,
        dispatched_ms=None,
        arrived_ms=None,
        verified_ms=None,
        closed_ms=T0 + 5 * MIN,
        outcome="dismissed",
        escalations=0,
    )
    late = _incident(4, opened_ms=T0 + 10 * 24 * 60 * MIN)  # after the period
    report = period_report(
        [a, b, c, late], {1: 2, 2: 1}, since_ms=T0, until_ms=T0 + 24 * 60 * MIN, depth=2
    )
    by = {f.area: f for f in report.areas}
    assert set(by) == {"demo/riverside", "demo/oldtown"}
    river = by["demo/riverside"]
    assert (
        river.opened,
        river.closed,
        river.open_at_end,
        river.overdue_steps,
        river.escalated,
    ) == (2, 1, 1, 3, 1)
    assert river.times["register"].count == 2
    assert river.times["register"].mean_min == pytest.approx(3.0)
    assert river.times["dispatch"].median_min == pytest.approx(7.0)
    assert river.times["arrive"].count == 1
    assert river.times["close"].mean_min == pytest.approx(60.0)
    old = by["demo/oldtown"]
    assert (old.dismissed, old.closed, old.by_type, old.by_level) == (
        1,
        0,
        {"fire": 1},
        {"yellow": 1},
    )
    assert old.times["close"].count == 0  # a dismissal is not a response
    assert report.total.opened == 3
