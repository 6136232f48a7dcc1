"""HTTP routes that change the registry: vendors, profiles, and devices one by one or in bulk.

Administrators change anything; a vendor changes only its own devices and profiles (another vendor's
answer 404). Every new device gets its own MQTT credential, returned once in the response.
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from typing import Annotated, Any, Protocol

from fastapi import APIRouter, Body, Depends, Request
from pydantic import BaseModel, Field

from devices.access import AdminOnly, DeviceWriter, Principal, ReadAny, Role
from devices.api import RegistryDep
from devices.errors import ConflictError, InvalidDefinitionError, NotFoundError
from devices.profiles import Device, DeviceProfile, DeviceStatus, Vendor
from devices.registration import parse_rows, sort_rows
from devices.registry import Registry
from devices.uploads import RowError


class Credential(BaseModel):
    """A device's MQTT login. The secret is shown only in the response that created it."""

    device: str
    username: str
    secret: str


class CredentialIssuer(Protocol):
    """Issues and revokes per-device MQTT credentials (``devices.credentials.CredentialStore``)."""

    def issue_many(self, devices: Iterable[tuple[str, str]]) -> Sequence[tuple[str, str, str]]:
        """New credentials for ``(device_id, vendor)`` pairs: ``(device_id, username, secret)``."""
        ...

    def revoke(self, device_id: str) -> object:
        """The device's credential stops working."""
        ...


class CodecCheck(Protocol):
    """Validates a profile's codec block (the ingest package owns codecs)."""

    def __call__(self, codec: dict[str, Any]) -> None:
        """Raise ValueError with a readable message if the block is not a valid codec."""
        ...


class NewDevice(BaseModel):
    """A device to register; ``vendor`` defaults to the caller's."""

    id: str
    profile: str
    vendor: str | None = None
    name: str = ""
    lat: float | None = Field(None, ge=-90, le=90)
    lon: float | None = Field(None, ge=-180, le=180)
    area: str = ""
    tags: dict[str, str] = Field(default_factory=dict)


class DeviceChange(BaseModel):
    """Fields to change on a device; absent fields stay as they are."""

    profile: str | None = None
    name: str | None = None
    lat: float | None = Field(None, ge=-90, le=90)
    lon: float | None = Field(None, ge=-180, le=180)
    area: str | None = None
    tags: dict[str, str] | None = None


class Replacement(BaseModel):
    """New hardware for a monitoring point: its id and, if it differs, its profile."""

    new_id: str
    profile: str | None = Field(None, description="Default: the old device's profile")
    name: str | None = Field(None, description="Default: the old device's name")


class Registered(BaseModel):
    """A registered device and its MQTT credential (shown once)."""

    device: Device
    credential: Credential | None


class BulkRowError(BaseModel):
    """A refused row of an upload."""

    row: int = Field(description="CSV: the line in the file (header is 1); JSON: the item, from 1")
    id: str | None
    reason: str

    @classmethod
    def of(cls, e: RowError) -> BulkRowError:
        """The API view of a refused row."""
        return cls(row=e.row, id=e.id, reason=e.reason)


class BulkResult(BaseModel):
    """What an upload did. Uploading the same file again creates nothing and changes nothing."""

    created: int
    updated: int
    unchanged: int
    errors: list[BulkRowError]
    credentials: list[Credential] = Field(description="One per created device, shown only here")


def _credentials(request: Request) -> CredentialIssuer:
    credentials: CredentialIssuer = request.app.state.credentials
    return credentials


def _codec_check(request: Request) -> CodecCheck:
    check: CodecCheck = request.app.state.codec_check
    return check


CredentialsDep = Annotated[CredentialIssuer, Depends(_credentials)]

router = APIRouter(prefix="/api/v1", tags=["registration"])


def _own_device(registry: Registry, principal: Principal, device_id: str) -> Device:
    device = registry.device(device_id)
    principal.check_vendor(device.vendor, kind="device", key=device_id)
    return device


def _device_vendor(principal: Principal, requested: str | None, registry: Registry) -> str:
    if principal.role is Role.VENDOR:
        assert principal.vendor is not None  # noqa: S101 - a vendor principal always names one
        if requested is not None and requested != principal.vendor:
            msg = f"vendor {requested} is not yours ({principal.vendor})"
            raise InvalidDefinitionError(msg)
        return principal.vendor
    if requested is None:
        msg = "name the device's vendor"
        raise InvalidDefinitionError(msg)
    if requested not in registry.vendor_ids():
        raise NotFoundError(kind="vendor", key=requested)
    return requested


def _usable_profile(registry: Registry, profile_id: str, vendor: str) -> DeviceProfile:
    profile = registry.profile(profile_id)
    if profile.vendor is not None and profile.vendor != vendor:
        raise NotFoundError(kind="profile", key=profile_id)
    return profile


def _issue(credentials: CredentialIssuer, devices: list[Device]) -> list[Credential]:
    issued = credentials.issue_many([(d.id, d.vendor) for d in devices])
    return [Credential(device=d, username=u, secret=s) for d, u, s in issued]


def _validated(data: dict[str, Any]) -> Device:
    try:
        return Device.model_validate(data)
    except ValueError as exc:
        raise InvalidDefinitionError(str(exc)) from exc


# -- devices ----------------------------------------------------------------------------------


@router.post("/devices", response_model=Registered, status_code=201, summary="Register one device")
def register_device(
    principal: DeviceWriter,
    registry: RegistryDep,
    credentials: CredentialsDep,
    body: Annotated[NewDevice, Body()],
) -> Registered:
    """Register a device and issue its MQTT credential (shown only in this response)."""
    vendor = _device_vendor(principal, body.vendor, registry)
    device = _validated({**body.model_dump(), "vendor": vendor})
    _usable_profile(registry, device.profile, vendor)
    if device.id in registry.interner.devices:
        msg = f"device {device.id} is already registered"
        raise ConflictError(msg)
    registry.put_devices([device])
    (credential,) = _issue(credentials, [device])
    return Registered(device=device, credential=credential)


@router.post(
    "/devices/bulk",
    response_model=BulkResult,
    summary="Register or update many devices from CSV or JSON",
    openapi_extra={
        "requestBody": {
            "content": {
                "text/csv": {"schema": {"type": "string"}},
                "application/json": {"schema": {"type": "array", "items": {"type": "object"}}},
            },
            "required": True,
        }
    },
)
async def register_bulk(
    request: Request,
    principal: DeviceWriter,
    registry: RegistryDep,
    credentials: CredentialsDep,
) -> BulkResult:
    """CSV (header: id, profile, and any of name, lat, lon, area, tags, vendor) or a JSON list.

    Valid rows are created or updated; each refused row comes back with its row number and reason.
    Uploading the same rows again changes nothing. New devices' credentials are in the response.
    """
    body = await request.body()
    content_type = request.headers.get("content-type", "")
    vendor = principal.vendor if principal.role is Role.VENDOR else None

    def work() -> BulkResult:
        result = sort_rows(registry, parse_rows(body, content_type), vendor=vendor)
        registry.put_devices(result.new + result.changed)
        issued = _issue(credentials, result.new)
        return BulkResult(
            created=len(result.new),
            updated=len(result.changed),
            unchanged=result.unchanged,
            errors=[BulkRowError.of(e) for e in result.errors],
            credentials=issued,
        )

    # Off the event loop: parsing, validating and writing 100,000 rows takes seconds.
    import anyio.to_thread  # noqa: PLC0415 - FastAPI's own dependency, only needed here

    return await anyio.to_thread.run_sync(work)


@router.patch("/devices/{device_id}", response_model=Device, summary="Change a device")
def update_device(
    device_id: str,
    principal: DeviceWriter,
    registry: RegistryDep,
    body: Annotated[DeviceChange, Body()],
) -> Device:
    """Change name, place, area, tags or profile (a profile of the same vendor or a shared one)."""
    device = _own_device(registry, principal, device_id)
    if device.status is DeviceStatus.REPLACED:
        msg = f"device {device_id} was replaced by {device.replaced_by}: change that one"
        raise InvalidDefinitionError(msg)
    changes = body.model_dump(exclude_unset=True)
    updated = _validated({**device.model_dump(), **changes})
    if "profile" in changes:
        old_type = registry.profile(device.profile).type
        new_type = _usable_profile(registry, updated.profile, device.vendor).type
        if new_type != old_type:
            msg = f"a {old_type} device cannot become {new_type}: register a new device"
            raise InvalidDefinitionError(msg)
    registry.put_devices([updated])
    return updated


@router.post(
    "/devices/{device_id}/decommission", response_model=Device, summary="Decommission a device"
)
def decommission_device(
    device_id: str,
    principal: DeviceWriter,
    registry: RegistryDep,
    credentials: CredentialsDep,
) -> Device:
    """Stop accepting the device's data and revoke its credential; its history stays."""
    _own_device(registry, principal, device_id)
    device = registry.set_status(device_id, DeviceStatus.DECOMMISSIONED)
    credentials.revoke(device_id)
    return device


@router.post(
    "/devices/{device_id}/replace",
    response_model=Registered,
    status_code=201,
    summary="Replace a device's hardware, keeping its series",
)
def replace_device(
    device_id: str,
    principal: DeviceWriter,
    registry: RegistryDep,
    credentials: CredentialsDep,
    body: Annotated[Replacement, Body()],
) -> Registered:
    """New hardware takes over the monitoring point: same place, same series, a new id and credential.

    The old device is marked replaced, its credential revoked and its topic refused; readings of the
    point, read through either id, are one continuous series.
    """
    old = _own_device(registry, principal, device_id)
    if body.new_id in registry.interner.devices:
        msg = f"device {body.new_id} is already registered"
        raise ConflictError(msg)
    new = _validated(
        {
            **old.model_dump(),
            "id": body.new_id,
            "profile": body.profile or old.profile,
            "name": body.name if body.name is not None else old.name,
        }
    )
    _usable_profile(registry, new.profile, old.vendor)
    new = registry.replace(device_id, new)
    credentials.revoke(device_id)
    (credential,) = _issue(credentials, [new])
    return Registered(device=new, credential=credential)


@router.post(
    "/devices/{device_id}/credential",
    response_model=Credential,
    summary="Issue a new MQTT secret for a device (the old one stops working)",
)
def rotate_credential(
    device_id: str,
    principal: DeviceWriter,
    registry: RegistryDep,
    credentials: CredentialsDep,
) -> Credential:
    """Rotate: a new secret, shown only in this response."""
    device = _own_device(registry, principal, device_id)
    if device.status is not DeviceStatus.ACTIVE:
        msg = f"device {device_id} is {device.status.value}: it gets no credential"
        raise InvalidDefinitionError(msg)
    (credential,) = _issue(credentials, [device])
    return credential


@router.delete(
    "/devices/{device_id}/credential", status_code=204, summary="Revoke a device's MQTT credential"
)
def revoke_credential(
    device_id: str,
    principal: DeviceWriter,
    registry: RegistryDep,
    credentials: CredentialsDep,
) -> None:
    """The device can no longer connect until a new secret is issued."""
    _own_device(registry, principal, device_id)
    credentials.revoke(device_id)


# -- vendors ----------------------------------------------------------------------------------


@router.get("/vendors", response_model=list[Vendor], summary="Vendors")
def list_vendors(principal: ReadAny, registry: RegistryDep) -> list[Vendor]:
    """Every vendor (a vendor sees itself)."""
    return [v for v in registry.vendors() if principal.sees_vendor(v.id)]


@router.post("/vendors", response_model=Vendor, status_code=201, summary="Register a vendor")
def create_vendor(_: AdminOnly, registry: RegistryDep, body: Annotated[Vendor, Body()]) -> Vendor:
    """A new vendor; then create its vendor account with POST /api/v1/users."""
    if body.id in registry.vendor_ids():
        msg = f"vendor {body.id} is already registered"
        raise ConflictError(msg)
    registry.put_vendors([body])
    return body


# -- profiles ---------------------------------------------------------------------------------


@router.get("/profiles", response_model=list[DeviceProfile], summary="Device profiles")
def list_profiles(principal: ReadAny, registry: RegistryDep) -> list[DeviceProfile]:
    """Every profile a caller may use: a vendor sees its own and the shared ones."""
    return [p for p in registry.profiles() if p.vendor is None or principal.sees_vendor(p.vendor)]


@router.get("/profiles/{profile_id}", response_model=DeviceProfile, summary="One profile")
def get_profile(profile_id: str, principal: ReadAny, registry: RegistryDep) -> DeviceProfile:
    """A profile: metrics, units, ranges, report interval and codec."""
    profile = registry.profile(profile_id)
    if profile.vendor is not None:
        principal.check_vendor(profile.vendor, kind="profile", key=profile_id)
    return profile


def _own_profile(registry: Registry, principal: Principal, profile_id: str) -> DeviceProfile:
    profile = registry.profile(profile_id)
    if profile.vendor is None and principal.role is not Role.ADMIN:
        raise NotFoundError(kind="profile", key=profile_id)  # shared profiles are the city's
    principal.check_vendor(profile.vendor, kind="profile", key=profile_id)
    return profile


def _checked_profile(
    principal: Principal, registry: Registry, check: CodecCheck, body: DeviceProfile
) -> DeviceProfile:
    if principal.role is Role.VENDOR:
        if body.vendor not in (None, principal.vendor):
            msg = f"vendor {body.vendor} is not yours ({principal.vendor})"
            raise InvalidDefinitionError(msg)
        body = body.model_copy(update={"vendor": principal.vendor})
    elif body.vendor is not None and body.vendor not in registry.vendor_ids():
        raise NotFoundError(kind="vendor", key=body.vendor)
    try:
        check(body.codec)
    except ValueError as exc:
        msg = f"profile {body.id}: codec: {exc}"
        raise InvalidDefinitionError(msg) from exc
    return body


@router.post(
    "/profiles", response_model=DeviceProfile, status_code=201, summary="Create a device profile"
)
def create_profile(
    principal: DeviceWriter,
    registry: RegistryDep,
    check: Annotated[CodecCheck, Depends(_codec_check)],
    body: Annotated[DeviceProfile, Body()],
) -> DeviceProfile:
    """A vendor's device model: metrics, units, ranges, report interval and how to decode it."""
    if body.id in {p.id for p in registry.profiles()}:
        msg = f"profile {body.id} exists already"
        raise ConflictError(msg)
    profile = _checked_profile(principal, registry, check, body)
    registry.put_profiles([profile])
    return profile


@router.put("/profiles/{profile_id}", response_model=DeviceProfile, summary="Change a profile")
def replace_profile(
    profile_id: str,
    principal: DeviceWriter,
    registry: RegistryDep,
    check: Annotated[CodecCheck, Depends(_codec_check)],
    body: Annotated[DeviceProfile, Body()],
) -> DeviceProfile:
    """Replace a profile's definition (its devices decode with it from the next message on)."""
    old = _own_profile(registry, principal, profile_id)
    if body.id != profile_id:
        msg = f"the body's id {body.id} is not {profile_id}"
        raise InvalidDefinitionError(msg)
    if body.type != old.type:
        msg = f"profile {profile_id} describes {old.type} devices; create a new profile for {body.type}"
        raise InvalidDefinitionError(msg)
    profile = _checked_profile(principal, registry, check, body)
    if principal.role is Role.ADMIN:
        profile = profile.model_copy(update={"vendor": body.vendor})
    registry.put_profiles([profile])
    return profile


@router.delete("/profiles/{profile_id}", status_code=204, summary="Delete an unused profile")
def delete_profile(profile_id: str, principal: DeviceWriter, registry: RegistryDep) -> None:
    """Delete a profile no device uses."""
    _own_profile(registry, principal, profile_id)
    registry.delete_profile(profile_id)
