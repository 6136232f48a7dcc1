"""Registering cameras in bulk: CSV or JSON rows, each checked and sorted into new, changed, unchanged or refused.

As for devices (`devices.registration`): every refused row comes back with its row number and a
reason, and uploading the same file twice changes nothing. A row whose URL is the redacted form the
API shows (``rtsp://***:***@...``) keeps the stored login, so a listing exported, edited and
uploaded again does not wipe the cameras' passwords. Reasons never quote a URL's login.
"""

from __future__ import annotations

import json
from collections.abc import Iterator, Mapping
from typing import Any

from pydantic import ValidationError

from devices.uploads import RowError, Sorted, upload_rows
from video import urls
from video.cameras import Camera
from video.errors import InvalidCameraError
from video.registry import CameraRegistry

MAX_ROWS = 100_000
CSV_COLUMNS = (
    "id",
    "url",
    "name",
    "department",
    "lat",
    "lon",
    "heading",
    "fov",
    "area",
    "tags",
    "thresholds",
    "enabled",
)


def parse_rows(body: bytes, content_type: str) -> Iterator[tuple[int, Mapping[str, Any]]]:
    """``(row number, fields)`` of a CSV or JSON upload of cameras (`devices.uploads.upload_rows`).

    Raises:
        InvalidCameraError: not CSV or JSON as described, or more than `MAX_ROWS` rows.
    """
    return upload_rows(
        body,
        content_type,
        things="cameras",
        columns=CSV_COLUMNS,
        required=("id", "url"),
        max_rows=MAX_ROWS,
        error=InvalidCameraError,
        csv_row=_csv_cells,
    )


def _csv_cells(row: dict[str, Any]) -> None:
    for key in ("tags", "thresholds"):
        if key in row:
            row[key] = _pairs(row[key], numbers=key == "thresholds")


def _pairs(text: str, *, numbers: bool) -> object:
    """A mapping in a CSV cell: ``k=v;k=v`` or a JSON object (left as text when malformed)."""
    if text.startswith("{"):
        try:
            return json.loads(text)
        except ValueError:
            return text
    pairs = [p.partition("=") for p in text.split(";") if p.strip()]
    if any(not sep for _, sep, _ in pairs):
        return text  # validation says what is wrong
    return {k.strip(): (_number(v.strip()) if numbers else v.strip()) for k, _, v in pairs}


def _number(text: str) -> object:
    try:
        return float(text)
    except ValueError:
        return text


def _first_error(exc: ValidationError) -> str:
    parts = []
    for e in exc.errors(include_input=False)[:3]:
        loc = ".".join(str(p) for p in e.get("loc", ()))
        msg = e.get("msg", "").removeprefix("Value error, ")
        parts.append(f"{loc}: {msg}" if loc else msg)
    return "; ".join(parts)


def sort_rows(
    registry: CameraRegistry, rows: Iterator[tuple[int, Mapping[str, Any]]]
) -> Sorted[Camera]:
    """Check every row and sort it against what the registry holds."""
    out: Sorted[Camera] = Sorted()
    seen: dict[str, int] = {}
    for n, fields in rows:
        checked = _check_row(registry, n, fields, seen)
        if isinstance(checked, RowError):
            out.errors.append(checked)
            continue
        seen[checked.id] = n
        old = registry.cameras.get(checked.id)
        if old is None:
            out.new.append(checked)
        elif checked == old:
            out.unchanged += 1
        else:
            out.changed.append(checked)
    return out


def _check_row(
    registry: CameraRegistry, n: int, fields: Mapping[str, Any], seen: Mapping[str, int]
) -> Camera | RowError:
    """The row as a camera, or why it is refused."""
    row_id = fields.get("id") if isinstance(fields.get("id"), str) else None
    if "__not_an_object__" in fields:
        return RowError(n, None, "a camera is a JSON object")
    if "__extra__" in fields:
        return RowError(n, row_id, "more cells than the header has columns")
    data = dict(fields)
    old = registry.cameras.get(row_id) if row_id else None
    if old is not None and isinstance(data.get("url"), str):
        data["url"] = urls.keep_stored_secrets(data["url"], old.url)
    try:
        camera = Camera.model_validate(data)
    except ValidationError as exc:
        return RowError(n, row_id, _first_error(exc))
    if camera.id in seen:
        return RowError(n, camera.id, f"id {camera.id} repeats row {seen[camera.id]}")
    return camera
