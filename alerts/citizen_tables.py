"""The citizens' report tables (registry database; created by migration 0002, see hub/migrations).

``citizen_reports`` holds what people reported; ``(source, external_id)`` is unique, so importing
the same hotline export twice adds each ticket once. ``citizen_report_links`` holds what each report
was linked to when it arrived (alerts and other reports near in space and time), with the distance
and the time apart, so the link stays explainable after the alert closed. ``cluster_id`` is the id of
the first report of the group a report joined (itself when it started one).
"""

from __future__ import annotations

import sqlalchemy as sa

metadata = sa.MetaData()

reports_table = sa.Table(
    "citizen_reports",
    metadata,
    sa.Column("id", sa.Integer, primary_key=True, autoincrement=True),
    sa.Column("source", sa.String(32), nullable=False),  # "12345", "grid_worker", ...
    sa.Column("external_id", sa.String(64), nullable=True),  # the hotline's ticket number
    sa.Column("category", sa.String(32), nullable=False, index=True),
    sa.Column("text", sa.Text, nullable=False),
    sa.Column("lat", sa.Float, nullable=True),
    sa.Column("lon", sa.Float, nullable=True),
    sa.Column("address", sa.String(300), nullable=False),
    sa.Column("area", sa.String(300), nullable=True, index=True),
    sa.Column("at_ms", sa.BigInteger, nullable=False, index=True),  # when it was seen/reported
    sa.Column("received_ms", sa.BigInteger, nullable=False),
    sa.Column("reporter", sa.String(64), nullable=False),  # the account that entered it
    sa.Column("cluster_id", sa.Integer, nullable=True, index=True),
    sa.UniqueConstraint("source", "external_id", name="uq_citizen_reports_source_external"),
)

report_photos_table = sa.Table(
    "citizen_report_photos",
    metadata,
    sa.Column("report_id", sa.Integer, sa.ForeignKey("citizen_reports.id"), primary_key=True),
    sa.Column("n", sa.SmallInteger, primary_key=True),
    sa.Column("content_type", sa.String(32), nullable=False),
    sa.Column("size", sa.Integer, nullable=False),
    sa.Column("sha256", sa.String(64), nullable=False),
    sa.Column("name", sa.String(100), nullable=False),
)

report_links_table = sa.Table(
    "citizen_report_links",
    metadata,
    sa.Column("report_id", sa.Integer, sa.ForeignKey("citizen_reports.id"), primary_key=True),
    sa.Column("kind", sa.String(8), primary_key=True),  # "alert" | "report"
    sa.Column("target", sa.Integer, primary_key=True),  # the alert's or the other report's id
    sa.Column("distance_m", sa.Float, nullable=False),
    sa.Column("dt_s", sa.Float, nullable=False),  # target's time minus the report's
)
sa.Index("ix_citizen_report_links_target", report_links_table.c.kind, report_links_table.c.target)
