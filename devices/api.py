"""HTTP routes of the registry: list and read devices, with their latest values."""

from __future__ import annotations

from datetime import datetime
from typing import Annotated, Protocol

from fastapi import APIRouter, Depends, Query, Request
from pydantic import BaseModel, Field

from devices.access import ReadAny
from devices.profiles import Device, DeviceProfile, DeviceStatus
from devices.registry import DeviceQuery, Registry


class LatestValue(BaseModel):
    """The newest reading of one metric of a device."""

    value: float | None
    unit: str
    ts: datetime
    quality: int = Field(
        description="Quality flags: 0 ok, 1 out of range, 2 clock skew, 4 estimated time, 8 NaN"
    )


class LiveView(Protocol):
    """What the hub's live state tells about one device (implemented by the composition root)."""

    def latest(self, device_id: str) -> tuple[dict[str, LatestValue], datetime | None, bool | None]:
        """Latest value per metric, last-seen time, and online flag (None when unknown)."""
        ...

    def rejects(self, device_id: str) -> dict[str, int]:
        """How many of the device's messages or readings were rejected, by reason."""
        ...


class DeviceView(Device):
    """A device with what the hub knows about it right now."""

    type: str = Field(title="Device type, from its profile")
    latest: dict[str, LatestValue] = Field(default_factory=dict, title="Latest value per metric")
    last_seen: datetime | None = Field(None, title="Time of the newest reading")
    online: bool | None = Field(
        None, title="The device's own online/offline status, if it sends one"
    )


class DeviceDetail(DeviceView):
    """A device with its latest values, its profile and its reject counts."""

    profile_detail: DeviceProfile
    rejects: dict[str, int] = Field(default_factory=dict, title="Rejections by reason")


class DevicePage(BaseModel):
    """One page of a device listing."""

    items: list[DeviceView]
    total: int
    offset: int
    limit: int


def get_registry(request: Request) -> Registry:
    """The registry the app was started with."""
    registry: Registry = request.app.state.registry
    return registry


def get_live(request: Request) -> LiveView:
    """The live view the app was started with."""
    live: LiveView = request.app.state.live
    return live


RegistryDep = Annotated[Registry, Depends(get_registry)]
LiveDep = Annotated[LiveView, Depends(get_live)]

router = APIRouter(prefix="/api/v1", tags=["devices"])


def _view(device: Device, registry: Registry, live: LiveView) -> DeviceView:
    latest, last_seen, online = live.latest(device.id)
    return DeviceView(
        **device.model_dump(),
        type=registry.profile(device.profile).type,
        latest=latest,
        last_seen=last_seen,
        online=online,
    )


@router.get("/devices", response_model=DevicePage, summary="List devices with their latest values")
def list_devices(
    principal: ReadAny,
    registry: RegistryDep,
    live: LiveDep,
    type: Annotated[
        str | None, Query(max_length=64, description="Device type, e.g. water_level")
    ] = None,
    vendor: Annotated[str | None, Query(max_length=64)] = None,
    area: Annotated[
        str | None, Query(max_length=300, description="Area path prefix, e.g. demo/riverside")
    ] = None,
    status: DeviceStatus | None = None,
    offset: Annotated[int, Query(ge=0)] = 0,
    limit: Annotated[int, Query(ge=1, le=1000)] = 100,
) -> DevicePage:
    """Devices matching every filter given, ordered by id (a vendor sees only its own)."""
    vendor = principal.vendor_scope(vendor)
    items, total = registry.devices(
        DeviceQuery(type=type, vendor=vendor, area=area, status=status, offset=offset, limit=limit)
    )
    return DevicePage(
        items=[_view(d, registry, live) for d in items], total=total, offset=offset, limit=limit
    )


@router.get(
    "/devices/{device_id}", response_model=DeviceDetail, summary="One device with latest values"
)
def get_device(
    device_id: str, principal: ReadAny, registry: RegistryDep, live: LiveDep
) -> DeviceDetail:
    """The device, its profile, its latest value per metric and its reject counts."""
    device = registry.device(device_id)
    principal.check_vendor(device.vendor, kind="device", key=device_id)
    view = _view(device, registry, live)
    return DeviceDetail(
        **view.model_dump(),
        profile_detail=registry.profile(device.profile),
        rejects=live.rejects(device_id),
    )
