"""What a camera is: its stream, owner department, place and view, and how its picture is judged."""

from __future__ import annotations

import re
from typing import Any

from pydantic import BaseModel, ConfigDict, Field, field_validator, model_validator

from video import urls
from video.diagnose import Thresholds

_ID = re.compile(r"^[A-Za-z0-9][A-Za-z0-9_.:-]{0,63}$")  # as device ids: safe in URLs and paths
_AREA = re.compile(r"^[^/\s]+(/[^/\s]+)*$")
_DEPARTMENT = re.compile(r"^[a-z0-9][a-z0-9_-]{0,63}$")


def check_id(value: str) -> str:
    """``value`` if it is a valid camera id; ValueError naming the rule otherwise."""
    if not _ID.match(value):
        msg = (
            f"camera id {value!r} must be 1-64 characters of letters, digits, '_', '.', ':' or '-'"
        )
        raise ValueError(msg)
    return value


def check_thresholds(overrides: dict[str, Any]) -> dict[str, Any]:
    """``overrides`` if they are valid `Thresholds` fields and values; ValueError otherwise."""
    Thresholds.model_validate(overrides)
    return overrides


class Camera(BaseModel):
    """A camera as registered; ``url`` may carry its login and is never shown (see `video.urls`)."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    id: str = Field(title="Camera id", description="Unique across the city")
    url: str = Field(
        title="Stream URL",
        description="rtsp://, http(s):// (MJPEG) or file://; a login in it is stored, never shown",
    )
    name: str = Field("", max_length=200, title="Human name")
    department: str = Field(
        "", title="Owning department", description="e.g. traffic-police, water-authority"
    )
    lat: float | None = Field(None, ge=-90, le=90, title="Latitude (WGS 84)")
    lon: float | None = Field(None, ge=-180, le=180, title="Longitude (WGS 84)")
    heading: float | None = Field(
        None, ge=0, lt=360, title="Direction of view", description="Degrees clockwise from north"
    )
    fov: float | None = Field(
        None, gt=0, le=360, title="Horizontal field of view (degrees)", description="360: dome"
    )
    area: str = Field("", title="Area path", description="city/district/street/grid")
    tags: dict[str, str] = Field(default_factory=dict, title="Free tags")
    thresholds: dict[str, Any] = Field(
        default_factory=dict,
        title="Diagnosis thresholds for this camera",
        description="Any field of the patrol's thresholds; the rest come from the hub's settings",
    )
    enabled: bool = Field(True, title="Patrolled", description="False: kept, but not checked")

    @field_validator("id")
    @classmethod
    def _id_ok(cls, v: str) -> str:
        return check_id(v)

    @field_validator("url")
    @classmethod
    def _url_ok(cls, v: str) -> str:
        return urls.check(v)

    @field_validator("area")
    @classmethod
    def _area_ok(cls, v: str) -> str:
        if v and not _AREA.match(v):
            msg = f"area {v!r} must be a path like city/district/street/grid"
            raise ValueError(msg)
        return v

    @field_validator("department")
    @classmethod
    def _department_ok(cls, v: str) -> str:
        if v and not _DEPARTMENT.match(v):
            msg = f"department {v!r} must be lower-case letters, digits, '_' or '-'"
            raise ValueError(msg)
        return v

    @field_validator("thresholds")
    @classmethod
    def _thresholds_ok(cls, v: dict[str, Any]) -> dict[str, Any]:
        return check_thresholds(v)

    @model_validator(mode="after")
    def _placed_fully(self) -> Camera:
        if (self.lat is None) != (self.lon is None):
            msg = "give both lat and lon, or neither"
            raise ValueError(msg)
        return self

    def effective_thresholds(self, defaults: Thresholds) -> Thresholds:
        """The hub's thresholds with this camera's overrides applied."""
        if not self.thresholds:
            return defaults
        return Thresholds.model_validate(defaults.model_dump() | self.thresholds)

    @property
    def redacted_url(self) -> str:
        """The stream URL as anyone may see it."""
        return urls.redact(self.url)


class CameraPatch(BaseModel):
    """A change to a camera: the fields given replace the stored ones."""

    model_config = ConfigDict(extra="forbid")

    url: str | None = None
    name: str | None = Field(None, max_length=200)
    department: str | None = None
    lat: float | None = Field(None, ge=-90, le=90)
    lon: float | None = Field(None, ge=-180, le=180)
    heading: float | None = Field(None, ge=0, lt=360)
    fov: float | None = Field(None, gt=0, le=360)
    area: str | None = None
    tags: dict[str, str] | None = None
    thresholds: dict[str, Any] | None = None
    enabled: bool | None = None

    def apply(self, camera: Camera) -> Camera:
        """``camera`` with this change, validated as a whole (a redacted URL keeps the stored login)."""
        changes = self.model_dump(exclude_unset=True)
        if "url" in changes and changes["url"] is not None:
            changes["url"] = urls.keep_stored_secrets(changes["url"], camera.url)
        return Camera.model_validate(camera.model_dump() | changes)
