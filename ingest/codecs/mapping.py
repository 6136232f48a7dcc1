"""Declarative JSON codec: JSON pointers (RFC 6901) to the records, device, time and metric fields.

A profile describes a vendor's JSON instead of shipping code for it::

    codec: mapping
    records: /data          # optional: pointer to an array of records; absent = the payload is one record
    device: /id             # optional: pointer in each record to a device id; absent = the topic's device
    time: {path: /ts, format: epoch_ms}     # optional; absent = the receive time
    fields:
      - {path: /wl, metric: water_level, unit: cm, scale: 1.0}

Pointers of ``device`` and ``time`` are relative to each record; one that starts with ``^`` (``^/ts``) is
taken from the message root instead, e.g. a batch that shares one time. A field missing from a record
(or null) is skipped, since devices report subsets; a record with none of the fields is rejected.

A batch of at least `COLUMNS_FROM` regular records (every pointer into a record one object key) is
decoded a column at a time (`ingest.codecs._columnar`); whenever anything in it is irregular, the
per-record loop decodes the message instead, so both give the same readings and rejections.
"""

from __future__ import annotations

import math
import re
from collections.abc import Callable
from typing import Any, Literal, NamedTuple, TypeAlias

import msgspec
from pydantic import BaseModel, ConfigDict, Field, field_validator

from ingest import units
from ingest.codecs import register
from ingest.codecs._columnar import COLUMNS_FROM, Columnar
from ingest.codecs._time import TimeFormat, TimeParser, parser, zone
from ingest.codecs.base import DecodeError, DecodeReason, RawMessage, Sink

Token: TypeAlias = tuple[str, int | None]
"""One reference token: the object key, and the array index it names (None if it names none)."""
Pointer: TypeAlias = tuple[Token, ...]
"""A compiled JSON pointer; ``()`` is the whole document."""

ROOT = "^"
"""Prefix of a ``device`` or ``time`` pointer taken from the message root rather than the record."""

_MISSING: Any = object()
# Refusals that concern the device rather than one reading: the rest of its record is skipped.
_DEVICE_REASONS = frozenset(
    {DecodeReason.UNKNOWN_DEVICE, DecodeReason.WRONG_VENDOR, DecodeReason.DECOMMISSIONED}
)


def compile_pointer(text: str) -> Pointer:
    """Compile an RFC 6901 JSON pointer into reference tokens, once, at config time.

    Raises:
        ValueError: ``text`` is not a JSON pointer (not empty and not starting with ``/``, or a ``~``
            not followed by ``0`` or ``1``).
    """
    if text == "":
        return ()
    if not text.startswith("/"):
        msg = f"{text!r} is not a JSON pointer: it must be empty or start with '/'"
        raise ValueError(msg)
    tokens: list[Token] = []
    for part in text[1:].split("/"):
        if "~" in part and part.replace("~0", "").replace("~1", "").count("~"):
            msg = f"{text!r} is not a JSON pointer: '~' must be followed by 0 or 1"
            raise ValueError(msg)
        key = part.replace("~1", "/").replace("~0", "~")
        # RFC 6901 §4: an array index is "0" or digits without a leading zero ("-" never exists).
        is_index = key.isascii() and key.isdigit() and (key == "0" or key[0] != "0")
        tokens.append((key, int(key) if is_index else None))
    return tuple(tokens)


def _walk(node: Any, pointer: Pointer) -> Any:  # noqa: ANN401 - decoded JSON in, JSON out
    """The value ``pointer`` names in ``node``, or `_MISSING`."""
    for key, index in pointer:
        kind = type(node)
        if kind is dict:
            node = node.get(key, _MISSING)
            if node is _MISSING:
                return node
        elif kind is list and index is not None and index < len(node):
            node = node[index]
        else:
            return _MISSING
    return node


def _check_pointer(text: str, *, root_allowed: bool = False) -> str:
    compile_pointer(text[len(ROOT) :] if root_allowed and text.startswith(ROOT) else text)
    return text


def _shown(value: object) -> str:
    shown = repr(value)
    return shown if len(shown) <= 64 else shown[:61] + "..."


class _Model(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)


class TimeSpec(_Model):
    """Where each record's time is, and how it is written."""

    path: str = Field(title="Time pointer", description="Relative to the record; '^/ts' = root")
    format: TimeFormat = Field(
        "auto", title="Time format", description="auto|epoch_s|epoch_ms|iso8601"
    )
    zone: str | None = Field(
        None, title="Zone of zone-less ISO times", description="IANA name; default: the site's zone"
    )

    @field_validator("path")
    @classmethod
    def _path_ok(cls, v: str) -> str:
        return _check_pointer(v, root_allowed=True)

    @field_validator("zone")
    @classmethod
    def _zone_ok(cls, v: str | None) -> str | None:
        if v is not None:
            zone(v)
        return v


class FieldSpec(_Model):
    """One metric in a record: where its value is, and its unit as sent."""

    path: str = Field(title="Value pointer", description="Relative to the record, e.g. /wl")
    metric: str = Field(title="Canonical metric name", min_length=1)
    unit: str | None = Field(None, title="Unit as sent", description="None: the canonical unit")
    scale: float = Field(1.0, title="Multiplier", description="Applied before unit conversion")

    @field_validator("path")
    @classmethod
    def _path_ok(cls, v: str) -> str:
        return _check_pointer(v)

    @field_validator("unit")
    @classmethod
    def _unit_ok(cls, v: str | None) -> str | None:
        if v is not None and not units.known(v):
            msg = f"unit {v!r} is not known to the hub (see ingest/units.py)"
            raise ValueError(msg)
        return v

    @field_validator("scale")
    @classmethod
    def _scale_ok(cls, v: float) -> float:
        if not math.isfinite(v):
            msg = "scale must be a finite number"
            raise ValueError(msg)
        return v


class MappingConfig(_Model):
    """Settings of the mapping codec: pointers into the vendor's JSON."""

    codec: Literal["mapping"] = Field(title="Codec name")
    records: str | None = Field(
        None, title="Records pointer", description="Array of records; absent: the payload is one"
    )
    device: str | None = Field(
        None,
        title="Device pointer",
        description="Relative to the record; absent: the topic's device",
    )
    time: TimeSpec | None = Field(None, title="Time", description="Absent: the receive time")
    fields: tuple[FieldSpec, ...] = Field(title="Metric fields", min_length=1)

    @field_validator("records")
    @classmethod
    def _records_ok(cls, v: str | None) -> str | None:
        return None if v is None else _check_pointer(v)

    @field_validator("device")
    @classmethod
    def _device_ok(cls, v: str | None) -> str | None:
        return None if v is None else _check_pointer(v, root_allowed=True)


class _Field(NamedTuple):
    """A compiled `FieldSpec`, unpacked in the hot loop."""

    pointer: Pointer
    key: str | None  # the key when the pointer is one object key: a plain dict lookup
    metric: str
    unit: str | None
    scale: float
    path: str  # as written, for messages


def _relative(text: str) -> tuple[Pointer, bool]:
    """A compiled pointer and whether it is taken from the message root."""
    if text.startswith(ROOT):
        return compile_pointer(text[len(ROOT) :]), True
    return compile_pointer(text), False


@register("mapping", MappingConfig)
class MappingCodec:
    """Decodes any JSON shape a `MappingConfig` describes; a bad record or field is rejected alone."""

    name = "mapping"

    def __init__(
        self, config: MappingConfig, *, site_zone: str, columns_from: int | None = COLUMNS_FROM
    ) -> None:
        """Compile the pointers and the time parser; ``site_zone`` is for zone-less ISO times.

        ``columns_from``: batches of at least this many records take the columnar fast path
        (`ingest.codecs._columnar`); None: never (tests compare the two paths with it).
        """
        self._decoder = msgspec.json.Decoder()
        self._records_path = config.records
        self._records = None if config.records is None else compile_pointer(config.records)
        self._device: tuple[Pointer, bool] | None = None
        if config.device is not None:
            self._device = _relative(config.device)
        self._device_path = config.device or ""
        self._time: tuple[Pointer, bool, TimeParser] | None = None
        self._time_path = ""
        if config.time is not None:
            ptr, from_root = _relative(config.time.path)
            tz = config.time.zone or site_zone
            self._time = (ptr, from_root, parser(config.time.format, tz, config.time.path))
            self._time_path = config.time.path
        self._fields = tuple(
            _Field(ptr, _single_key(ptr), f.metric, f.unit, f.scale, f.path)
            for f in config.fields
            for ptr in (compile_pointer(f.path),)
        )
        # A per-record device or time pointer that is one object key is a plain dict lookup (None:
        # walk the pointer). Worked out here once: no call per message for what the config fixes.
        record_device = self._device[0] if self._device and not self._device[1] else None
        record_time = self._time if self._time and not self._time[1] else None
        self._record_device_key = _single_key(record_device)
        self._record_time_key = _single_key(record_time[0]) if record_time else None
        self._columnar = (
            None
            if columns_from is None
            else self._fast_path(columns_from, record_device, record_time)
        )

    def _fast_path(
        self,
        columns_from: int,
        record_device: Pointer | None,
        record_time: tuple[Pointer, bool, TimeParser] | None,
    ) -> Columnar | None:
        """The columnar fast path, when every pointer into a record is one object key."""
        keys = tuple(f.key for f in self._fields if f.key is not None)
        time_key = self._record_time_key
        if (
            len(keys) != len(self._fields)
            or (record_device is not None and self._record_device_key is None)
            or (record_time is not None and time_key is None)
        ):
            return None
        from_root = (self._device is not None and self._device[1]) or (
            self._time is not None and self._time[1]
        )
        # Straight into structs needs the records array at a fixed place and nothing from the root.
        typed = self._records is not None and not from_root
        return Columnar(
            records=tuple(k for k, _ in self._records)
            if typed and self._records is not None
            else None,
            device_key=self._record_device_key,
            time=(time_key, record_time[2]) if record_time and time_key else None,
            keys=keys,
            fields=tuple((f.metric, f.unit) for f in self._fields),
            scales=[f.scale for f in self._fields],
            columns_from=columns_from,
        )

    def decode(self, raw: RawMessage, sink: Sink) -> None:
        """Decode one message into ``sink``.

        Raises:
            DecodeError: the whole message is rejected: MALFORMED_JSON (not JSON), MISSING_FIELD or
                WRONG_TYPE (no records array), or a device or time taken from the message root
                (or the topic) that is refused.
        """
        columnar, columns = self._columnar, True
        if columnar is not None and len(raw.payload) >= columnar.typed_from >= 0:
            added = columnar.from_payload(raw.payload, sink, device=raw.device_id)
            if added:
                return
            columns = added is None  # False: a regular batch the loop must take (see from_payload)
        try:
            doc = self._decoder.decode(raw.payload)
        except msgspec.DecodeError as exc:  # ValidationError here means a number out of range
            msg = f"payload is not JSON the hub can read: {_readable(exc)}"
            raise DecodeError(DecodeReason.MALFORMED_JSON, msg, raw.device_id) from exc
        except RecursionError as exc:  # msgspec's nesting limit: a hostile [[[[...]]]] payload
            msg = "payload is not JSON the hub can read: arrays or objects nested too deeply"
            raise DecodeError(DecodeReason.MALFORMED_JSON, msg, raw.device_id) from exc
        records = self._find_records(doc, raw)
        device = raw.device_id
        record_device: Pointer | None = None
        if self._device is not None:
            ptr, from_root = self._device
            if from_root:
                device = self._device_id(_walk(doc, ptr), -1, raw.device_id)
            else:
                record_device = ptr
        ts: int | None = None
        record_time: tuple[Pointer, TimeParser] | None = None
        if self._time is not None:
            ptr, from_root, parse = self._time
            if from_root:
                value = _walk(doc, ptr)
                try:
                    ts = parse(value)
                except DecodeError as err:
                    raise self._time_error(err, value, -1, device) from None
            else:
                record_time = (ptr, parse)
        if (
            columns
            and columnar is not None
            and len(records) >= columnar.columns_from
            and columnar.from_dicts(records, sink, device=device, ts=ts)
        ):
            return
        self._decode_records(
            records,
            sink,
            device=device,
            ts=ts,
            record_device=record_device,
            record_time=record_time,
        )

    def _decode_records(  # noqa: PLR0912 - the hot loop, kept whole: no call per field or record
        self,
        records: list[Any] | tuple[Any],
        sink: Sink,
        *,
        device: str,
        ts: int | None,
        record_device: Pointer | None,
        record_time: tuple[Pointer, TimeParser] | None,
    ) -> None:
        """The hot loop: every field of every record into ``sink``, with as few calls as possible."""
        add, reject, fields = sink.add, sink.reject, self._fields
        topic_device = device
        # A one-key pointer is a plain dict lookup on the record; None: walk the pointer.
        # Keys worked out once in __init__: no call per message for what the config fixes.
        device_key, time_key = self._record_device_key, self._record_time_key
        time_ptr, parse = record_time if record_time is not None else ((), None)
        for i, rec in enumerate(records):
            get = rec.get if type(rec) is dict else None
            if record_device is not None:
                v = get(device_key, _MISSING) if get and device_key else _walk(rec, record_device)
                if type(v) is str and v:
                    device = v
                else:
                    try:
                        device = self._device_id(v, i, topic_device)
                    except DecodeError as err:
                        reject(err)
                        continue
            if parse is not None:
                v = get(time_key, _MISSING) if get and time_key else _walk(rec, time_ptr)
                try:
                    ts = parse(v)
                except DecodeError as err:
                    reject(self._time_error(err, v, i, device))
                    continue
            found = False
            for ptr, key, metric, unit, scale, path in fields:
                v = get(key, _MISSING) if get and key else _walk(rec, ptr)
                if v is _MISSING or v is None:
                    continue
                found = True
                kind = type(v)
                if kind is str:  # numeric strings: vendors send them
                    number = _number(v)
                    if number is None:
                        reject(self._not_a_number(i, path, v, device))
                        continue
                    v = number
                elif kind is not float and kind is not int and kind is not bool:
                    reject(self._not_a_number(i, path, v, device))
                    continue
                try:
                    add(device, metric, ts, v * scale, unit)  # bool * 1.0 is 1.0 or 0.0
                except DecodeError as err:
                    if _refused(err, reject, per_record_device=record_device is not None):
                        break  # one rejection for the record, not one per field
                except OverflowError:  # an integer beyond the float range
                    reject(self._not_a_number(i, path, v, device))
            if not found:
                reject(self._no_fields(i, device))

    # -- the rare paths, kept out of the loop ----------------------------------------------------

    def _find_records(self, doc: Any, raw: RawMessage) -> list[Any] | tuple[Any]:  # noqa: ANN401
        kind = type(doc)
        if kind is not dict and kind is not list:
            msg = f"payload is a JSON {_json_kind(doc)}, expected an object or an array"
            raise DecodeError(DecodeReason.WRONG_TYPE, msg, raw.device_id)
        if self._records is None:
            return (doc,)
        records = _walk(doc, self._records)
        if records is _MISSING:
            msg = f"payload has no records array at {self._records_path}"
            raise DecodeError(DecodeReason.MISSING_FIELD, msg, raw.device_id)
        if type(records) is not list:
            msg = f"records at {self._records_path} are a JSON {_json_kind(records)}, expected an array"
            raise DecodeError(DecodeReason.WRONG_TYPE, msg, raw.device_id)
        return records

    def _device_id(self, v: Any, i: int, topic_device: str) -> str:  # noqa: ANN401 - JSON value
        """The device id a record (or the root) names; the hot loop handles plain strings itself."""
        if type(v) is str and v:
            return str(v)
        if type(v) is int:  # numeric ids: vendors send them
            return str(v)
        if v is _MISSING or v is None:
            msg = f"{self._where(i)} has no device id at {self._device_path}"
            raise DecodeError(DecodeReason.MISSING_FIELD, msg, topic_device)
        msg = f"{self._where(i)}: device id {self._device_path} = {_shown(v)} is not a string"
        raise DecodeError(DecodeReason.WRONG_TYPE, msg, topic_device)

    def _time_error(self, err: DecodeError, v: Any, i: int, device: str) -> DecodeError:  # noqa: ANN401
        """The rejection of a record's time, naming the record."""
        if v is _MISSING or v is None:
            # A batch of readings that all got the receive time would collide in the store: refuse.
            msg = f"{self._where(i)} has no time at {self._time_path}"
            return DecodeError(DecodeReason.MISSING_FIELD, msg, device)
        return DecodeError(err.reason, f"{self._where(i)}: {err.detail}", device)

    def _no_fields(self, i: int, device: str) -> DecodeError:
        names = ", ".join(f.path for f in self._fields)
        msg = f"{self._where(i)} has none of the fields {names}"
        return DecodeError(DecodeReason.MISSING_FIELD, msg, device)

    def _not_a_number(self, i: int, path: str, v: object, device: str) -> DecodeError:
        msg = f"{self._where(i)}: {path} = {_shown(v)} is not a number"
        return DecodeError(DecodeReason.WRONG_TYPE, msg, device)

    def _where(self, i: int) -> str:
        if i < 0 or self._records is None:
            return "payload"
        return f"record {self._records_path}/{i}"


def _refused(
    err: DecodeError, reject: Callable[[DecodeError], None], *, per_record_device: bool
) -> bool:
    """Reject a reading the sink refused; True when the refusal is of the record's whole device.

    Raises:
        DecodeError: ``err`` again, when it refuses the message's one device (topic or root): the
            message is rejected whole, once, instead of once per reading.
    """
    if err.reason not in _DEVICE_REASONS:
        reject(err)
        return False
    if not per_record_device:
        raise err
    reject(err)
    return True


def _single_key(ptr: Pointer | None) -> str | None:
    """The key of a pointer that is one object key (looked up directly), else None."""
    return ptr[0][0] if ptr is not None and len(ptr) == 1 and ptr[0][0] else None


def _number(text: str) -> float | None:
    try:
        return float(text)
    except ValueError:
        return None


def _json_kind(value: object) -> str:
    kinds = {dict: "object", list: "array", str: "string", bool: "boolean", type(None): "null"}
    return kinds.get(type(value), "number")


_DEEP_PATH = re.compile(r"(?:\[(?:\.\.\.|\d+)\]){4,}")


def _readable(exc: Exception) -> str:
    """Msgspec's message, with a deep path's run of ``[...]`` counted, not spelled out.

    A hostile payload nested thousands deep made a 5,000-character reason for a vendor to read.
    """
    text = _DEEP_PATH.sub(lambda m: f"[...] x {m.group(0).count('[')}", str(exc))
    return text if len(text) <= _MAX_REASON else text[: _MAX_REASON - 3] + "..."


_MAX_REASON = 300
