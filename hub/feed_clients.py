"""One screen's side of the feed: a bounded queue of shared frames and the task that sends them.

The feed never awaits a screen. It appends a reference to the shared frame to each screen's queue and
wakes its sender task; a screen whose socket is full leaves its sender waiting on the transport, and
only that task waits. While a sender is behind, its queue grows: a few frames are sent as they are
(shared text, no work), more are merged into one frame (readings coalesced to the latest per series),
and at ``max_queue`` the screen is declared too slow and closed with 4408, so it reconnects with
``since`` and gets what it missed (or a snapshot): nothing, alerts included, is dropped silently.
"""

from __future__ import annotations

import asyncio
import itertools
from collections import deque
from collections.abc import Awaitable, Callable, Sequence
from typing import TYPE_CHECKING

from hub.feed_frames import DeltaFrame, SnapshotFrame

if TYPE_CHECKING:
    from hub.feed_streams import Stream

Frame = DeltaFrame | SnapshotFrame
Merger = Callable[[Sequence[DeltaFrame]], DeltaFrame]

TOO_SLOW = 4408
TOO_SLOW_REASON = "too slow: reconnect with since"

_ids = itertools.count(1)


class FeedClient:
    """A connected screen: who it is, which stream it follows, and what waits to be sent to it.

    Attributes:
        user: the principal's user name (for the status page and logs).
        stream: the filter group it follows (set by the feed).
        too_slow: set when its queue overflowed; the connection handler then closes with 4408.
    """

    def __init__(self, user: str, *, max_queue: int, merge_after: int, merger: Merger) -> None:
        """A screen allowed ``max_queue`` unsent frames; more than ``merge_after`` are merged."""
        self.id = next(_ids)
        self.user = user
        self.stream: Stream | None = None
        self.too_slow = asyncio.Event()
        self._queue: deque[Frame] = deque()
        self._wake = asyncio.Event()
        self._max_queue = max_queue
        self._merge_after = merge_after
        self._merger = merger
        self.sent = 0
        self.merged = 0

    @property
    def queued(self) -> int:
        """Frames waiting."""
        return len(self._queue)

    def offer(self, frame: DeltaFrame) -> None:
        """Queue a live frame of its stream (never waits); overflowing marks the screen too slow."""
        if self.too_slow.is_set():
            return
        if len(self._queue) >= self._max_queue:
            self._queue.clear()
            self.too_slow.set()
            return
        self._queue.append(frame)
        self._wake.set()

    def restart(self, frames: Sequence[Frame]) -> None:
        """Replace whatever waits with ``frames`` (a snapshot and what follows it, or a replay)."""
        self._queue.clear()
        self._queue.extend(frames)
        if frames:
            self._wake.set()

    def plan(self) -> list[str | list[DeltaFrame]]:
        """Take everything queued: the texts to send in order, or runs of deltas to merge first.

        A snapshot makes everything queued before it moot; more than ``merge_after`` deltas after
        it become one merged delta (per-screen work, done only for a screen that is behind).
        """
        items = list(self._queue)
        self._queue.clear()
        for i in range(len(items) - 1, -1, -1):
            if isinstance(items[i], SnapshotFrame):
                items = items[i:]
                break
        out: list[str | list[DeltaFrame]] = []
        deltas: list[DeltaFrame] = []
        for item in items:
            if isinstance(item, SnapshotFrame):
                out.append(item.text)
            else:
                deltas.append(item)
        if len(deltas) > self._merge_after:
            out.append(deltas)
        else:
            out.extend(d.text for d in deltas)
        return out

    async def pump(self, send: Callable[[str], Awaitable[None]]) -> None:
        """Send queued frames until cancelled; a full socket makes only this task wait.

        Merging runs in a worker thread: a screen far behind must not hold up the event loop that
        serves every other screen.
        """
        while True:
            await self._wake.wait()
            self._wake.clear()
            for item in self.plan():
                if isinstance(item, list):
                    merged = await asyncio.to_thread(self._merger, item)
                    self.merged += 1
                    item = merged.text  # noqa: PLW2901 - the run of deltas becomes its text
                await send(item)
                self.sent += 1
