"""Bulk uploads as rows: a CSV file (header row) or a JSON list, each row numbered for the error it may earn.

Devices (`devices.registration`) and cameras (`video.bulk`) take the same uploads; what a row means
is theirs, reading the file is this module's.
"""

from __future__ import annotations

import csv
import io
import json
from collections.abc import Callable, Iterator, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any, Generic, TypeVar

T = TypeVar("T")


@dataclass(frozen=True, slots=True)
class RowError:
    """A refused row: where it is in the upload, its id if it had one, and why."""

    row: int
    id: str | None
    reason: str


@dataclass(slots=True)
class Sorted(Generic[T]):
    """An upload sorted out: what to write, what was already so, and what was refused."""

    new: list[T] = field(default_factory=list)
    changed: list[T] = field(default_factory=list)
    unchanged: int = 0
    errors: list[RowError] = field(default_factory=list)


def upload_rows(
    body: bytes,
    content_type: str,
    *,
    things: str,
    columns: Sequence[str],
    required: Sequence[str],
    max_rows: int,
    error: Callable[[str], Exception],
    csv_row: Callable[[dict[str, Any]], None] = lambda _row: None,
) -> Iterator[tuple[int, Mapping[str, Any]]]:
    """``(row number, fields)`` of a CSV (header row; numbers are file lines) or JSON upload.

    JSON is a list of objects or ``{"<things>": [...]}``; its row numbers count items from 1. A CSV
    row's blank cells are left out, and ``csv_row`` turns its text cells into values in place.

    Raises:
        the exception ``error`` makes: not CSV or JSON as described, or more than ``max_rows`` rows.
    """

    def check_size(n: int) -> None:
        if n > max_rows:
            msg_0 = f"at most {max_rows} {things} per upload: split the file"
            raise error(msg_0)

    if "json" in content_type:
        try:
            doc = json.loads(body)
        except (ValueError, UnicodeDecodeError) as exc:
            msg = f"the upload is not JSON: {exc}"
            raise error(msg) from exc
        if isinstance(doc, dict):
            doc = doc.get(things)
        if not isinstance(doc, list):
            msg = f'JSON uploads are a list of {things} or {{"{things}": [...]}}'
            raise error(msg)
        check_size(len(doc))
        for n, item in enumerate(doc, start=1):
            yield n, item if isinstance(item, dict) else {"__not_an_object__": item}
    elif "csv" in content_type or content_type.startswith("text/"):
        try:
            text = body.decode("utf-8-sig")  # spreadsheets write a byte-order mark
        except UnicodeDecodeError as exc:
            msg = f"the CSV is not UTF-8: {exc}"
            raise error(msg) from exc
        reader = csv.DictReader(io.StringIO(text))
        header = [h.strip() for h in reader.fieldnames or []]
        unknown = [h for h in header if h not in columns]
        if any(r not in header for r in required) or unknown:
            msg = f"CSV header needs {' and '.join(required)}, may have {', '.join(columns)}"
            if unknown:
                msg += f"; unknown columns: {', '.join(unknown)}"
            raise error(msg)
        reader.fieldnames = header
        for n, raw in enumerate(reader, start=2):
            check_size(n - 1)
            row: dict[str, Any] = {
                k: v.strip()
                for k, v in raw.items()
                if k is not None and v is not None and v.strip()
            }
            if None in raw:
                row["__extra__"] = raw[None]
            csv_row(row)
            yield n, row
    else:
        msg_0 = f"send text/csv or application/json, not {content_type or 'no content type'}"
        raise error(msg_0)
