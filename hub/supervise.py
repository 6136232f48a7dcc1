"""The hub's long-running tasks under watch: one that stops on its own stops the hub, loudly.

A hub whose ingest task died keeps answering HTTP and looks alive while it reads nothing: the worst
way to fail for a monitoring system. Trying to restart the task in place would keep whatever state
broke it. So the hub exits instead, with a critical log line naming the task and its error, and a
non-zero status: its supervisor (Docker's ``restart: unless-stopped``, systemd) starts it afresh, and
the broker redelivers every message the dead task had not acknowledged (persistent session).
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Callable, Iterable

logger = logging.getLogger(__name__)


class TaskWatch:
    """Watches the hub's tasks; the first to fail (raise) calls ``on_failure``."""

    def __init__(self, on_failure: Callable[[str], None]) -> None:
        """``on_failure(reason)`` runs once, on the event loop, for the first task that failed."""
        self._on_failure = on_failure
        self.failure: str | None = None
        self._stopping = False

    def watch(self, tasks: Iterable[asyncio.Task[None]]) -> None:
        """Watch ``tasks`` from now on."""
        for task in tasks:
            task.add_done_callback(self._done)

    def stopping(self) -> None:
        """The hub is shutting down: tasks ending now are expected."""
        self._stopping = True

    def _done(self, task: asyncio.Task[None]) -> None:
        # A task may return when it has nothing to do (no broker of ours to keep accounts for);
        # one that raised is broken.
        if self._stopping or task.cancelled() or self.failure is not None:
            return
        exc = task.exception()
        if exc is None:
            return
        self.failure = f"task {task.get_name()} failed: {type(exc).__name__}: {exc}"
        logger.critical(
            "%s; the hub stops so that its supervisor starts it again (the broker redelivers "
            "what was not acknowledged)",
            self.failure,
            exc_info=exc,
        )
        self._on_failure(self.failure)
