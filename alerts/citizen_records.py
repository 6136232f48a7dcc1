"""Citizens' reports as records: what arrives, what is kept, what it is linked to, and their errors."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any, ClassVar

from alerts.errors import AlertError
from alerts.incident_records import NewPhoto


class InvalidReportError(AlertError):
    """A report (or an import row) the hub cannot take: unknown category, no place, bad time (422)."""

    status = 422
    title = "Invalid report"


class ReportNotFoundError(AlertError):
    """No such report, or one outside the caller's area (404)."""

    status = 404
    title = "Report not found"

    def __init__(self, report_id: int) -> None:
        self.report_id = report_id
        super().__init__(f"no report {report_id}")


@dataclass(frozen=True, slots=True)
class PhotoUpload:
    """A photo as it came with a report (multipart file or base64), not yet checked."""

    data: bytes
    content_type: str | None
    caption: str = ""


@dataclass(frozen=True, slots=True)
class NewReport:
    """A report as entered: by a hotline operator, a grid worker, or a row of an import.

    ``lat``/``lon`` or ``address`` (or both): a report with only an address is kept and listed, but
    is neither on the map nor linked (the hub has no geocoder).
    """

    source: str
    category: str
    text: str
    at_ms: int
    reporter: str
    lat: float | None = None
    lon: float | None = None
    address: str = ""
    area: str | None = None
    external_id: str | None = None
    photos: tuple[PhotoUpload, ...] = ()


@dataclass(frozen=True, slots=True)
class Link:
    """What a report is linked to: an alert or another report, how far and how long apart."""

    kind: str  # "alert" | "report"
    target: int
    distance_m: float
    dt_s: float  # the target's time minus the report's


@dataclass(frozen=True, slots=True)
class Report:
    """A kept report."""

    id: int
    source: str
    external_id: str | None
    category: str
    text: str
    lat: float | None
    lon: float | None
    address: str
    area: str | None
    at_ms: int
    received_ms: int
    reporter: str
    cluster_id: int | None
    photos: tuple[StoredPhoto, ...] = ()
    links: tuple[Link, ...] = ()

    KINDS: ClassVar[tuple[str, str]] = ("alert", "report")

    @property
    def placed(self) -> bool:
        """Whether the report has a position (it is on the map and linked)."""
        return self.lat is not None and self.lon is not None


@dataclass(frozen=True, slots=True)
class StoredPhoto:
    """A photo kept with a report: its file is ``<photo dir>/<report id>/<name>``."""

    n: int
    content_type: str
    size: int
    sha256: str
    name: str

    @classmethod
    def of(cls, n: int, photo: NewPhoto) -> StoredPhoto:
        """The record of a photo `alerts.photos.PhotoStore` saved."""
        return cls(n, photo.content_type, photo.size, photo.sha256, photo.name)


@dataclass(frozen=True, slots=True)
class ReportQuery:
    """A filter over reports; None means "any". ``within``: area prefixes (a caller's scope)."""

    category: str | None = None
    source: str | None = None
    since_ms: int | None = None
    until_ms: int | None = None
    within: tuple[str, ...] | None = None
    cluster_id: int | None = None
    linked_alert: int | None = None
    placed: bool | None = None
    offset: int = 0
    limit: int = 100


@dataclass(slots=True)
class Submitted:
    """What a submission did: reports created, and input rows skipped as already known."""

    created: list[Report] = field(default_factory=list)
    # (input row from 0, the report it repeats: None when an earlier row of the same upload)
    duplicates: list[tuple[int, int | None]] = field(default_factory=list)
    alerts: list[dict[str, Any]] = field(default_factory=list)  # correlation events emitted
