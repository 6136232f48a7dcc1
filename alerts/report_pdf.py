"""An incident's record as PDF, with ReportLab (pure Python, from PyPI, no system libraries).

Why ReportLab: WeasyPrint would reuse the HTML, but needs Pango and fonts from the system; fpdf2 is
pure Python too, but writes Chinese only with a TTF font file, which the hub would have to ship
(~10 MB for a CJK font). ReportLab has Adobe's CID fonts built in (``STSong-Light`` for simplified
Chinese): the PDF names the font and the viewer supplies the glyphs, so area and street names in
Chinese need no font file at all. Charts are drawn as vector lines from the same scaled points as
the HTML's SVG (`alerts.reports.chart_points`).
"""

from __future__ import annotations

import io
from collections.abc import Sequence
from datetime import UTC, datetime, tzinfo
from xml.sax.saxutils import escape

from reportlab.graphics.shapes import Drawing, Line, PolyLine, Rect, String
from reportlab.lib import colors
from reportlab.lib.pagesizes import A4
from reportlab.lib.styles import ParagraphStyle, getSampleStyleSheet
from reportlab.lib.units import mm
from reportlab.lib.utils import ImageReader
from reportlab.pdfbase import pdfmetrics
from reportlab.pdfbase.cidfonts import UnicodeCIDFont
from reportlab.platypus import (
    Flowable,
    Image,
    Paragraph,
    SimpleDocTemplate,
    Spacer,
    Table,
    TableStyle,
)

from alerts.reports import IncidentRecord, Series, chart_points

CJK_FONT = "STSong-Light"
pdfmetrics.registerFont(UnicodeCIDFont(CJK_FONT))

_styles = getSampleStyleSheet()
_BODY = ParagraphStyle(
    "body", parent=_styles["BodyText"], fontName=CJK_FONT, fontSize=8.5, leading=11, wordWrap="CJK"
)
_H1 = ParagraphStyle("h1", parent=_styles["Heading1"], fontName=CJK_FONT, fontSize=15, leading=19)
_H2 = ParagraphStyle("h2", parent=_styles["Heading2"], fontName=CJK_FONT, fontSize=11.5, leading=15)
_GRID = TableStyle(
    [
        ("GRID", (0, 0), (-1, -1), 0.4, colors.grey),
        ("BACKGROUND", (0, 0), (-1, 0), colors.whitesmoke),
        ("VALIGN", (0, 0), (-1, -1), "TOP"),
    ]
)


def _t(ms: int | None, tz: tzinfo) -> str:
    return "" if ms is None else datetime.fromtimestamp(ms / 1000, tz=tz).strftime("%m-%d %H:%M:%S")


def _p(text: object) -> Paragraph:
    return Paragraph(escape(str(text)), _BODY)


def _table(
    header: list[str] | None, rows: Sequence[Sequence[object]], widths: list[float]
) -> Table:
    data = ([[_p(h) for h in header]] if header else []) + [[_p(c) for c in row] for row in rows]
    table = Table(data, colWidths=[w * mm for w in widths], repeatRows=1 if header else 0)
    style = _GRID if header else TableStyle(_GRID.getCommands()[:1] + _GRID.getCommands()[2:])
    table.setStyle(style)
    return table


def _chart(s: Series, t0: int, t1: int, tz: tzinfo, opened_ms: int) -> Drawing:
    w, h, left, bottom = 150 * mm, 38 * mm, 16 * mm, 10 * mm
    d = Drawing(w + left + 4 * mm, h + bottom + 6 * mm)
    frame = Rect(left, bottom, w, h)
    frame.fillColor, frame.strokeColor = colors.HexColor("#fafafa"), colors.grey
    d.add(frame)
    pts, lo, hi = chart_points(s, w, h, t0, t1)
    if len(pts):
        flat: list[float] = []
        for x, y in pts.tolist():
            flat += [left + x, bottom + h - y]  # the points are y-down; PDF is y-up
        d.add(PolyLine(flat, strokeColor=colors.HexColor("#1f5fbf"), strokeWidth=1))
        d.add(String(left - 2, bottom + h - 8, f"{hi:.3g}", fontSize=7, textAnchor="end"))
        d.add(String(left - 2, bottom, f"{lo:.3g}", fontSize=7, textAnchor="end"))
    if t0 <= opened_ms <= t1:
        mx = left + (opened_ms - t0) / max(t1 - t0, 1) * w
        d.add(Line(mx, bottom, mx, bottom + h, strokeColor=colors.red, strokeDashArray=[3, 2]))
    d.add(String(left, bottom - 8, _t(t0, tz), fontSize=7))
    d.add(String(left + w, bottom - 8, _t(t1, tz), fontSize=7, textAnchor="end"))
    d.add(
        String(
            left + w / 2,
            bottom + h + 2,
            f"{s.device} {s.metric} ({s.unit})",
            fontSize=8,
            textAnchor="middle",
        )
    )
    return d


def _picture(data: bytes, caption: str) -> list[Flowable]:
    reader = ImageReader(io.BytesIO(data))
    iw, ih = reader.getSize()
    width = 70 * mm
    return [Image(io.BytesIO(data), width=width, height=width * ih / max(iw, 1)), _p(caption)]


def pdf_report(r: IncidentRecord, tz: tzinfo = UTC) -> bytes:
    """The record as an A4 PDF document."""
    i = r.incident
    story: list[Flowable] = [Paragraph(escape(f"Incident {i.id}: {i.title}"), _H1)]
    facts = [
        ["Type / level", f"{i.type} / {i.level.label}"],
        ["Area", f"{i.area} {r.area_name}".strip()],
        ["Handled by", i.owner + (f" (escalated {i.escalations}x)" if i.escalations else "")],
        ["State", i.state.value + (f" ({i.outcome})" if i.outcome else "")],
        ["Opened", f"{_t(i.opened_ms, tz)} by {i.opened_by}"],
        ["Registered / dispatched", f"{_t(i.registered_ms, tz)} / {_t(i.dispatched_ms, tz)}"],
        [
            "Arrived / verified / closed",
            f"{_t(i.arrived_ms, tz)} / {_t(i.verified_ms, tz)} / {_t(i.closed_ms, tz)}",
        ],
    ]
    story.append(_table(None, facts, [45, 125]))
    if i.description:
        story += [Spacer(1, 3 * mm), _p(i.description)]
    story.append(Paragraph("Timeline", _H2))
    story.append(
        _table(
            ["Time", "Who", "Action", "State", "About", "Note"],
            [
                [
                    _t(h.at_ms, tz),
                    h.actor,
                    h.action.value,
                    f"{h.from_state.value if h.from_state else ''} > {h.to_state.value}",
                    h.target or "",
                    h.note + (f" (photos {', '.join(map(str, h.photos))})" if h.photos else ""),
                ]
                for h in r.history
            ],
            [24, 20, 18, 34, 24, 50],
        )
    )
    if r.dispatches:
        story.append(Paragraph("Units", _H2))
        story.append(
            _table(
                ["Unit", "Instructions", "Status", "Sent", "Arrived", "Completed"],
                [
                    [
                        d.unit_id + (f" {u.name}" if (u := r.units.get(d.unit_id)) else ""),
                        d.instructions,
                        d.status,
                        _t(d.dispatched_ms, tz),
                        _t(d.arrived_ms, tz),
                        _t(d.completed_ms, tz),
                    ]
                    for d in r.dispatches
                ],
                [34, 52, 18, 22, 22, 22],
            )
        )
    if r.alerts:
        story.append(Paragraph("Alerts", _H2))
        story.append(
            _table(
                ["Alert", "Level", "Rule", "Raised", "Summary"],
                [[a.id, a.level.label, a.rule, _t(a.first_ms, tz), a.summary] for a in r.alerts],
                [12, 14, 34, 24, 86],
            )
        )
    with_data = [s for s in r.series if len(s.ts)]
    if with_data:
        story.append(Paragraph("Readings", _H2))
        t0 = min(int(s.ts[0]) for s in with_data)
        t1 = max([i.closed_ms or r.generated_ms, *(int(s.ts[-1]) for s in with_data)])
        story += [_chart(s, t0, t1, tz, i.opened_ms) for s in with_data]
    if r.snapshots:
        story.append(Paragraph("Cameras nearby", _H2))
        for s in r.snapshots:
            story += _picture(s.jpeg, f"{s.camera} {_t(s.at_ms, tz)}")
    if r.photos:
        story.append(Paragraph("Photos from the units", _H2))
        for p, data in r.photos:
            story += _picture(data, f"{p.unit_id or p.actor} {_t(p.at_ms, tz)} {p.caption}")
    story += [_p(note) for note in r.notes]
    story.append(Spacer(1, 4 * mm))
    story.append(_p(f"Generated {_t(r.generated_ms, tz)}"))
    out = io.BytesIO()
    doc = SimpleDocTemplate(
        out,
        pagesize=A4,
        leftMargin=15 * mm,
        rightMargin=15 * mm,
        topMargin=15 * mm,
        bottomMargin=15 * mm,
        title=f"Incident {i.id}",
        author="city hub",
    )
    doc.build(story)
    return out.getvalue()
