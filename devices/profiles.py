"""The vocabulary: vendors, device profiles (metrics with canonical units and valid ranges) and devices."""

from __future__ import annotations

import enum
import re
from typing import Any

from pydantic import BaseModel, ConfigDict, Field, field_validator, model_validator

_ID = re.compile(r"^[A-Za-z0-9][A-Za-z0-9_.:-]{0,63}$")
_AREA = re.compile(r"^[^/\s]+(/[^/\s]+)*$")


def _check_id(kind: str, value: str) -> str:
    # Ids end up in MQTT topics and URLs: no '/', '+', '#', spaces or empty segments.
    if not _ID.match(value):
        msg = (
            f"{kind} id {value!r} must be 1-64 characters of letters, digits, '_', '.', ':' or '-'"
        )
        raise ValueError(msg)
    return value


class Domain(enum.StrEnum):
    """Which department's world a device belongs to."""

    WATER = "water"
    TRAFFIC = "traffic"
    URBAN = "urban"
    ENVIRONMENT = "environment"


class _Model(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)


class MetricSpec(_Model):
    """One quantity a profile reports, in its canonical unit."""

    name: str = Field(title="Canonical metric name", description="e.g. water_level, rainfall")
    unit: str = Field(
        title="Canonical unit", description="Unit every stored value is in, e.g. m, mm, MPa"
    )
    min: float | None = Field(None, title="Lowest valid value", description="Below it: flagged")
    max: float | None = Field(None, title="Highest valid value", description="Above it: flagged")
    description: str = Field("", title="What the metric measures")

    @model_validator(mode="after")
    def _range_ordered(self) -> MetricSpec:
        if self.min is not None and self.max is not None and self.min > self.max:
            msg = f"metric {self.name}: min {self.min} is above max {self.max}"
            raise ValueError(msg)
        return self


class DeviceProfile(_Model):
    """A device model: what it measures, how often, and how its payloads are decoded."""

    id: str = Field(title="Profile id", description="e.g. acme-wl200")
    name: str = Field(title="Human name")
    type: str = Field(
        title="Device type", description="e.g. water_level, rain_gauge, manhole_cover"
    )
    domain: Domain = Field(title="Department domain")
    vendor: str | None = Field(None, title="Owning vendor; None for a shared (city) profile")
    metrics: tuple[MetricSpec, ...] = Field(title="Metrics", min_length=1)
    report_interval_s: float = Field(title="Expected report interval (s)", gt=0)
    codec: dict[str, Any] = Field(
        default_factory=lambda: {"codec": "senml"},
        title="Codec settings",
        description="{'codec': name, ...settings}; validated by the ingest package's codec registry",
    )
    battery_metric: str | None = Field(None, title="Metric that reports battery level, if any")
    signal_metric: str | None = Field(None, title="Metric that reports radio signal, if any")

    @field_validator("id")
    @classmethod
    def _id_ok(cls, v: str) -> str:
        return _check_id("profile", v)

    @model_validator(mode="after")
    def _consistent(self) -> DeviceProfile:
        names = [m.name for m in self.metrics]
        if len(set(names)) != len(names):
            msg = f"profile {self.id}: metric names repeat: {names}"
            raise ValueError(msg)
        for extra in (self.battery_metric, self.signal_metric):
            if extra is not None and extra not in names:
                msg = f"profile {self.id}: {extra!r} is not one of its metrics {names}"
                raise ValueError(msg)
        if "codec" not in self.codec or not isinstance(self.codec["codec"], str):
            msg = f"profile {self.id}: codec needs a 'codec' name, e.g. {{'codec': 'senml'}}"
            raise ValueError(msg)
        return self

    def metric(self, name: str) -> MetricSpec | None:
        """The spec of metric ``name``, or None when the profile does not report it."""
        for m in self.metrics:
            if m.name == name:
                return m
        return None


class Vendor(_Model):
    """A company that supplies and operates devices."""

    id: str = Field(
        title="Vendor id", description="Appears in topics: sensors/{vendor}/{device}/up"
    )
    name: str = Field(title="Human name")

    @field_validator("id")
    @classmethod
    def _id_ok(cls, v: str) -> str:
        return _check_id("vendor", v)


class DeviceStatus(enum.StrEnum):
    """Where a device is in its working life."""

    ACTIVE = "active"
    DECOMMISSIONED = "decommissioned"
    REPLACED = "replaced"  # new hardware took over this monitoring point and its series


class Device(_Model):
    """A monitoring point with its hardware: where it is, who made it, what profile decodes it."""

    id: str = Field(title="Device id", description="Unique across the city; appears in topics")
    vendor: str = Field(title="Vendor id")
    profile: str = Field(title="Profile id")
    name: str = Field("", title="Human name")
    lat: float | None = Field(None, ge=-90, le=90, title="Latitude (WGS 84)")
    lon: float | None = Field(None, ge=-180, le=180, title="Longitude (WGS 84)")
    area: str = Field("", title="Area path", description="city/district/street/grid")
    tags: dict[str, str] = Field(default_factory=dict, title="Free tags")
    status: DeviceStatus = Field(DeviceStatus.ACTIVE, title="Working status")
    replaced_by: str | None = Field(
        None,
        title="The device that took over this monitoring point",
        description="Set by the registry when this hardware is replaced; its series continues there",
    )

    @field_validator("id")
    @classmethod
    def _id_ok(cls, v: str) -> str:
        return _check_id("device", v)

    @field_validator("area")
    @classmethod
    def _area_ok(cls, v: str) -> str:
        if v and not _AREA.match(v):
            msg = f"area {v!r} must be a path like city/district/street/grid"
            raise ValueError(msg)
        return v
