"""Bulk definitions: vendors, profiles and devices read from YAML, JSON or CSV files into the registry."""

from __future__ import annotations

import csv
import io
import json
import logging
import time
from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass
from importlib import resources
from pathlib import Path
from typing import Any, Literal

import pydantic
import yaml

from devices.errors import InvalidDefinitionError
from devices.profiles import Device, DeviceProfile, Vendor
from devices.registry import Registry

logger = logging.getLogger(__name__)

Kind = Literal["vendors", "profiles", "devices"]
KINDS: tuple[Kind, ...] = ("vendors", "profiles", "devices")

# CSV columns of a device row besides the ``tag.<key>`` ones; ``id`` is the only one required.
CSV_COLUMNS = ("id", "vendor", "profile", "name", "lat", "lon", "area", "status")
_TAG_PREFIX = "tag."
_MAX_PROBLEMS = 10  # a file with thousands of bad rows should not make a megabyte-long message

_ADAPTERS: dict[Kind, pydantic.TypeAdapter[Any]] = {
    "vendors": pydantic.TypeAdapter(list[Vendor]),
    "profiles": pydantic.TypeAdapter(list[DeviceProfile]),
    "devices": pydantic.TypeAdapter(list[Device]),
}


@dataclass(frozen=True, slots=True)
class Definitions:
    """What one file defines, validated; any part may be empty."""

    vendors: tuple[Vendor, ...] = ()
    profiles: tuple[DeviceProfile, ...] = ()
    devices: tuple[Device, ...] = ()

    def __add__(self, other: Definitions) -> Definitions:
        """Definitions of both, ``self`` first."""
        return Definitions(
            self.vendors + other.vendors,
            self.profiles + other.profiles,
            self.devices + other.devices,
        )


@dataclass(frozen=True, slots=True)
class ImportResult:
    """What `import_definitions` put into the registry."""

    vendors: int = 0
    profiles: int = 0
    devices_new: int = 0
    devices_updated: int = 0


# -- reading ------------------------------------------------------------------------------------


def read_file(path: str | Path, *, plain_list: Kind = "devices") -> Definitions:
    """Read and validate one definitions file.

    A ``.yaml``/``.yml``/``.json`` file holds either a mapping with any of the keys ``vendors``,
    ``profiles`` and ``devices`` (each a list), or a plain list, which is taken as ``plain_list``.
    A ``.csv`` file holds devices: a header row naming ``id,vendor,profile,name,lat,lon,area``
    (``status`` optional) and any ``tag.<key>`` columns; an empty cell means "not given".

    Args:
        path: the file.
        plain_list: what a plain list at the top of a YAML/JSON file holds.

    Raises:
        InvalidDefinitionError: the file cannot be parsed, or a definition does not validate; the
            message names the file, the row (CSV line or list index) and the field.
    """
    path = Path(path)
    try:
        text = path.read_text(encoding="utf-8-sig")
    except (OSError, UnicodeDecodeError) as exc:
        msg = f"{path}: cannot read: {exc}"
        raise InvalidDefinitionError(msg) from exc
    return parse_text(
        text, source=str(path), fmt=path.suffix.lower().lstrip("."), plain_list=plain_list
    )


def parse_text(text: str, *, source: str, fmt: str, plain_list: Kind = "devices") -> Definitions:
    """Parse and validate definitions given as text (see `read_file`).

    Args:
        text: the file's content.
        source: the name used in error messages (usually the path).
        fmt: ``yaml``, ``yml``, ``json`` or ``csv``.
        plain_list: what a plain list at the top of a YAML/JSON document holds.

    Raises:
        InvalidDefinitionError: as `read_file`.
    """
    if fmt == "csv":
        rows, lines = _csv_rows(text, source)
        devices = _validate("devices", rows, source, lambda i: f"line {lines[i]}")
        _check_unique(devices, source, lambda i: f"line {lines[i]}")
        return Definitions(devices=tuple(devices))
    if fmt in ("yaml", "yml"):
        doc = _load_yaml(text, source)
    elif fmt == "json":
        try:
            doc = json.loads(text)
        except json.JSONDecodeError as exc:
            msg = f"{source}: not valid JSON: {exc}"
            raise InvalidDefinitionError(msg) from exc
    else:
        msg = f"{source}: unknown file type {fmt!r}; use .yaml, .yml, .json or .csv"
        raise InvalidDefinitionError(msg)
    return _from_document(doc, source, plain_list)


def _load_yaml(text: str, source: str) -> Any:  # noqa: ANN401 - whatever the document holds
    # The C loader is several times faster on big device lists; SafeLoader is the fallback.
    loader = getattr(yaml, "CSafeLoader", yaml.SafeLoader)
    try:
        return yaml.load(text, Loader=loader)  # noqa: S506 - a safe loader
    except yaml.YAMLError as exc:
        msg = f"{source}: not valid YAML: {exc}"
        raise InvalidDefinitionError(msg) from exc


def _from_document(doc: Any, source: str, plain_list: Kind) -> Definitions:  # noqa: ANN401
    if doc is None:
        return Definitions()
    if isinstance(doc, list):
        sections: dict[str, Any] = {plain_list: doc}
    elif isinstance(doc, dict):
        unknown = sorted(str(k) for k in doc if k not in KINDS)
        if unknown:
            msg = f"{source}: unknown top-level keys {unknown}; expected any of {list(KINDS)}"
            raise InvalidDefinitionError(msg)
        sections = doc
    else:
        msg = f"{source}: expected a mapping with {list(KINDS)} or a list of {plain_list}"
        raise InvalidDefinitionError(msg)
    parsed: dict[str, tuple[Any, ...]] = {}
    for kind in KINDS:
        items = sections.get(kind)
        if items is None:
            continue
        if not isinstance(items, list):
            msg = f"{source}: {kind} must be a list, not {type(items).__name__}"
            raise InvalidDefinitionError(msg)
        where = _list_position(kind)
        values = _validate(kind, items, source, where)
        _check_unique(values, source, where)
        parsed[kind] = tuple(values)
    return Definitions(**parsed)


def _list_position(kind: Kind) -> Callable[[int], str]:
    def where(i: int) -> str:
        return f"{kind}[{i}]"

    return where


def _csv_rows(text: str, source: str) -> tuple[list[dict[str, Any]], list[int]]:
    reader = csv.reader(io.StringIO(text, newline=""))
    try:
        header = [h.strip() for h in next(reader)]
    except StopIteration:
        return [], []
    except csv.Error as exc:
        msg = f"{source}: line 1: {exc}"
        raise InvalidDefinitionError(msg) from exc
    for h in header:
        if h not in CSV_COLUMNS and not (h.startswith(_TAG_PREFIX) and len(h) > len(_TAG_PREFIX)):
            msg = (
                f"{source}: line 1: unknown column {h!r}; columns are "
                f"{', '.join(CSV_COLUMNS)} and tag.<key>"
            )
            raise InvalidDefinitionError(msg)
    if len(set(header)) != len(header):
        msg = f"{source}: line 1: a column name repeats: {header}"
        raise InvalidDefinitionError(msg)
    if "id" not in header:
        msg = f"{source}: line 1: the header has no 'id' column"
        raise InvalidDefinitionError(msg)
    plain = [(i, h) for i, h in enumerate(header) if not h.startswith(_TAG_PREFIX)]
    tags = [(i, h[len(_TAG_PREFIX) :]) for i, h in enumerate(header) if h.startswith(_TAG_PREFIX)]
    width = len(header)
    rows: list[dict[str, Any]] = []
    lines: list[int] = []
    try:
        for cells in reader:
            if not any(c.strip() for c in cells):
                continue  # blank line
            line = reader.line_num
            if len(cells) != width:
                msg = f"{source}: line {line}: {len(cells)} cells, the header has {width}"
                raise InvalidDefinitionError(msg)
            row: dict[str, Any] = {h: cells[i].strip() for i, h in plain if cells[i].strip()}
            row_tags = {k: cells[i].strip() for i, k in tags if cells[i].strip()}
            if row_tags:
                row["tags"] = row_tags
            rows.append(row)
            lines.append(line)
    except csv.Error as exc:
        msg = f"{source}: line {reader.line_num}: {exc}"
        raise InvalidDefinitionError(msg) from exc
    return rows, lines


def _validate(kind: Kind, items: list[Any], source: str, where: Callable[[int], str]) -> list[Any]:
    try:
        return list(_ADAPTERS[kind].validate_python(items))
    except pydantic.ValidationError as exc:
        problems = []
        for err in exc.errors(include_url=False)[:_MAX_PROBLEMS]:
            loc = list(err["loc"])
            index = loc.pop(0) if loc and isinstance(loc[0], int) else None
            item = items[index] if isinstance(index, int) else None
            ident = item.get("id") if isinstance(item, Mapping) else None
            at = where(index) if isinstance(index, int) else "?"
            if ident is not None:
                at += f" ({kind[:-1]} {ident!r})"
            field = ".".join(str(p) for p in loc) or "(whole entry)"
            problems.append(f"{at}, field {field}: {err['msg']}")
        more = exc.error_count() - len(problems)
        tail = f"; and {more} more" if more > 0 else ""
        msg = f"{source}: {exc.error_count()} invalid {kind}: {'; '.join(problems)}{tail}"
        raise InvalidDefinitionError(msg) from exc


def _check_unique(values: Sequence[Any], source: str, where: Callable[[int], str]) -> None:
    first: dict[str, int] = {}
    for i, v in enumerate(values):
        j = first.setdefault(v.id, i)
        if j != i:
            msg = f"{source}: {where(i)}, field id: {v.id!r} repeats {where(j)}"
            raise InvalidDefinitionError(msg)


# -- importing ----------------------------------------------------------------------------------


def import_definitions(
    registry: Registry,
    defs: Definitions,
    progress: Callable[[int], None] | None = None,
    chunk: int = 2000,
) -> ImportResult:
    """Put definitions into the registry: vendors, then profiles, then devices in chunks.

    Devices are checked against the profiles and vendors (those in ``defs`` and those the registry
    already holds) before anything is written, so a bad reference changes nothing.

    Args:
        registry: where to put them.
        defs: what to put.
        progress: called with the number of devices done after each chunk.
        chunk: devices per registry transaction.

    Raises:
        InvalidDefinitionError: an id repeats, a device names an unknown profile or vendor, or a
            vendor that is not its profile's vendor.
    """
    if chunk < 1:
        msg = f"chunk must be at least 1, not {chunk}"
        raise ValueError(msg)
    for kind in KINDS:
        _check_unique(getattr(defs, kind), "definitions", _list_position(kind))
    _check_references(registry, defs)
    started = time.perf_counter()
    registry.put_vendors(defs.vendors)
    registry.put_profiles(defs.profiles)
    new = 0
    devices = defs.devices
    for start in range(0, len(devices), chunk):
        new += registry.put_devices(devices[start : start + chunk])
        if progress is not None:
            progress(min(start + chunk, len(devices)))
    result = ImportResult(
        vendors=len(defs.vendors),
        profiles=len(defs.profiles),
        devices_new=new,
        devices_updated=len(devices) - new,
    )
    logger.info(
        "imported %s vendors, %s profiles, %s new and %s updated devices in %.2f s",
        result.vendors,
        result.profiles,
        result.devices_new,
        result.devices_updated,
        time.perf_counter() - started,
    )
    return result


def _check_references(registry: Registry, defs: Definitions) -> None:
    vendors = {v.id for v in registry.vendors()} | {v.id for v in defs.vendors}
    profiles = {p.id: p for p in registry.profiles()}
    profiles.update((p.id, p) for p in defs.profiles)
    for p in defs.profiles:
        if p.vendor is not None and p.vendor not in vendors:
            msg = f"profile {p.id!r}: vendor {p.vendor!r} is not defined"
            raise InvalidDefinitionError(msg)
    seen: set[tuple[str, str]] = set()  # (vendor, profile) pairs already checked
    for i, d in enumerate(defs.devices):
        if (d.vendor, d.profile) in seen:
            continue
        profile = profiles.get(d.profile)
        if profile is None:
            msg = f"devices[{i}] (device {d.id!r}), field profile: {d.profile!r} is not defined"
            raise InvalidDefinitionError(msg)
        if d.vendor not in vendors:
            msg = f"devices[{i}] (device {d.id!r}), field vendor: {d.vendor!r} is not defined"
            raise InvalidDefinitionError(msg)
        if profile.vendor is not None and profile.vendor != d.vendor:
            msg = (
                f"devices[{i}] (device {d.id!r}), field vendor: {d.vendor!r} differs from "
                f"profile {profile.id!r}'s vendor {profile.vendor!r}"
            )
            raise InvalidDefinitionError(msg)
        seen.add((d.vendor, d.profile))


def load_files(
    registry: Registry,
    paths: Iterable[str | Path],
    progress: Callable[[int], None] | None = None,
) -> ImportResult:
    """Read every file first (so one bad file changes nothing), then import them together."""
    defs = Definitions()
    for path in paths:
        defs = defs + read_file(path)
    return import_definitions(registry, defs, progress)


def shipped_definitions() -> Definitions:
    """The vendors and profiles that ship with the hub (``devices/data/*.yaml``)."""
    data = resources.files("devices") / "data"
    files: tuple[tuple[str, Kind], ...] = (
        ("vendors.yaml", "vendors"),
        ("profiles.yaml", "profiles"),
        ("sl651.yaml", "profiles"),  # hydrological stations over TCP: vendors and profiles
    )
    defs = Definitions()
    for name, kind in files:
        text = (data / name).read_text(encoding="utf-8")
        defs = defs + parse_text(text, source=f"devices/data/{name}", fmt="yaml", plain_list=kind)
    return defs


def load_shipped(registry: Registry) -> ImportResult:
    """Put the shipped vendors and profiles into ``registry``."""
    return import_definitions(registry, shipped_definitions())
