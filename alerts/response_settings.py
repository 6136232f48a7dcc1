"""Settings of the emergency response (settings section ``response``): limits, ticks, photos, notices."""

from __future__ import annotations

from pathlib import Path
from typing import Literal

from pydantic import BaseModel, ConfigDict, Field

from alerts.webhook import WebhookSettings

OVERDUE_RULE = "incident-step-overdue"
"""The rule id of the alerts an overrun incident step raises (source ``incident:<id>``)."""


class ResponseSettings(BaseModel):
    """Incidents, units, warnings and the duty roster."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    limits_file: Path | None = Field(
        None,
        title="The city's incident types and step limits",
        description="YAML shaped like alerts/data/incidents.yaml, merged over it",
    )
    tick_s: float = Field(
        1.0, gt=0, le=60, title="How often overdue steps, expired warnings and notices are handled"
    )
    photo_dir: str = Field("incident-photos", title="Where unit photos are kept, under data_dir")
    photo_max_bytes: int = Field(
        5 * 1024 * 1024, ge=1024, le=50 * 1024 * 1024, title="Largest photo accepted"
    )
    photos_per_report: int = Field(6, ge=1, le=20, title="Photos one report may carry")
    travel_speed_kmh: float = Field(
        30.0, gt=0, title="Speed for the ETA of suggested units (city traffic with lights)"
    )
    duty_receivers: list[WebhookSettings] = Field(
        default_factory=list,
        title="Where duty notices go",
        description="e.g. an SMS or IM gateway's webhook; each POST names the people and contacts",
    )
    duty_min_level: Literal["info", "blue", "yellow", "orange", "red"] = Field(
        "orange", title="New alerts at or above this level are told to the people on duty"
    )
    report_readings_before_s: float = Field(
        3600, gt=0, title="Readings charted in an incident report from this long before it opened"
    )
    report_cameras: int = Field(
        3, ge=0, le=10, title="Camera snapshots near the incident put in its report"
    )
