"""From checked frames to messages: single-packet frames as they are, multi-packet ones reassembled."""

from __future__ import annotations

from dataclasses import dataclass, field

from ingest.sl651.frame import SYN, Header


@dataclass(frozen=True, slots=True)
class Message:
    """One report: the header of its (first) frame and its whole body.

    Attributes:
        head: the header of the frame, or of packet 1 of a multi-packet message.
        body: the body; the packets' bodies joined in packet order for a multi-packet message.
        raw: the frames' bytes, for dead letters.
    """

    head: Header
    body: bytes
    raw: bytes


@dataclass(slots=True)
class _Partial:
    total: int
    parts: dict[int, tuple[Header, bytes, bytes]] = field(default_factory=dict)


@dataclass(slots=True)
class Reassembler:
    """Collects the packets of multi-packet messages (start SYN) of one connection.

    A packet carries its message's packet count and its own number; the message is complete when
    every number from 1 to the count has arrived (in any order; a repeated packet replaces the
    earlier copy). Packets of one message are told apart from another's by station and function.
    """

    max_open: int = 16
    _open: dict[tuple[str, int], _Partial] = field(default_factory=dict)

    def add(self, head: Header, frame: bytes) -> Message | None:
        """The message this frame completes (or is, for a single frame), else None."""
        body = frame[head.body_start : -3]
        if head.start != SYN:
            return Message(head, body, frame)
        key = (head.station, head.function)
        partial = self._open.get(key)
        if partial is None or partial.total != head.packets:
            if len(self._open) >= self.max_open:
                self._open.pop(next(iter(self._open)))
            partial = self._open[key] = _Partial(head.packets)
        partial.parts[head.packet] = (head, body, frame)
        if len(partial.parts) < partial.total or any(
            k not in partial.parts for k in range(1, partial.total + 1)
        ):
            return None
        del self._open[key]
        ordered = [partial.parts[k] for k in range(1, partial.total + 1)]
        return Message(
            ordered[0][0], b"".join(p[1] for p in ordered), b"".join(p[2] for p in ordered)
        )

    def serial(self, head: Header) -> bytes:
        """The serial number (2 bytes) of the message a packet belongs to, once packet 1 is in."""
        partial = self._open.get((head.station, head.function))
        first = partial.parts.get(1) if partial is not None else None
        return first[1][:2] if first is not None else b"\x00\x00"

    def incomplete(self) -> list[bytes]:
        """The frames of messages still missing packets (dead letters when the station hangs up)."""
        return [p[2] for partial in self._open.values() for p in partial.parts.values()]
