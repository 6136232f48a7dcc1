"""HTTP routes of ingest: stored readings (raw or downsampled), dead letters, and the decode preview."""

from __future__ import annotations

import asyncio
import math
import re
import time
from datetime import UTC, datetime
from typing import Annotated

from fastapi import APIRouter, Depends, Query, Request
from pydantic import BaseModel, Field

from devices.access import ReadAny, Role
from devices.errors import NotFoundError
from devices.registry import Registry
from ingest import topics
from ingest.codecs.base import DecodeReason
from ingest.consumer import Consumer
from ingest.deadletter import DeadLetter, DeadLetterQuery, DeadLetterStore
from ingest.errors import IngestError
from ingest.preview import PLACEHOLDER_DEVICE, DecodePreview, preview
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


class PreviewReading(BaseModel):
    """One reading the payload would give, exactly as it would be stored."""

    device: str
    metric: str = Field(description="Canonical metric name")
    ts: datetime = Field(
        description="Reading time (UTC); the receive time when the payload has none"
    )
    value: float | None = Field(description="In the canonical unit; null when not a number")
    unit: str = Field(description="The canonical unit the value was converted to")
    quality: int = Field(
        description="Quality flags: 0 ok, 1 out of range, 2 clock skew, 4 estimated time, 8 NaN"
    )
    flags: list[str] = Field(description="Names of the flags set, e.g. out_of_range")


class PreviewRejection(BaseModel):
    """A part of the payload (or the whole of it) that would be rejected, as its dead letter reads."""

    device: str = Field(description="The device the dead letter would be filed under")
    reason: DecodeReason
    detail: str = Field(description="The sentence the dead letter would carry")


class DecodePreviewResult(BaseModel):
    """What the hub would make of one message; nothing was stored."""

    profile: str
    topic: str = Field(description="The topic the message was decoded as arriving on")
    vendor: str
    device: str = Field(description="The topic's device (decoded with this profile)")
    received: datetime = Field(description="The receive time the payload was decoded against")
    readings: list[PreviewReading]
    rejections: list[PreviewRejection]
    duplicates: int = Field(
        description="Readings repeating a (device, metric, ts): the store would keep the last"
    )
    status: bool | None = Field(
        None, description="On a status topic: whether the message says online (true) or offline"
    )

    @classmethod
    def of(cls, p: DecodePreview) -> DecodePreviewResult:
        """The API view of a preview."""
        return cls(
            profile=p.profile,
            topic=p.topic,
            vendor=p.vendor,
            device=p.device,
            received=p.received,
            readings=[
                PreviewReading(
                    device=r.device,
                    metric=r.metric,
                    ts=r.ts,
                    value=r.value,
                    unit=r.unit,
                    quality=r.quality,
                    flags=r.flags,
                )
                for r in p.readings
            ],
            rejections=[
                PreviewRejection(device=r.device, reason=DecodeReason(r.reason), detail=r.detail)
                for r in p.rejections
            ],
            duplicates=p.duplicates,
            status=p.status,
        )


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


def get_consumer(request: Request) -> Consumer:
    """The live consumer: the decode preview runs a sandbox of it (same zone, same limits)."""
    consumer: Consumer = request.app.state.consumer
    return consumer


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


@router.post(
    "/profiles/{profile_id}/decode",
    response_model=DecodePreviewResult,
    tags=["onboarding"],
    summary="Try a payload: the readings or rejections live ingestion would make of it",
    openapi_extra={
        "requestBody": {
            "required": True,
            "description": "The payload exactly as the device would publish it (any content type)",
            "content": {"*/*": {"schema": {"type": "string", "format": "binary"}}},
        }
    },
)
async def decode_preview(
    profile_id: str,
    request: Request,
    principal: ReadAny,
    registry: Annotated[Registry, Depends(get_registry)],
    consumer: Annotated[Consumer, Depends(get_consumer)],
    device: Annotated[
        str | None,
        Query(
            max_length=64,
            description=f"The device id the topic would carry; default {PLACEHOLDER_DEVICE!r}",
        ),
    ] = None,
    topic: Annotated[
        str | None,
        Query(
            max_length=300,
            description="The whole topic, sensors/{vendor}/{device}/up; default: built from "
            "the profile's vendor (yours, for a vendor) and device",
        ),
    ] = None,
) -> DecodePreviewResult:
    """Decode the body as a message from a device of this profile, and store nothing.

    The very code live ingestion runs decodes it (codec, unit conversion, time checks, range flags,
    the hub's site zone and size limit); no reading, dead letter or live value is kept. The topic's
    device need not be registered; other devices a payload names (a gateway batch) are checked
    against the registry as live ingestion checks them.

    Anyone logged in may preview (it changes nothing, and duty officers help vendors debug); a vendor
    only with its own or shared profiles and on its own topics (anything else answers 404).
    """
    profile = registry.profile(profile_id)
    if profile.vendor is not None:
        principal.check_vendor(profile.vendor, kind="profile", key=profile_id)
    if topic is not None:
        parts = topics.parse(topic)
        if parts is not None:
            principal.vendor_scope(parts.vendor)  # a vendor speaks on its own topics only
            if device is not None and device != parts.device_id:
                msg = f"device={device!r} differs from the device of topic={topic!r}"
                raise BadQueryError(msg)
        # A topic that is no device topic is decoded anyway: the preview shows its bad_topic.
    else:
        vendor = principal.vendor if principal.role is Role.VENDOR else profile.vendor
        if vendor is None:
            msg = (
                f"profile {profile_id} is shared by every vendor: name yours with "
                "topic=sensors/{vendor}/{device}/up"
            )
            raise BadQueryError(msg)
        topic = topics.up(vendor, device or PLACEHOLDER_DEVICE)
    # Read the body without ever holding more than the size limit (and one byte more): a huge body is
    # counted as it streams by and rejected as live ingestion rejects it, by its size.
    limit = consumer.max_payload
    kept = bytearray()
    size = 0
    async for chunk in request.stream():
        size += len(chunk)
        if len(kept) <= limit:
            kept += chunk[: limit + 1 - len(kept)]
    received_ms = int(time.time() * 1000)
    result = await asyncio.to_thread(
        preview,
        registry,
        consumer,
        profile,
        bytes(kept),
        topic=topic,
        received_ms=received_ms,
        size=size,
    )
    return DecodePreviewResult.of(result)
