"""The snapshot a screen gets on connect: devices with their latest values, active alerts, cameras, counts.

Built from live state arrays for the devices a filter group sees: the values of all of them are read
with one fancy index, the non-empty (device, metric) cells found with one ``nonzero``; what does not
change with state (a device's id, position, area; the camera list while it is equal) is encoded
once and spliced in. A group caches its snapshot text, so a room of screens connecting at once
costs one build.
"""

from __future__ import annotations

from collections import defaultdict
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

import msgspec
import numpy as np
from numpy.typing import NDArray

from alerts.lifecycle import Alert
from alerts.wire import alert_body
from hub.feed_devices import FeedDevices
from hub.feed_frames import Filter
from hub.state import LiveState

COUNTED_LEVELS = ("blue", "yellow", "orange", "red")

ENCODE_CHUNK = 1000
"""Rows encoded per encoder call (see `_chunked`)."""

_encoder = msgspec.json.Encoder()
_ONLINE: NDArray[np.object_] = np.array([None, False, True], dtype=object)  # by status + 1


class _Head(msgspec.Struct, gc=False):
    """A device's fields that change only with the registry, in wire order (see `device_parts`)."""

    id: str
    vendor: str
    type: str
    lat: float
    lon: float
    area: str
    online: None = None  # encoded, then cut off: the head ends with the key of the state


class _State(msgspec.Struct, gc=False):
    """A device's state in wire order, after its head.

    Structs, not dicts: they build and encode faster, and ``gc=False`` keeps 10,000 of them from
    setting off collections (they hold only numbers and a dict of floats, so never a cycle).
    """

    online: bool | None
    last_seen: int | None
    values: dict[str, float]


_HEAD_END = b"null}"  # what `_Head.online` encodes to, cut off
_STATE_START = b'{"online":'


class DeviceHeads:
    """Each device's JSON up to its state, ``b'},{"id":...,"area":"...","online":'``, by index.

    Kept per device table (the feed builds a new one when the registry changes): a snapshot then
    encodes only the state of its devices, and splices. The leading ``},`` closes the previous
    device, so the snapshot's device list is one join.
    """

    def __init__(self) -> None:
        """Start with no table."""
        self._last: tuple[FeedDevices, NDArray[np.object_]] | None = None

    def __call__(self, devices: FeedDevices) -> NDArray[np.object_]:
        """The heads of ``devices`` (built on the first call for a table, ~10 ms for 10,000)."""
        last = self._last  # one read: renders run in worker threads
        if last is not None and last[0] is devices:
            return last[1]
        heads = np.empty(devices.size, dtype=object)
        heads[:] = [
            b"}," + _encoder.encode(_Head(*fields))[: -len(_HEAD_END)]
            for fields in zip(
                devices.ids.tolist(),
                devices.vendor.tolist(),
                devices.type.tolist(),
                devices.lat.tolist(),
                devices.lon.tolist(),
                devices.area.tolist(),
                strict=True,
            )
        ]
        self._last = (devices, heads)
        return heads


_device_heads = DeviceHeads()


def device_parts(cap: Capture) -> list[bytes]:
    """The snapshot's devices as pieces of one JSON array (join them): id, position, state, values.

    The states of all devices are encoded in one call and cut at each ``},{"online":`` (no string
    can hold that sequence unescaped), then interleaved with the cached heads. Against building and
    encoding whole rows, this halves the devices' part of a snapshot (10,000 devices: ~10 -> ~5 ms
    here), and the build of a snapshot under load is what a connecting screen waits for.
    """
    devices, index = cap.devices, cap.index
    if not len(index):
        return [b"[]"]
    rows, cols = np.nonzero(cap.times != cap.never)
    values: list[dict[str, float]] = [{} for _ in range(len(index))]
    for row, name, value in zip(
        rows.tolist(), devices.metrics[cols].tolist(), cap.values[rows, cols].tolist(), strict=True
    ):
        values[row][name] = value
    seen: list[int | None] = [None if t == cap.never else t for t in cap.last_seen.tolist()]
    online = _ONLINE[cap.online.astype(np.intp) + 1].tolist()
    states = _encoder.encode(list(map(_State, online, seen, values)))
    # b'[{"online":S0},{"online":S1}]' -> [b"S0", b"S1"]
    cut = states[len(_STATE_START) + 1 : -2].split(b"}," + _STATE_START)
    parts: list[bytes] = [b""] * (2 * len(cut) + 2)
    parts[1:-1:2] = _device_heads(devices)[index].tolist()
    parts[2:-1:2] = cut
    parts[1] = parts[1][2:]  # the first device closes none before it
    parts[0], parts[-1] = b"[", b"}]"
    return parts


def counts(
    devices: FeedDevices,
    index: NDArray[np.intp],
    online: NDArray[np.int8],
    alerts: Sequence[Alert],
) -> dict[str, dict[str, Any]]:
    """Devices, online, offline and active alerts by level, for every area path and each of its parents."""
    out: dict[str, dict[str, Any]] = {}
    for codes, names in devices.area_prefixes():
        code = codes[index]
        valid = code >= 0
        size = len(names)
        total = np.bincount(code[valid], minlength=size)
        on = np.bincount(code[valid & (online == 1)], minlength=size)
        off = np.bincount(code[valid & (online == 0)], minlength=size)
        for i in np.flatnonzero(total).tolist():
            out[names[i]] = {
                "devices": int(total[i]),
                "online": int(on[i]),
                "offline": int(off[i]),
                "alerts": dict.fromkeys(COUNTED_LEVELS, 0),
            }
    by_area: dict[str, list[str]] = defaultdict(list)
    for alert in alerts:
        area = alert.area
        if area is None and alert.device is not None:
            at = devices.index_of(alert.device)
            area = str(devices.area[at]) if at is not None else None
        if area and alert.level.label in COUNTED_LEVELS:
            by_area[area].append(alert.level.label)
    for area, levels in by_area.items():
        parts = area.split("/")
        for depth in range(1, len(parts) + 1):
            entry = out.setdefault(
                "/".join(parts[:depth]),
                {
                    "devices": 0,
                    "online": 0,
                    "offline": 0,
                    "alerts": dict.fromkeys(COUNTED_LEVELS, 0),
                },
            )
            for level in levels:
                entry["alerts"][level] += 1
    return out


@dataclass(frozen=True, slots=True)
class Capture:
    """A stream's part of live state at one seq, copied on the event loop (where state is written).

    Copying costs a few fancy indexes; turning it into text (`render`) is the expensive part and
    runs in a worker thread, so screens keep receiving frames while a snapshot is built.
    """

    seq: int
    now_ms: int
    filt: Filter
    devices: FeedDevices
    index: NDArray[np.intp]
    values: NDArray[np.float64]
    times: NDArray[np.int64]
    last_seen: NDArray[np.int64]
    online: NDArray[np.int8]
    never: int


def capture(
    *,
    seq: int,
    now_ms: int,
    filt: Filter,
    devices: FeedDevices,
    mask: NDArray[np.bool_],
    state: LiveState,
) -> Capture:
    """Copy what the snapshot of a stream at ``seq`` shows (call on the event loop)."""
    never = LiveState.never()
    index = np.flatnonzero(mask).astype(np.intp)
    d_state, m_state = state.shape
    inside = index < d_state
    n_metrics = min(m_state, len(devices.metrics))
    values = np.full((len(index), n_metrics), np.nan)
    times = np.full((len(index), n_metrics), never, dtype=np.int64)
    values[inside] = state.value[index[inside], :n_metrics]
    times[inside] = state.ts[index[inside], :n_metrics]
    last_seen, status = state.devices(index)
    online = devices.online(index, status, last_seen, now_ms, never)
    return Capture(seq, now_ms, filt, devices, index, values, times, last_seen, online, never)


def render(
    cap: Capture,
    active_alerts: Sequence[Alert],
    cameras: Sequence[dict[str, Any]],
    response: dict[str, list[dict[str, Any]]] | None = None,
) -> str:
    """The snapshot text: what a screen needs to draw everything its stream may show.

    ``response``: the open incidents, units and warnings in force the stream shows
    (`hub.feed_response.FeedResponse.snapshot`), added under their keys.
    """
    filt = cap.filt
    alerts = [a for a in active_alerts if filt.wants_alert(a, cap.devices)]
    # The source's dicts as they are: `hub.feed.CameraSource` promises the protocol's fields.
    shown = list(cameras) if filt.all_cameras else [c for c in cameras if filt.wants_camera(c)]
    # One join makes the text: the devices and cameras (3 MB for 10,000 + 6,000) are copied once,
    # not into an array and then into the body. Keys in the order the protocol lists them.
    top = _encoder.encode({"type": "snapshot", "seq": cap.seq, "ts": cap.now_ms})
    tail = _encoder.encode(
        {"counts": counts(cap.devices, cap.index, cap.online, alerts), **(response or {})}
    )
    return b"".join(
        [
            top[:-1],
            b',"devices":',
            *device_parts(cap),
            b',"alerts":',
            _encoder.encode([alert_body(a) for a in alerts]),
            b',"cameras":',
            _camera_text(shown),
            b",",
            tail[1:],
        ]
    ).decode()


class CameraText:
    """The JSON of a list of cameras, kept while the source hands back an equal list.

    Cameras change seldom (a camera registered, a finding confirmed), and the source's entries are
    shared dicts it replaces on change (`hub.video_wiring.FeedCameras`), so comparing the new list
    with the last one mostly meets the same objects: ~0.1 ms for 6,000 cameras against 2-3 ms of
    encoding. An equal list of other dicts encodes the same, so it is the same text either way.
    """

    def __init__(self) -> None:
        """Start with nothing kept."""
        self._last: tuple[list[dict[str, Any]], bytes] | None = None

    def __call__(self, cameras: Sequence[dict[str, Any]]) -> bytes:
        """``cameras`` as one JSON array."""
        last = self._last  # one read: renders run in worker threads
        if last is not None and last[0] == cameras:
            return last[1]
        kept = list(cameras)
        text = _chunked(kept)
        self._last = (kept, text)
        return text


_camera_text = CameraText()


def _chunked(items: Sequence[object], size: int = ENCODE_CHUNK) -> bytes:
    """``items`` as one JSON array, encoded a chunk at a time.

    The encoder holds the GIL for a whole call; a snapshot is built in a worker thread, and one call
    over 6,000 cameras would keep the event loop (and ingestion) off the interpreter for a few ms.
    """
    parts = [_encoder.encode(items[i : i + size])[1:-1] for i in range(0, len(items), size)]
    return b"[" + b",".join(parts) + b"]"
