"""HTTP routes of device health: one device, and a vendor's devices summed up with the worst of them.

Vendors see only their own devices and their own vendor (anything else answers 404, as everywhere);
staff roles see every vendor. The rules behind each field are in `hub.health`.
"""

from __future__ import annotations

import math
import time
from datetime import UTC, datetime
from typing import Annotated

from fastapi import APIRouter, Depends, Query, Request
from pydantic import BaseModel, Field

from devices.access import ReadAny
from devices.api import RegistryDep
from devices.registry import Registry
from hub.health import DeviceState, HealthColumns, HealthReport, Problem
from hub.state import LiveState
from ingest.api import Reject


class Level(BaseModel):
    """The latest value of a battery or signal metric, and whether it is low."""

    metric: str
    value: float | None
    unit: str
    ts: datetime | None = Field(description="When the value was measured (UTC)")
    low: bool = Field(description="Below the rule's threshold (battery low, signal weak)")


class DeviceHealthView(BaseModel):
    """How one device is doing."""

    device: str
    vendor: str
    profile: str
    state: DeviceState = Field(description="online, offline, never_seen, or inactive")
    state_from: str | None = Field(
        description="'status': the device's own status message; 'last_seen': its last reading "
        "against offline_after_s; null for inactive devices"
    )
    last_seen: datetime | None = Field(description="Newest reading (or 'online' status)")
    report_interval_s: float | None = Field(description="From the profile")
    offline_after_s: float | None = Field(description="Silent this long without a status: offline")
    readings_1h: int = Field(description="Readings stored with a time in the last hour")
    expected_1h: float | None = Field(description="metrics x 3600 / report_interval_s")
    rate_ratio: float | None = Field(description="readings_1h / expected_1h")
    rejects_1h: int
    rejects_24h: int
    reject_rate: float = Field(
        description="Rejected parts / (rejected parts + stored readings), last hour"
    )
    reject_reasons_24h: dict[str, int] = Field(description="Rejects in the last 24 h by reason")
    battery: Level | None = Field(description="When the profile names a battery metric")
    signal: Level | None = Field(description="When the profile names a signal metric")
    problems: list[str] = Field(
        description="Worst first: offline, rejects, slow, low_battery, weak_signal, never_seen"
    )


class DeviceHealthDetail(DeviceHealthView):
    """One device's health with its latest rejects."""

    last_rejects: list[Reject] = Field(description="Newest dead letters of the device")


class ReasonView(BaseModel):
    """One reject reason across a vendor's devices in the last 24 h."""

    reason: str
    rejects: int
    devices: int = Field(description="Distinct device ids rejected for it")


class WorstPage(BaseModel):
    """A page of the vendor's devices with problems, worst first."""

    items: list[DeviceHealthView]
    total: int = Field(description="Devices with at least one problem")
    offset: int
    limit: int


class VendorHealthView(BaseModel):
    """A vendor's devices summed up: online + offline + never_seen + inactive = devices."""

    vendor: str
    at: datetime
    devices: int
    online: int
    offline: int
    never_seen: int
    inactive: int = Field(description="Decommissioned or replaced: not judged")
    with_rejects_24h: int = Field(
        description="Active registered devices with rejects in the last 24 h"
    )
    rejects_24h: int = Field(description="Every reject on the vendor's topics in the last 24 h")
    unregistered_senders_24h: int = Field(
        description="Device ids on the vendor's topics that are not registered devices"
    )
    top_reasons: list[ReasonView]
    low_battery: int
    weak_signal: int
    slow: int = Field(description="Devices below half their expected reading rate")
    worst: WorstPage


def get_health(request: Request) -> HealthReport:
    """The app's health report, made on first use from the running components."""
    state = request.app.state
    health: HealthReport | None = getattr(state, "health", None)
    if health is None:
        c = state.components
        health = HealthReport(c.registry, c.state, c.store, c.dead_letters)
        state.health = health  # two first requests at once make two: harmless, one is kept
    return health


HealthDep = Annotated[HealthReport, Depends(get_health)]

router = APIRouter(prefix="/api/v1", tags=["health"])


def _now_ms() -> int:
    return int(time.time() * 1000)


def _iso(ms: int) -> datetime | None:
    return None if ms == LiveState.never() else datetime.fromtimestamp(ms / 1000, tz=UTC)


def _finite(x: float) -> float | None:
    return x if math.isfinite(x) else None  # NaN is not JSON


def _views(cols: HealthColumns, registry: Registry) -> list[DeviceHealthView]:
    """One view per device of ``cols`` (a page: at most a few hundred)."""
    views: list[DeviceHealthView] = []
    for i, device_id in enumerate(cols.ids):
        profile_id = cols.profile_of(i)
        profile = registry.profile(profile_id) if profile_id else None
        state = cols.state_of(i)
        battery = signal = None
        if profile is not None and profile.battery_metric:
            spec = profile.metric(profile.battery_metric)
            battery = Level(
                metric=profile.battery_metric,
                value=_finite(float(cols.battery[i])),
                unit=spec.unit if spec else "",
                ts=_iso(int(cols.battery_ts[i])),
                low=bool(cols.battery_low[i]),
            )
        if profile is not None and profile.signal_metric:
            spec = profile.metric(profile.signal_metric)
            signal = Level(
                metric=profile.signal_metric,
                value=_finite(float(cols.signal[i])),
                unit=spec.unit if spec else "",
                ts=_iso(int(cols.signal_ts[i])),
                low=bool(cols.signal_weak[i]),
            )
        views.append(
            DeviceHealthView(
                device=device_id,
                vendor=cols.vendor_of(i),
                profile=profile_id or "",
                state=state,
                state_from=(
                    None
                    if state is DeviceState.INACTIVE
                    else "status"
                    if cols.from_status[i]
                    else "last_seen"
                ),
                last_seen=_iso(int(cols.last_seen_ms[i])),
                report_interval_s=_finite(float(cols.interval_s[i])),
                offline_after_s=_finite(float(cols.offline_after_s[i])),
                readings_1h=int(cols.readings_1h[i]),
                expected_1h=_finite(float(cols.expected_1h[i])),
                rate_ratio=_finite(float(cols.rate_ratio[i])),
                rejects_1h=int(cols.rejects_1h[i]),
                rejects_24h=int(cols.rejects_24h[i]),
                reject_rate=float(cols.reject_rate[i]),
                reject_reasons_24h=cols.reasons_24h.get(device_id, {}),
                battery=battery,
                signal=signal,
                problems=Problem.names(int(cols.problems[i])),
            )
        )
    return views


@router.get(
    "/devices/{device_id}/health",
    response_model=DeviceHealthDetail,
    summary="How one device is doing: online, rate, rejects, battery, signal",
)
def device_health(
    device_id: str, principal: ReadAny, health: HealthDep, registry: RegistryDep
) -> DeviceHealthDetail:
    """The device's health now, with its newest dead letters (a vendor: its own devices only)."""
    principal.check_vendor(health.device_vendor(device_id), kind="device", key=device_id)
    result = health.device(device_id, _now_ms())
    (view,) = _views(result.columns, registry)
    return DeviceHealthDetail(
        **view.model_dump(), last_rejects=[Reject.of(dl) for dl in result.last_rejects]
    )


@router.get(
    "/vendors/{vendor_id}/health",
    response_model=VendorHealthView,
    summary="A vendor's devices summed up, and a page of the worst of them",
)
def vendor_health(
    vendor_id: str,
    principal: ReadAny,
    health: HealthDep,
    registry: RegistryDep,
    offset: Annotated[int, Query(ge=0)] = 0,
    limit: Annotated[int, Query(ge=1, le=500)] = 50,
) -> VendorHealthView:
    """Counts by state and problem over every device of the vendor (a vendor: its own only)."""
    principal.vendor_scope(vendor_id)
    v = health.vendor(vendor_id, _now_ms(), offset=offset, limit=limit)
    return VendorHealthView(
        vendor=v.vendor,
        at=datetime.fromtimestamp(v.at_ms / 1000, tz=UTC),
        devices=v.devices,
        online=v.online,
        offline=v.offline,
        never_seen=v.never_seen,
        inactive=v.inactive,
        with_rejects_24h=v.with_rejects_24h,
        rejects_24h=v.rejects_24h,
        unregistered_senders_24h=v.unregistered_senders_24h,
        top_reasons=[
            ReasonView(reason=r.reason, rejects=r.rejects, devices=r.devices) for r in v.top_reasons
        ],
        low_battery=v.low_battery,
        weak_signal=v.weak_signal,
        slow=v.slow,
        worst=WorstPage(
            items=_views(v.worst, registry), total=v.worst_total, offset=offset, limit=limit
        ),
    )
