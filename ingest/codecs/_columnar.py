"""The mapping codec's fast path for batches: a whole column at a time instead of one record at a time.

A gateway batch is a list of records of one shape (``{"id": ..., "t": ..., "wl": ...}``). For such a
batch each column (device ids, times, each field's values) is pulled out in one pass, converted with
numpy, and handed to the sink in one `Sink.add_columns` call, which checks devices, units and times on
whole columns too. Anything irregular makes the fast path add nothing and say so; the codec then runs
its per-record loop over the message, so every rejection keeps its exact reason and text.

Two ways in:

* `Columnar.from_payload` decodes the payload straight into msgspec structs of the regular shape:
  msgspec checks each value's type while parsing and no dict is built per record. A payload of another
  shape fails that decoding and takes the generic path.
* `Columnar.from_dicts` works on the generic decoding (dicts and lists), for payloads the typed
  decoding refused (a null field, for one) and configs it cannot express (a device or time taken from
  the message root).
"""

from __future__ import annotations

from collections.abc import Sequence
from operator import attrgetter, itemgetter
from typing import Any

import msgspec
import numpy as np
from numpy.typing import NDArray

from ingest.codecs._time import TimeParser
from ingest.codecs.base import DecodeError, Fields, Sink

COLUMNS_FROM = 20
"""Batches of at least this many records take the fast path. Below it, numpy's fixed cost per call
is more than the per-record loop costs (measured with the bench gateway's records: even at ~20)."""

# What a field's value may be on the generic path: what the loop takes as a number without parsing a
# string, and null (a field the record does not report).
_NUMBER_KINDS = frozenset({float, int, bool, type(None)})
# The same for the typed decoding: msgspec keeps each as the generic decoding would (an int stays an
# int, however large), and refuses anything else.
_NUMBER: Any = bool | int | float
_OPTIONAL: Any = bool | int | float | None
_TIME: Any = int | float | str


class Columnar:
    """The fast path of one mapping codec: its record keys, fields and time parser, compiled once."""

    def __init__(
        self,
        *,
        records: tuple[str, ...] | None,
        device_key: str | None,
        time: tuple[str, TimeParser] | None,
        keys: tuple[str, ...],
        fields: Fields,
        scales: Sequence[float],
        columns_from: int = COLUMNS_FROM,
    ) -> None:
        """Compile the fast path of a codec whose every pointer into a record is one object key.

        Args:
            records: the object keys leading to the records array, when the typed decoding may be
                tried (None: the generic path only, e.g. a device or time taken from the root).
            device_key: each record's device id key; None: the device is given per message.
            time: each record's time key and its parser; None: the time is given per message.
            keys: each field's value key.
            fields: each field's ``(metric, unit as sent)``.
            scales: each field's multiplier.
            columns_from: the fewest records a batch needs to take the fast path.
        """
        self.columns_from = columns_from
        self._device_key = device_key
        self._get_device = itemgetter(device_key) if device_key is not None else None
        self._get_time = itemgetter(time[0]) if time is not None else None
        self._parse = time[1] if time is not None else None
        self._keys = keys
        self._getters = tuple(map(itemgetter, keys))
        self._attrs = tuple(attrgetter(f"v{j}") for j in range(len(keys)))
        self._fields = fields
        # x * 1.0 is x for every float (and float(x) for an int or bool): skip it when it is all.
        self._scale = None if all(s == 1.0 for s in scales) else np.array(scales, dtype=np.float64)
        self._typed: msgspec.json.Decoder[Any] | None = None
        self._depth = 0
        self.typed_from = -1  # payload bytes from which the typed decoding is tried; -1: never
        if records is not None:
            self._typed = _typed_decoder(records, device_key, time, keys)
        if self._typed is not None and records is not None:
            self._depth = len(records)
            # A lower bound of a regular record's size: a smaller payload cannot hold a batch.
            required = _named(device_key, time, keys if len(keys) == 1 else ())
            smallest = 3 + sum(len(k.encode()) + 4 for k in required) + max(len(required) - 1, 0)
            self.typed_from = columns_from * smallest

    def from_payload(self, payload: bytes, sink: Sink, *, device: str) -> bool | None:
        """Decode a payload of the regular shape straight into columns.

        Args:
            payload: the message's bytes.
            sink: where the readings go.
            device: the topic's device, for records that name none.

        Returns:
            True when every reading was added. False when nothing was: the payload has the regular
            shape but fewer records than `columns_from`, or a value, time or device the loop would
            reject; the per-record loop must decode it. None when the payload is not of the regular
            shape (or not JSON): the generic paths must decode it.
        """
        assert self._typed is not None  # noqa: S101 - only called when typed_from allows it
        try:
            node = self._typed.decode(payload)
        # ValidationError too: another shape, or a null, string...; RecursionError: nested too
        # deeply for msgspec, which the generic path rejects with its reason.
        except (msgspec.DecodeError, RecursionError):
            return None
        for _ in range(self._depth):
            node = node.inner
        records: list[Any] = node
        n = len(records)
        if n < self.columns_from:
            return False
        ids = [r.device for r in records] if self._device_key is not None else [device] * n
        times = [r.time for r in records] if self._parse is not None else None
        if len(self._attrs) == 1:
            return self._add(sink, ids, times, None, [[r.v0 for r in records]], sparse=False)
        columns = [list(map(get, records)) for get in self._attrs]
        return self._add(sink, ids, times, None, columns, sparse=True)

    def from_dicts(
        self, records: list[Any] | tuple[Any], sink: Sink, *, device: str, ts: int | None
    ) -> bool:
        """Add a batch of generically decoded records as columns.

        Args:
            records: the records array.
            sink: where the readings go.
            device: the device of records that name none (the topic's, or the root's).
            ts: the time of records that carry none (the root's; None: the receive time).

        Returns:
            True when every reading was added. False, having added nothing, when anything is
            irregular (a record that is not an object, a device id or time the loop would reject, a
            value that is not a JSON number or boolean, a record with none of the fields) or the sink
            declines: the per-record loop must decode the message.
        """
        n = len(records)
        try:
            # An itemgetter raises KeyError for a missing key, TypeError for a record that is no object.
            get_device, get_time = self._get_device, self._get_time
            ids = list(map(get_device, records)) if get_device is not None else [device] * n
            times = list(map(get_time, records)) if get_time is not None else None
        except (KeyError, TypeError):
            return False
        try:
            columns = [list(map(get, records)) for get in self._getters]
            for column in columns:
                # The cheapest check that every value is a JSON number or boolean: a string (which
                # the loop parses), null, array or object makes it raise TypeError.
                sum(column)
        except (KeyError, TypeError):
            sparse = self._sparse(records)
            if sparse is None:
                return False
            return self._add(sink, ids, times, ts, sparse, sparse=True)
        except OverflowError:  # an integer beyond the float range, next to a float
            return False
        return self._add(sink, ids, times, ts, columns, sparse=False)

    def _sparse(self, records: list[Any] | tuple[Any]) -> list[list[Any]] | None:
        """The value columns when some records lack some fields (absent or null: None).

        None when a record is not an object, or a value is neither a number nor a boolean.
        """
        try:
            columns = [[r.get(k) for r in records] for k in self._keys]
        except AttributeError:  # a record that is not an object
            return None
        kinds: set[type] = set()
        for column in columns:
            kinds.update(map(type, column))
        if not kinds <= _NUMBER_KINDS:
            return None  # a numeric string (parsed by the loop) or a value that is no number
        return columns

    def _add(
        self,
        sink: Sink,
        ids: list[Any],
        times: list[Any] | None,
        ts: int | None,
        columns: list[list[Any]],
        *,
        sparse: bool,
    ) -> bool:
        """Convert the columns (numbers, booleans, and None where ``sparse``) and hand them over."""
        n = len(ids)
        if n == 0:
            return False  # nothing to add: the loop has nothing to do either
        ts_col: NDArray[np.int64] | None = None
        latest = ts
        try:
            if times is not None:
                ts_col, latest = _parse_times(times, self._parse)
            elif ts is not None:
                ts_col = np.full(n, ts, dtype=np.int64)
            if len(columns) == 1 and not sparse:
                value = np.fromiter(columns[0], dtype=np.float64, count=n).reshape(n, 1)
            else:
                value = np.array(columns, dtype=np.float64).T  # (records, fields); None is NaN
        except (DecodeError, TypeError, OverflowError):
            # A time the loop rejects (TypeError: an unhashable one), or an integer beyond floats.
            return False
        present: NDArray[np.bool_] | None = None
        if sparse:
            # Only a None is NaN here: JSON has no NaN, and no number or boolean converts to it.
            present = ~np.isnan(value)
            if not present.any(axis=1).all():
                return False  # a record with none of the fields, rejected by the loop
        if self._scale is not None:
            with np.errstate(over="ignore"):  # inf, as Python's float product gives in the loop
                value = value * self._scale
        return sink.add_columns(ids, ts_col, self._fields, value, present, latest=latest)


def _parse_times(times: list[Any], parse: TimeParser | None) -> tuple[NDArray[np.int64], int]:
    """Each record's time in epoch ms and the latest of them.

    Each distinct value is parsed once (a batch usually shares one).

    Raises:
        DecodeError: a time the loop would reject. TypeError: an unhashable time (array or object).
    """
    assert parse is not None  # noqa: S101 - times are only read with a parser
    n = len(times)
    first = times[0]
    # Values equal as dict keys (1 and 1.0) parse to the same ms, or both fail.
    if times.count(first) == n:
        ms = parse(first)
        same = np.empty(n, dtype=np.int64)
        same.fill(ms)  # np.full's Python wrapper costs twice as much, per message
        return same, ms
    parsed = {t: parse(t) for t in set(times)}
    column = np.fromiter(map(parsed.__getitem__, times), dtype=np.int64, count=n)
    return column, max(parsed.values())


def _typed_decoder(
    records: tuple[str, ...],
    device_key: str | None,
    time: tuple[str, TimeParser] | None,
    keys: tuple[str, ...],
) -> msgspec.json.Decoder[Any] | None:
    """A decoder of exactly the regular shape, or None when structs cannot express it.

    Its values are what the generic decoding gives for them (an int stays an int, however large),
    restricted to the types the loop takes without a rejection or a parse: a device id that is a
    string, a time that is a number or a string, field values that are numbers or booleans (or absent
    or null, when there are several fields). Unknown keys are ignored, as the loop ignores them; of
    repeated keys the last wins, as in the generic decoding.
    """
    named = _named(device_key, time, keys)
    if len(set(named)) != len(named) or "" in named or "" in records:
        return None  # one key in two roles (or an empty key): let the generic path sort it out
    spec: list[tuple[str, Any] | tuple[str, Any, Any]] = []
    rename: dict[str, str] = {}
    if device_key is not None:
        spec.append(("device", str))
        rename["device"] = device_key
    if time is not None:
        spec.append(("time", _TIME))
        rename["time"] = time[0]
    for j, key in enumerate(keys):
        # One field: a record without it is rejected by the loop, so it is required here.
        spec.append((f"v{j}", _NUMBER) if len(keys) == 1 else (f"v{j}", _OPTIONAL, None))
        rename[f"v{j}"] = key
    record = msgspec.defstruct(
        "MappingRecord", spec, rename=rename, kw_only=True, frozen=True, gc=False
    )
    shape: Any = list[record]  # type: ignore[valid-type]
    for key in reversed(records):
        shape = msgspec.defstruct("MappingLevel", [("inner", shape)], rename={"inner": key})
    return msgspec.json.Decoder(shape)


def _named(
    device_key: str | None, time: tuple[str, TimeParser] | None, keys: Sequence[str]
) -> list[str]:
    """The record keys read: the device's, the time's, then the fields'."""
    named = [] if device_key is None else [device_key]
    if time is not None:
        named.append(time[0])
    return named + list(keys)
