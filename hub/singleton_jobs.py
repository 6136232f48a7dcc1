"""The cluster's periodic people's work, run by one api node at a time (a lease; issue 12, roles).

Each api node used to run the response tick (incidents' overdue steps, warnings' expiry, duty
notices) and the citizen-report tick (re-deciding clusters). What two nodes ticking together do:

- overdue steps: recorded once (the incident row is read ``FOR UPDATE`` and carries the state it
  was flagged in), so no duplicate alert or escalation; the second node's pass is wasted work;
- warnings' expiry: the second node's expiry of the same warning fails on the audit's primary key
  (warning, seq) and rolls back: no duplicate, but a failed tick logged, and that node's duty notices
  wait for its next tick;
- report clusters: their alerts are keyed (source, rule) and the alert store keeps one active alert
  per key, so a decision made twice changes nothing the second time; the work is doubled, and two
  nodes deciding on reads a moment apart can flap an alert's level;
- duty notices are *not* right when split: each node tells people only of the alert changes it
  committed itself, and the ingest workers (which raise the rules' alerts and escalate unacknowledged
  ones) run no tick, so those notices were never sent in a cluster.

So one api node holds the *jobs lease* and runs both ticks; its duty notifier takes every node's
alert changes (its own and, through the relay, everyone else's: hub/relay.py), and the other api
nodes queue none. The others stand by and try the lease every `SingletonJobs.POLL_S`; when the
holder stops or dies, one of them takes over within that time.

The lease is where every node meets, the shared database, as for ingest slots (hub/slot_lease.py):
a session-level advisory lock on PostgreSQL (on a connection kept open, checked each poll: a
connection lost means the lock is lost, and the jobs stop), ``flock`` on a file beside a SQLite
database. An in-memory SQLite database is one process's: that process just runs the jobs.
"""

from __future__ import annotations

import asyncio
import contextlib
import fcntl
import logging
from collections.abc import Callable, Mapping
from pathlib import Path
from typing import IO, Any, Protocol

import sqlalchemy as sa
from sqlalchemy.engine import make_url
from sqlalchemy.pool import NullPool

from hub.errors import HubError
from hub.roles import Starter
from hub.slot_lease import try_flock

logger = logging.getLogger(__name__)

JOBS_LOCK = 0x48554A00
"""The advisory lock key ("HUJ\\0"), apart from the ingest slots' (0x48554200 + slot)."""


class Lease(Protocol):
    """A held lease."""

    def alive(self) -> bool:
        """Whether it is still held (blocking)."""
        ...

    def release(self) -> None:
        """Give it up (blocking)."""
        ...


class _AdvisoryLease:
    """A PostgreSQL session advisory lock on a connection of its own."""

    def __init__(self, con: sa.Connection) -> None:
        self._con = con

    def alive(self) -> bool:
        try:
            self._con.execute(sa.select(1)).scalar()
            self._con.commit()
        except sa.exc.SQLAlchemyError:
            logger.warning("the jobs lease's database connection was lost")
            return False
        return True

    def release(self) -> None:
        with contextlib.suppress(sa.exc.SQLAlchemyError):
            self._con.execute(sa.select(sa.func.pg_advisory_unlock(JOBS_LOCK)))
            self._con.commit()
        with contextlib.suppress(sa.exc.SQLAlchemyError):
            self._con.close()


class _FileLease:
    """``flock`` on a file; the kernel releases it with the process."""

    def __init__(self, handle: IO[str]) -> None:
        self._handle = handle

    def alive(self) -> bool:
        return not self._handle.closed

    def release(self) -> None:
        with contextlib.suppress(OSError):
            fcntl.flock(self._handle, fcntl.LOCK_UN)
        self._handle.close()


class _ProcessLease:
    """An in-memory SQLite database: nobody else can share it, so the lease is always this process's."""

    def alive(self) -> bool:
        return True

    def release(self) -> None:
        return


def lease_taker(registry_url: str) -> Callable[[], Lease | None]:
    """A function that tries (without waiting) to take the jobs lease of ``registry_url``'s database.

    Raises:
        HubError: the database cannot hold leases.
    """
    url = make_url(registry_url)
    backend = url.get_backend_name()
    if backend == "sqlite":
        if not url.database or url.database == ":memory:":
            return _ProcessLease
        path = Path(url.database)
        return lambda: _try_file(path.with_name(f"{path.name}.jobs.lock"))
    if backend == "postgresql":
        # No pool: closing the lease's connection ends its session (and its lock) for real.
        engine = sa.create_engine(registry_url, poolclass=NullPool)
        return lambda: _try_advisory(engine)
    msg = f"the jobs lease is not supported on {backend}"
    raise HubError(msg)


def _try_file(path: Path) -> Lease | None:
    handle = try_flock(path)
    return _FileLease(handle) if handle is not None else None


def _try_advisory(engine: sa.Engine) -> Lease | None:
    con = engine.connect()
    try:
        held = con.execute(sa.select(sa.func.pg_try_advisory_lock(JOBS_LOCK))).scalar()
        con.commit()  # the lock is the session's, not the transaction's: it outlives this commit
    except sa.exc.SQLAlchemyError:
        con.close()
        raise
    if not held:
        con.close()
        return None
    return _AdvisoryLease(con)


class SingletonJobs:
    """Runs ``jobs`` while this process holds the cluster's jobs lease; stands by otherwise."""

    POLL_S = 2.0

    def __init__(
        self,
        take: Callable[[], Lease | None],
        jobs: Mapping[str, Starter],
        *,
        poll_s: float | None = None,
        on_taken: Callable[[], object] | None = None,
    ) -> None:
        """Try the lease with ``take`` every ``poll_s`` (default `POLL_S`).

        ``on_taken`` runs (in a worker thread) each time the lease is taken, before the jobs start.
        """
        self._take = take
        self._jobs = dict(jobs)
        self.poll_s = poll_s or self.POLL_S
        self._on_taken = on_taken
        self._lease: Lease | None = None
        self._tasks: list[asyncio.Task[None]] = []
        self.taken = 0  # how often this process took the lease
        self.lost = 0  # how often it lost it while running (its database connection went)

    @property
    def held(self) -> bool:
        """Whether this process holds the lease (and so runs the jobs) now."""
        return self._lease is not None

    async def run(self) -> None:
        """Hold the lease and run the jobs, or stand by for it, until cancelled."""
        try:
            while True:
                await self._step()
                await asyncio.sleep(self.poll_s)
        finally:
            await self._stop_jobs()

    async def _step(self) -> None:
        if self._lease is None:
            try:
                self._lease = await asyncio.to_thread(self._take)
            except sa.exc.SQLAlchemyError:
                logger.warning("trying the jobs lease failed (database away?)", exc_info=True)
                return
            if self._lease is not None:
                self.taken += 1
                logger.info("took the jobs lease: running %s", ", ".join(self._jobs))
                if self._on_taken is not None:
                    try:
                        await asyncio.to_thread(self._on_taken)
                    except Exception:  # the jobs must start all the same
                        logger.exception("taking over the jobs lease's leftovers failed")
                self._tasks = [
                    asyncio.create_task(start(), name=name) for name, start in self._jobs.items()
                ]
            return
        if not await asyncio.to_thread(self._lease.alive):
            self.lost += 1
            logger.error("lost the jobs lease: stopping %s", ", ".join(self._jobs))
            await self._stop_jobs()
            return
        for task in self._tasks:
            if task.done():  # the jobs loop until cancelled: one ending is a bug, stop the hub
                msg = f"singleton job {task.get_name()} ended"
                raise RuntimeError(msg) from (None if task.cancelled() else task.exception())

    async def _stop_jobs(self) -> None:
        tasks, self._tasks = self._tasks, []
        for task in tasks:
            task.cancel()
        await asyncio.gather(*tasks, return_exceptions=True)
        lease, self._lease = self._lease, None
        if lease is not None:
            await asyncio.to_thread(lease.release)

    def status(self) -> dict[str, Any]:
        """For /api/v1/status: whether this node runs the jobs, and which."""
        return {"held": self.held, "jobs": list(self._jobs), "taken": self.taken, "lost": self.lost}
