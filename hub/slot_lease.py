"""One process per ingest worker slot, and standbys that take over a slot whose process died.

A slot is a broker session, a rule-state checkpoint and a share of the city's districts: two processes
running one slot would hand the session back and forth and overwrite each other's checkpoint. So a
process holds the slot's *lease* for as long as it runs it, in the database every node shares:

- PostgreSQL: a session-level advisory lock on a connection kept open; the server releases it when
  the process dies (its connection closes), however it dies.
- SQLite (one host): ``flock`` on a file beside the database; the kernel releases it with the process.

A standby (``cluster.standby``) waits for any slot's lease; when the process of slot ``k`` dies (and
its supervisor has not restarted it first), the standby gets the lease, and starts as slot ``k``: it
resumes the slot's broker session (the messages queued while nobody ran it) and its rule-state
checkpoint, which must then be on storage both can read (``rules.state_file`` on a shared volume).
"""

from __future__ import annotations

import contextlib
import fcntl
import logging
import os
import time
from collections.abc import Callable
from pathlib import Path
from typing import IO

import sqlalchemy as sa
from sqlalchemy.engine import make_url
from sqlalchemy.pool import NullPool

from hub.errors import HubError

logger = logging.getLogger(__name__)

_LOCK_BASE = 0x48554200  # "HUB\0": keeps the hub's advisory locks apart from other applications'


class SlotLease:
    """The lease of one slot, held until `release` or the end of the process."""

    def __init__(self, slot: int, release: Callable[[], None]) -> None:
        self.slot = slot
        self._release = release

    def release(self) -> None:
        """Give the slot up (a process that stops cleanly; dying releases it too)."""
        self._release()


def take_slot(
    registry_url: str,
    workers: int,
    slot: int | None,
    *,
    poll_s: float = 0.5,
    timeout_s: float | None = None,
) -> SlotLease:
    """The lease of ``slot``, or with ``slot`` None (a standby) of the first free one, waiting for it.

    Raises:
        HubError: ``slot`` is held by another process (it would run the slot twice), the database
            cannot hold leases, or a standby waited ``timeout_s`` in vain.
    """
    try_one = _locker(registry_url)
    if slot is not None:
        lease = try_one(slot)
        if lease is None:
            msg = (
                f"ingest worker slot {slot} is already running (another process holds its lease); "
                "start this one as a standby (cluster.standby) or with another cluster.worker"
            )
            raise HubError(msg)
        return lease
    deadline = None if timeout_s is None else time.monotonic() + timeout_s
    logger.info("standby: waiting for one of the %s ingest worker slots to be free", workers)
    while True:
        for candidate in range(workers):
            lease = try_one(candidate)
            if lease is not None:
                logger.info("standby: taking over ingest worker slot %s", candidate)
                return lease
        if deadline is not None and time.monotonic() > deadline:
            msg = f"no ingest worker slot came free in {timeout_s} s"
            raise HubError(msg)
        time.sleep(poll_s)


def _locker(registry_url: str) -> Callable[[int], SlotLease | None]:
    url = make_url(registry_url)
    if url.get_backend_name() == "sqlite":
        if not url.database or url.database == ":memory:":
            msg = "slot leases need a database file or PostgreSQL, not an in-memory SQLite"
            raise HubError(msg)
        return lambda slot: _file_lease(Path(url.database or ""), slot)
    if url.get_backend_name() == "postgresql":
        # No pool: closing the lease's connection ends its session (and its lock) for real.
        engine = sa.create_engine(registry_url, poolclass=NullPool)
        return lambda slot: _advisory_lease(engine, slot)
    msg = f"slot leases are not supported on {url.get_backend_name()}"
    raise HubError(msg)


def try_flock(path: Path) -> IO[str] | None:
    """``path`` opened and exclusively locked without waiting; None if another process holds it.

    Our pid is written in it, for people. The lock lasts as long as the open file: a dead process's
    lock is gone with it.
    """
    handle: IO[str] = path.open("a")
    try:
        fcntl.flock(handle, fcntl.LOCK_EX | fcntl.LOCK_NB)
    except BlockingIOError:
        handle.close()
        return None
    handle.write(f"{os.getpid()}\n")
    handle.flush()
    return handle


def _file_lease(database: Path, slot: int) -> SlotLease | None:
    handle = try_flock(database.with_name(f"{database.name}.slot-{slot}.lock"))
    if handle is None:
        return None

    def release() -> None:
        with contextlib.suppress(OSError):
            fcntl.flock(handle, fcntl.LOCK_UN)
        handle.close()

    return SlotLease(slot, release)


def _advisory_lease(engine: sa.Engine, slot: int) -> SlotLease | None:
    con = engine.connect()
    held = con.execute(sa.select(sa.func.pg_try_advisory_lock(_LOCK_BASE + slot))).scalar()
    con.commit()  # the lock is the session's, not the transaction's: it outlives this commit
    if not held:
        con.close()
        return None

    def release() -> None:
        with contextlib.suppress(sa.exc.SQLAlchemyError):
            con.execute(sa.select(sa.func.pg_advisory_unlock(_LOCK_BASE + slot)))
            con.commit()
        con.close()

    return SlotLease(slot, release)
