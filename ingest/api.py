"""HTTP routes of ingest: a device's stored readings (raw or downsampled) and the dead letters."""

from __future__ import annotations

import math
import re
from datetime import UTC, datetime
from typing import Annotated

from fastapi import APIRouter, Depends, Query, Request
from pydantic import BaseModel, Field

from devices.access import ReadAny
from devices.errors import NotFoundError
from devices.registry import Registry
from ingest.codecs.base import DecodeReason
from ingest.deadletter import DeadLetter, DeadLetterQuery, DeadLetterStore
from ingest.errors import IngestError
from ingest.store import Store

_DURATION = re.compile(r"^(\d+(?:\.\d+)?)(ms|s|m|h|d)$")
_UNIT_MS = {"ms": 1, "s": 1000, "m": 60_000, "h": 3_600_000, "d": 86_400_000}
MAX_POINTS = 100_000


class BadQueryError(IngestError):
    """A query parameter that is well-formed but makes no sense (e.g. end before start)."""


def parse_duration_ms(text: str) -> int:
    """Milliseconds in a duration such as ``500ms``, ``30s``, ``5m``, ``1h``, ``1d``.

    Raises:
        BadQueryError: not such a duration, or not positive.
    """
    m = _DURATION.match(text.strip())
    if not m:
        msg = f"every={text!r} is not a duration like 30s, 5m, 1h or 1d"
        raise BadQueryError(msg)
    ms = int(float(m.group(1)) * _UNIT_MS[m.group(2)])
    if ms <= 0:
        msg = f"every={text!r} must be longer than zero"
        raise BadQueryError(msg)
    return ms


def _iso(ms: int) -> datetime:
    return datetime.fromtimestamp(ms / 1000, tz=UTC)


def _ms(t: datetime) -> int:
    if t.tzinfo is None:  # a zone-less time on the wire is UTC, as every time the API returns
        t = t.replace(tzinfo=UTC)
    return int(t.timestamp() * 1000)


class Readings(BaseModel):
    """A series in columns: ``ts[i]`` with ``value[i]`` and ``quality[i]``."""

    device: str
    metric: str
    unit: str
    start: datetime
    end: datetime
    ts: list[datetime]
    value: list[float | None]
    quality: list[int]
    truncated: bool = Field(
        description="True when more than the returned points exist in the range"
    )


class Buckets(BaseModel):
    """A downsampled series in columns: one entry per bucket that holds readings."""

    device: str
    metric: str
    unit: str
    start: datetime
    end: datetime
    every_ms: int
    ts: list[datetime]
    min: list[float | None]
    max: list[float | None]
    mean: list[float | None]
    count: list[int]


class Reject(BaseModel):
    """A rejected message, or the rejected part of one, as its vendor sees it."""

    id: int | None
    ts: datetime = Field(description="When the hub received the message (UTC)")
    vendor: str
    device: str
    topic: str
    reason: DecodeReason = Field(description="Stable reason code, for filtering")
    detail: str = Field(description="What was wrong and where, in a sentence")
    payload: str = Field(description="The start of the payload as received")

    @classmethod
    def of(cls, dl: DeadLetter) -> Reject:
        """The API view of a stored dead letter."""
        return cls(
            id=dl.id,
            ts=dl.ts,
            vendor=dl.vendor,
            device=dl.device,
            topic=dl.topic,
            reason=DecodeReason(dl.reason),
            detail=dl.detail,
            payload=dl.payload,
        )


class DeadLetterPage(BaseModel):
    """One page of dead letters, newest first."""

    items: list[Reject]
    total: int
    offset: int
    limit: int


def get_registry(request: Request) -> Registry:
    """The registry the app was started with."""
    registry: Registry = request.app.state.registry
    return registry


def get_store(request: Request) -> Store:
    """The time-series store the app was started with."""
    store: Store = request.app.state.store
    return store


def get_dead_letters(request: Request) -> DeadLetterStore:
    """The dead-letter store the app was started with."""
    dead: DeadLetterStore = request.app.state.dead_letters
    return dead


router = APIRouter(prefix="/api/v1", tags=["readings"])


def _nan_to_none(values: list[float]) -> list[float | None]:
    return [None if math.isnan(v) else v for v in values]  # NaN is not JSON


@router.get(
    "/devices/{device_id}/readings",
    response_model=Readings | Buckets,
    summary="Stored readings of one metric of a device, raw or downsampled",
)
def readings(
    device_id: str,
    principal: ReadAny,
    registry: Annotated[Registry, Depends(get_registry)],
    store: Annotated[Store, Depends(get_store)],
    metric: Annotated[
        str, Query(max_length=64, description="Canonical metric name, e.g. water_level")
    ],
    start: Annotated[
        datetime | None, Query(description="ISO 8601; default: end minus 24 h")
    ] = None,
    end: Annotated[datetime | None, Query(description="ISO 8601; default: now")] = None,
    every: Annotated[
        str | None,
        Query(max_length=16, description="Bucket size (30s, 5m, 1h, 1d) for min/max/mean/count"),
    ] = None,
    limit: Annotated[int, Query(ge=1, le=MAX_POINTS)] = 10_000,
) -> Readings | Buckets:
    """Raw readings in ``[start, end)``, or per-bucket min/max/mean/count when ``every`` is given."""
    entry = registry.interner.devices.get(device_id)
    if entry is None:
        raise NotFoundError(kind="device", key=device_id)
    principal.check_vendor(entry.vendor, kind="device", key=device_id)
    profile = registry.profile(entry.profile)
    spec = profile.metric(metric)
    if spec is None:
        msg = f"device {device_id} does not report {metric!r}; it reports {', '.join(m.name for m in profile.metrics)}"
        raise BadQueryError(msg)
    end_ms = _ms(end) if end else int(datetime.now(tz=UTC).timestamp() * 1000)
    start_ms = _ms(start) if start else end_ms - 86_400_000
    if start_ms >= end_ms:
        msg = "start must be before end"
        raise BadQueryError(msg)
    midx = registry.interner.metrics[metric]
    if every:
        every_ms = parse_duration_ms(every)
        if (end_ms - start_ms) // every_ms > MAX_POINTS:
            msg = f"{(end_ms - start_ms) // every_ms} buckets asked for; at most {MAX_POINTS}: use a larger every"
            raise BadQueryError(msg)
        b = store.downsample(entry.index, midx, start_ms, end_ms, every_ms)
        return Buckets(
            device=device_id,
            metric=metric,
            unit=spec.unit,
            start=_iso(start_ms),
            end=_iso(end_ms),
            every_ms=every_ms,
            ts=[_iso(t) for t in b.start.tolist()],
            min=_nan_to_none(b.min.tolist()),
            max=_nan_to_none(b.max.tolist()),
            mean=_nan_to_none(b.mean.tolist()),
            count=b.count.tolist(),
        )
    r = store.range(entry.index, midx, start_ms, end_ms, limit + 1)
    truncated = len(r) > limit
    if truncated:
        r = r.select(slice(0, limit))  # type: ignore[arg-type]
    return Readings(
        device=device_id,
        metric=metric,
        unit=spec.unit,
        start=_iso(start_ms),
        end=_iso(end_ms),
        ts=[_iso(t) for t in r.ts.tolist()],
        value=_nan_to_none(r.value.tolist()),
        quality=r.quality.tolist(),
        truncated=truncated,
    )


@router.get("/rejects", response_model=DeadLetterPage, summary="Rejected payloads, with reasons")
def rejects(
    principal: ReadAny,
    dead: Annotated[DeadLetterStore, Depends(get_dead_letters)],
    device: Annotated[str | None, Query(max_length=64)] = None,
    vendor: Annotated[str | None, Query(max_length=64)] = None,
    reason: DecodeReason | None = None,
    offset: Annotated[int, Query(ge=0)] = 0,
    limit: Annotated[int, Query(ge=1, le=1000)] = 100,
) -> DeadLetterPage:
    """Dead letters matching every filter given, newest first (a vendor sees only its own)."""
    vendor = principal.vendor_scope(vendor)
    items, total = dead.list(
        DeadLetterQuery(
            device=device,
            vendor=vendor,
            reason=reason.value if reason else None,
            offset=offset,
            limit=limit,
        )
    )
    return DeadLetterPage(
        items=[Reject.of(dl) for dl in items], total=total, offset=offset, limit=limit
    )
