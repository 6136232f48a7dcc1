"""Settings of citizens' reports (settings section ``reports``): categories, linking, clusters, photos."""

from __future__ import annotations

from typing import Literal

from pydantic import BaseModel, ConfigDict, Field, model_validator

CONFIRM_RULE = "citizen-reports-confirm"
"""Reports cluster where sensors alarm: people on the street confirm what the sensors say."""
QUIET_RULE = "citizen-reports-sensors-quiet"
"""Reports cluster where the sensors of their category are quiet: a sensor may be broken."""
SOURCE_PREFIX = "report-cluster:"
"""Correlation alerts' source: ``report-cluster:<cluster id>`` (the cluster's first report)."""

DEFAULT_CATEGORIES: dict[str, tuple[str, ...]] = {
    # Device types whose alarms a report of the category confirms, and whose silence is suspect.
    "flooding": ("water_level", "rain_gauge", "manhole_cover"),
    "blocked_drain": ("water_level", "pipe_pressure", "manhole_cover"),
    "open_manhole": ("manhole_cover",),
    "gas_smell": ("combustible_gas",),
    "road_collapse": ("structure_movement", "pipe_pressure"),
    "other": (),
}


class CitizenReportSettings(BaseModel):
    """Citizens' reports: 12345 hotline tickets, grid workers' reports, and what they are linked to."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    categories: dict[str, tuple[str, ...]] = Field(
        default_factory=lambda: dict(DEFAULT_CATEGORIES),
        title="Report categories and the device types they concern",
        description="A report's category must be one of these. Its device types decide which "
        "sensors' alarms confirm a cluster of such reports and whose silence makes it suspect",
    )
    radius_m: float = Field(
        500.0, gt=0, le=20_000, title="Reports and alerts this close are linked (metres)"
    )
    window_s: float = Field(
        3600.0, gt=0, le=7 * 86_400, title="Reports and alerts this close in time are linked"
    )
    cluster_min: int = Field(
        3,
        ge=2,
        le=100,
        title="Reports in one place and window that make a cluster worth an alert",
        description="With sensors alarming nearby: a confirmation; with them quiet: a suspected "
        "broken sensor. Reports where no sensor of the category stands raise nothing",
    )
    quiet_level: Literal["info", "blue", "yellow", "orange", "red"] = Field(
        "yellow", title="Level of the alert when reports cluster where sensors are quiet"
    )
    photo_dir: str = Field("report-photos", title="Where report photos are kept, under data_dir")
    photo_max_bytes: int = Field(
        5 * 1024 * 1024, ge=1024, le=50 * 1024 * 1024, title="Largest photo accepted"
    )
    photos_per_report: int = Field(6, ge=0, le=20, title="Photos one report may carry")
    max_import_rows: int = Field(10_000, ge=1, le=1_000_000, title="Rows one CSV import may hold")
    feed_hours: float = Field(
        24.0, gt=0, le=24 * 30, title="Reports of this many past hours are on the situation screen"
    )

    @model_validator(mode="after")
    def _other_exists(self) -> CitizenReportSettings:
        if not self.categories:
            msg = "reports.categories must name at least one category (e.g. 'other')"
            raise ValueError(msg)
        return self
