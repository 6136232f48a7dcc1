"""SenML (RFC 8428) JSON, understood natively: base fields resolved, names split into device and metric.

Resolution follows RFC 8428 §4: ``bn``, ``bt``, ``bu`` and ``bv`` apply to their own record and every
later one until the next record that sets them again. The resolved name is ``bn + n``; it is split at
its last ``:`` or ``/`` into the device id and the metric (``"wl-00001:" + "water_level"``), and a name
with neither is a metric of the device the topic names. A device named this way must be registered
under exactly that id: ``"urn:dev:mac:0024be:temp"`` names metric ``temp`` of device
``urn:dev:mac:0024be``. The resolved time ``bt + t`` is in seconds; below 2**28 it is relative to the
receive time (§4.5.3), and a record with neither ``bt`` nor ``t`` (or a resolved time of 0, "now")
gets the receive time.

Not supported, and rejected per record: string (``vs``) and data (``vd``) values, and records that
carry only a sum (``s``). Must-understand fields (names ending in ``_``, §4.4) are not checked.
"""

from __future__ import annotations

from typing import Annotated, Literal

import msgspec
from pydantic import BaseModel, ConfigDict, Field

from ingest.codecs import register
from ingest.codecs._time import MAX_MS, MIN_MS
from ingest.codecs.base import DecodeError, DecodeReason, RawMessage, Sink

_RELATIVE_BELOW = 2**28  # RFC 8428 §4.5.3: times below this are relative to "now"
_CACHE_SIZE = 4096


class SenMLConfig(BaseModel):
    """Settings of the SenML codec."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    codec: Literal["senml"] = Field(title="Codec name")
    names: dict[str, Annotated[str, Field(min_length=1)]] = Field(
        default_factory=dict,
        title="Metric names",
        description="The vendor's record name (after the device part) -> the canonical metric name",
    )


class SenMLRecord(msgspec.Struct, frozen=True, gc=False):
    """One SenML record as sent; every field optional (RFC 8428 §4.1, JSON labels)."""

    bn: str | None = None
    bt: float | None = None
    bu: str | None = None
    bv: float | None = None
    bs: float | None = None
    bver: int | None = None
    n: str | None = None
    u: str | None = None
    v: float | None = None
    vs: str | None = None
    vb: bool | None = None
    vd: str | None = None
    s: float | None = None
    t: float | None = None
    ut: float | None = None


def _split(name: str) -> tuple[str, str]:
    """``(device_id, metric)`` from a resolved name: split at the last ``:`` or ``/``.

    The device id is ``""`` when the name has no device part: the topic's device is meant.
    """
    cut = max(name.rfind(":"), name.rfind("/"))
    if cut < 0:
        return "", name
    return name[:cut], name[cut + 1 :]


@register("senml", SenMLConfig)
class SenMLCodec:
    """Decodes a SenML pack into one reading per record with a numeric or boolean value."""

    name = "senml"

    def __init__(self, config: SenMLConfig, *, site_zone: str) -> None:
        """Build the codec; SenML times are epoch seconds, so ``site_zone`` is not used."""
        del site_zone
        self._names = dict(config.names)
        self._split: dict[str, tuple[str, str]] = {}
        self._decoder = msgspec.json.Decoder(list[SenMLRecord])

    def decode(self, raw: RawMessage, sink: Sink) -> None:
        """Decode one SenML pack into ``sink``; a bad record is rejected alone.

        Raises:
            DecodeError: MALFORMED_JSON when the payload is not JSON; WRONG_TYPE when it is not an
                array of SenML records (the detail names the place, e.g. ``$[2].v``).
        """
        try:
            records = self._decoder.decode(raw.payload)
        except msgspec.ValidationError as exc:
            msg = f"payload is not a SenML pack: {exc}"
            raise DecodeError(DecodeReason.WRONG_TYPE, msg, raw.device_id) from exc
        except msgspec.DecodeError as exc:
            msg = f"payload is not JSON: {exc}"
            raise DecodeError(DecodeReason.MALFORMED_JSON, msg, raw.device_id) from exc

        add, reject, split = sink.add, sink.reject, self._split
        topic_device, received_ms = raw.device_id, raw.received_ms
        bn, bt, bu, bv = "", 0.0, None, 0.0
        for i, rec in enumerate(records):
            if rec.bn is not None:
                bn = rec.bn
            if rec.bt is not None:
                bt = rec.bt
            if rec.bu is not None:
                bu = rec.bu
            if rec.bv is not None:
                bv = rec.bv
            name = bn + rec.n if rec.n is not None else bn
            # Names repeat from message to message: split each (and map its metric) once.
            parts = split.get(name)
            if parts is None:
                parts = self._split_name(name)
            device, metric = parts
            device = device or topic_device
            if rec.v is not None and metric:
                value = rec.v + bv
            elif rec.vb is not None and metric:
                value = 1.0 if rec.vb else 0.0
            else:
                reject(_unusable(rec, i, metric, device))
                continue
            seconds = bt + rec.t if rec.t is not None else bt
            ms = seconds * 1000.0
            try:
                # An absolute time in range is the common case; anything else takes the slow path.
                ts_ms = (
                    round(ms)
                    if MIN_MS <= ms < MAX_MS
                    else _time_ms(seconds, received_ms, i=i, metric=metric, device=device)
                )
                add(device, metric, ts_ms, value, rec.u if rec.u is not None else bu)
            except DecodeError as err:
                reject(err)

    def _split_name(self, name: str) -> tuple[str, str]:
        """``(device_id or "", metric)`` of a resolved name, remembered for the next message."""
        device, metric = _split(name)
        parts = (device, self._names.get(metric, metric))
        if len(self._split) >= _CACHE_SIZE:
            self._split.clear()
        self._split[name] = parts
        return parts


def _unusable(rec: SenMLRecord, i: int, metric: str, device: str) -> DecodeError:
    """Why a record gives no reading: no metric in its name, or no numeric or boolean value."""
    if not metric:
        msg = f"record {i} has no name (n) and its base name does not end in a metric"
        return DecodeError(DecodeReason.MISSING_FIELD, msg, device)
    if rec.vs is not None or rec.vd is not None:
        kind = "a string (vs)" if rec.vs is not None else "data (vd)"
        msg = f"record {i} ({metric}) has {kind} value; the hub stores numbers and booleans"
        return DecodeError(DecodeReason.WRONG_TYPE, msg, device)
    if rec.s is not None:
        msg = f"record {i} ({metric}) has only a sum (s); send the value as v"
        return DecodeError(DecodeReason.WRONG_TYPE, msg, device)
    msg = f"record {i} ({metric}) has no value (v or vb)"
    return DecodeError(DecodeReason.MISSING_FIELD, msg, device)


def _time_ms(seconds: float, received_ms: int, *, i: int, metric: str, device: str) -> int | None:
    """Epoch ms of a record's resolved time in seconds, or None for "now" (RFC 8428: time 0)."""
    if seconds == 0.0:
        return None
    # Below 2**28 the time is relative to now; that also catches -inf and any huge negative.
    ms = received_ms + seconds * 1000.0 if seconds < _RELATIVE_BELOW else seconds * 1000.0
    # Test for the good range, so that NaN (from inf - inf) falls through to the rejection.
    if MIN_MS <= ms < MAX_MS:
        return round(ms)
    msg = (
        f"record {i} ({metric}): time {seconds!r} s is not between 2000 and 2100 "
        "(absolute times are epoch seconds)"
    )
    raise DecodeError(DecodeReason.BAD_TIMESTAMP, msg, device)
