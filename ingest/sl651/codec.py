"""The ``sl651`` codec: SL 651-2014 HEX frames that arrive as one payload (an HTTP uplink, an MQTT message).

Stations on TCP go through `ingest.sl651.server`, which decodes many frames at once; this codec
decodes one payload with the same frame, element and value code, so a profile names ``sl651`` once
and its stations may use any transport. A payload holds one or more complete frames (bytes or their
hexadecimal text), a multi-packet message whole; every frame must come from the device addressed.
"""

from __future__ import annotations

from typing import Literal
from zoneinfo import ZoneInfo

import numpy as np
import pydantic

from ingest.codecs import register
from ingest.codecs.base import DecodeError, DecodeReason, RawMessage, Sink
from ingest.sl651 import elements
from ingest.sl651 import frame as fr
from ingest.sl651.message import Message, Reassembler


class Sl651Config(pydantic.BaseModel):
    """Settings of the sl651 codec (none beyond its name: frames describe themselves)."""

    model_config = pydantic.ConfigDict(extra="forbid", frozen=True)

    codec: Literal["sl651"] = "sl651"


class Sl651Codec:
    """Decodes SL 651-2014 HEX/BCD frames into readings of the station that sent them."""

    name = "sl651"

    def __init__(self, config: Sl651Config, *, site_zone: str) -> None:
        """Station times are local times of ``site_zone``."""
        self.config = config
        self._zone = ZoneInfo(site_zone)

    def decode(self, raw: RawMessage, sink: Sink) -> None:
        """Decode every frame of ``raw``; see the module docstring.

        Raises:
            DecodeError: no complete frame, a frame that fails its CRC or is not the addressed
                station's, or a message whose packets are not all there.
        """
        messages = self._messages(raw)
        sc = elements.Scan()
        base = 0
        for k, m in enumerate(messages):
            try:
                elements.scan(m.body, base, k, m.head.function, sc)
            except elements.BodyError as exc:
                raise DecodeError(DecodeReason.BAD_FRAME, str(exc), raw.device_id) from exc
            base += len(m.body)
        for _, detail in sc.problems:
            sink.reject(DecodeError(DecodeReason.BAD_FRAME, detail, raw.device_id))
        if len(sc) == 0:
            return
        buf = np.frombuffer(b"".join(m.body for m in messages), dtype=np.uint8)
        cols = elements.Columns.of(sc)
        values = elements.decode_values(buf, cols)
        ts, ts_ok = elements.observation_ms(cols.tt_key, self._zone)
        ts = ts + cols.shift_min * 60_000
        for i in np.flatnonzero(values.present).tolist():
            element = elements.element_of(sc.code[i])
            if element is None:  # scan only records mapped elements
                continue
            if not values.valid[i]:
                msg = f"element {sc.code[i]:02X} {element.mnemonic} is not packed BCD"
                sink.reject(DecodeError(DecodeReason.BAD_FRAME, msg, raw.device_id))
                continue
            if not ts_ok[i]:
                msg = f"element {element.mnemonic} has no valid observation time"
                sink.reject(DecodeError(DecodeReason.BAD_TIMESTAMP, msg, raw.device_id))
                continue
            try:
                sink.add(
                    raw.device_id, element.metric, int(ts[i]), float(values.value[i]), element.unit
                )
            except DecodeError as exc:
                sink.reject(exc)

    def _messages(self, raw: RawMessage) -> list[Message]:
        frames, problems = fr.FrameReader().feed(raw.payload)
        if problems:
            p = problems[0]
            raise DecodeError(DecodeReason(p.reason), p.detail, raw.device_id)
        if not frames:
            msg = "no complete SL 651 frame (7E7E ... CRC) in the payload"
            raise DecodeError(DecodeReason.TRUNCATED, msg, raw.device_id)
        ok = fr.checksums_ok(frames)
        packets = Reassembler()
        messages: list[Message] = []
        for data, good in zip(frames, ok.tolist(), strict=True):
            if not good:
                got = int.from_bytes(data[-2:], "big")
                msg = f"CRC in the frame is {got:04X}, the bytes give {fr.crc16(data[:-2]):04X}"
                raise DecodeError(DecodeReason.BAD_CHECKSUM, msg, raw.device_id)
            head = fr.header(data)
            if head.downlink or head.station != raw.device_id:
                msg = f"the frame is from station {head.station}, not device {raw.device_id}"
                raise DecodeError(DecodeReason.BAD_FRAME, msg, raw.device_id)
            if head.function == fr.Function.KEEP_ALIVE:
                continue
            message = packets.add(head, data)
            if message is not None:
                messages.append(message)
        if packets.incomplete():
            msg = "a multi-packet message is missing packets"
            raise DecodeError(DecodeReason.TRUNCATED, msg, raw.device_id)
        return messages


@register("sl651", Sl651Config)
def _build(config: Sl651Config, *, site_zone: str) -> Sl651Codec:
    return Sl651Codec(config, site_zone=site_zone)
