"""Registering devices in bulk: CSV or JSON rows, each checked and sorted into new, changed, unchanged or refused.

Every refused row comes back with its row number and a reason.

Uploading the same file twice is harmless: the second time every row is unchanged. A vendor may register
only its own devices on its own (or shared) profiles; an id that another vendor holds is refused without
saying whose it is.
"""

from __future__ import annotations

import json
from collections.abc import Iterator, Mapping
from typing import Any

from pydantic import ValidationError

from devices.errors import InvalidDefinitionError, NotFoundError
from devices.profiles import Device, DeviceStatus
from devices.registry import Registry
from devices.uploads import RowError, Sorted, upload_rows

MAX_ROWS = 200_000
CSV_COLUMNS = ("id", "profile", "name", "lat", "lon", "area", "tags", "vendor")


def parse_rows(body: bytes, content_type: str) -> Iterator[tuple[int, Mapping[str, Any]]]:
    """``(row number, fields)`` of a CSV or JSON upload of devices (`devices.uploads.upload_rows`).

    Raises:
        InvalidDefinitionError: not CSV or JSON as described, or more than `MAX_ROWS` rows.
    """
    return upload_rows(
        body,
        content_type,
        things="devices",
        columns=CSV_COLUMNS,
        required=("id", "profile"),
        max_rows=MAX_ROWS,
        error=InvalidDefinitionError,
        csv_row=_csv_cells,
    )


def _csv_cells(row: dict[str, Any]) -> None:
    if "tags" in row:
        row["tags"] = _csv_tags(row["tags"])


def _csv_tags(text: str) -> object:
    """Tags in a CSV cell: ``river=huangpu;owner=water`` or a JSON object."""
    if text.startswith("{"):
        try:
            return json.loads(text)
        except ValueError:
            return text
    pairs = [p.partition("=") for p in text.split(";") if p.strip()]
    if any(not sep for _, sep, _ in pairs):
        return text  # let validation say what is wrong
    return {k.strip(): v.strip() for k, _, v in pairs}


def _first_error(exc: ValidationError) -> str:
    parts = []
    for e in exc.errors()[:3]:
        loc = ".".join(str(p) for p in e.get("loc", ()))
        msg = e.get("msg", "").removeprefix("Value error, ")
        parts.append(f"{loc}: {msg}" if loc else msg)
    return "; ".join(parts)


def sort_rows(
    registry: Registry,
    rows: Iterator[tuple[int, Mapping[str, Any]]],
    *,
    vendor: str | None,
) -> Sorted[Device]:
    """Check every row and sort it; ``vendor`` is the uploader's vendor (None for an administrator).

    A row's vendor defaults to the uploader's; its profile must be the same vendor's or shared; an
    existing device keeps its status (a re-upload does not bring a decommissioned device back) and a
    replaced device's row is refused, since its point now belongs to its successor.
    """
    out: Sorted[Device] = Sorted()
    candidates: list[tuple[int, Device]] = []
    seen: dict[str, int] = {}
    for n, fields in rows:
        checked = _check_row(registry, n, fields, vendor, seen)
        if isinstance(checked, RowError):
            out.errors.append(checked)
        else:
            seen[checked.id] = n
            candidates.append((n, checked))

    existing = registry.devices_by_id(d.id for _, d in candidates)
    for n, device in candidates:
        old = existing.get(device.id)
        if old is None:
            out.new.append(device)
        elif old.vendor != device.vendor:
            out.errors.append(RowError(n, device.id, f"id {device.id} is already registered"))
        elif old.status is DeviceStatus.REPLACED:
            out.errors.append(
                RowError(n, device.id, f"device {device.id} was replaced by {old.replaced_by}")
            )
        else:
            kept = device.model_copy(update={"status": old.status})
            if kept == old:
                out.unchanged += 1
            else:
                out.changed.append(kept)
    out.errors.sort(key=lambda e: e.row)
    return out


def _check_row(
    registry: Registry,
    n: int,
    fields: Mapping[str, Any],
    vendor: str | None,
    seen: Mapping[str, int],
) -> Device | RowError:
    """The row as a device, or why it is refused (before looking at what is stored)."""
    if "__not_an_object__" in fields:
        return RowError(n, None, "a device is a JSON object")
    if "__extra__" in fields:
        return RowError(n, _text(fields.get("id")), "more cells than the header has columns")
    data = dict(fields)
    data.setdefault("vendor", vendor)
    for key in ("status", "replaced_by"):
        data.pop(key, None)  # set by the registry's own operations, never by an upload
    try:
        device = Device.model_validate(data)
    except ValidationError as exc:
        return RowError(n, _text(fields.get("id")), _first_error(exc))
    reason = _refusal(registry, device, vendor)
    if reason is None and device.id in seen:
        reason = f"id {device.id} repeats row {seen[device.id]}"
    return device if reason is None else RowError(n, device.id, reason)


def _text(value: object) -> str | None:
    return value if isinstance(value, str) else None


def _refusal(registry: Registry, device: Device, vendor: str | None) -> str | None:
    if vendor is not None and device.vendor != vendor:
        return f"vendor {device.vendor} is not yours ({vendor})"
    if vendor is None and device.vendor not in registry.vendor_ids():
        return f"vendor {device.vendor} is not registered"
    try:
        profile = registry.profile(device.profile)
    except NotFoundError:
        return f"profile {device.profile} does not exist"
    if profile.vendor is not None and profile.vendor != device.vendor:
        return f"profile {device.profile} belongs to another vendor"
    return None
