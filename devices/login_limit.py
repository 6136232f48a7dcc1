"""Login attempts limited per user name and client address: password guessing gets a 429, not a thousand tries.

After ``max_failures`` wrong passwords for one name from one address within ``window_s``, that pair is
refused, even with the right password, until the window (counted from its first failure) has passed;
the refusal says when to try again. A successful login clears the pair's count. Other names from the
same address, and the same name from other addresses, are not affected: one person mistyping does not
lock out a whole office behind one NAT, and an attacker cannot lock the administrator out from afar.

Two keepers of the counts, with one interface (`check`, `failed`, `succeeded`):

* `SharedLoginLimiter` (what the hub runs): a table in the hub's database, so every api node of a
  cluster counts the same failures (a guesser cannot multiply its tries by the number of nodes behind
  the load balancer) and a restart forgets nothing. Wall-clock time, as the nodes share no other.
* `LoginLimiter`: in memory, one process, bounded to ``max_entries`` pairs (the oldest go first),
  for an app without a database of its own.

Spraying one password over many names from one address is not stopped here; put the hub behind a
proxy that limits requests per address for that.
"""

from __future__ import annotations

import threading
import time
from collections import OrderedDict
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any, Protocol

import sqlalchemy as sa
from sqlalchemy.dialects import postgresql, sqlite
from sqlalchemy.engine import Engine

from devices.errors import DeviceError

Clock = Callable[[], float]


class TooManyAttemptsError(DeviceError):
    """Too many failed logins for this name from this address (HTTP 429)."""

    def __init__(self, retry_after_s: int) -> None:
        """Refuse; the caller may try again after ``retry_after_s`` seconds."""
        self.retry_after_s = retry_after_s
        super().__init__(
            f"too many failed logins for this account from your address: try again in "
            f"{retry_after_s} s"
        )


@dataclass(slots=True)
class _Attempts:
    first: float  # monotonic time of the first failure in the window
    failures: int


class LoginLimiter:
    """Counts failed logins per (name, address) within a window (see the module)."""

    def __init__(
        self,
        *,
        max_failures: int = 5,
        window_s: float = 900.0,
        max_entries: int = 100_000,
        clock: Clock = time.monotonic,
    ) -> None:
        """Allow ``max_failures`` failures per pair per ``window_s`` seconds."""
        self.max_failures = max_failures
        self.window_s = window_s
        self.max_entries = max_entries
        self._clock = clock
        self._lock = threading.Lock()
        self._pairs: OrderedDict[tuple[str, str], _Attempts] = OrderedDict()

    def check(self, name: str, address: str) -> None:
        """Raise `TooManyAttemptsError` while the pair is locked out; otherwise return."""
        now = self._clock()
        with self._lock:
            entry = self._pairs.get((name, address))
            if entry is None:
                return
            left = entry.first + self.window_s - now
            if left <= 0:
                del self._pairs[(name, address)]
                return
            if entry.failures >= self.max_failures:
                raise TooManyAttemptsError(max(1, int(left + 0.999)))

    def failed(self, name: str, address: str) -> None:
        """Count a wrong password (or unknown name, or disabled account) for the pair."""
        now = self._clock()
        key = (name, address)
        with self._lock:
            entry = self._pairs.get(key)
            if entry is None or entry.first + self.window_s <= now:
                self._pairs[key] = _Attempts(now, 1)
                self._pairs.move_to_end(key)
                while len(self._pairs) > self.max_entries:
                    self._pairs.popitem(last=False)
            else:
                entry.failures += 1

    def succeeded(self, name: str, address: str) -> None:
        """Forget the pair's failures."""
        with self._lock:
            self._pairs.pop((name, address), None)


class Limiter(Protocol):
    """What the login endpoint asks of a limiter."""

    def check(self, name: str, address: str) -> None:
        """Raise `TooManyAttemptsError` while the pair is locked out."""

    def failed(self, name: str, address: str) -> None:
        """Count a failed login of the pair."""

    def succeeded(self, name: str, address: str) -> None:
        """Forget the pair's failures."""


metadata = sa.MetaData()

NAME_CHARS = 200
"""Longer login names (no account has one) are counted under their first 200 characters."""

login_failures_table = sa.Table(
    "login_failures",
    metadata,
    sa.Column("name", sa.String(NAME_CHARS), primary_key=True),
    sa.Column("address", sa.String(64), primary_key=True),
    sa.Column("first_ms", sa.BigInteger, nullable=False, index=True),
    sa.Column("failures", sa.Integer, nullable=False),
)


class SharedLoginLimiter:
    """`LoginLimiter`'s counts in the hub's database, shared by every node (see the module)."""

    PURGE_EVERY_S = 60.0  # expired pairs are deleted at most this often (by a failure)

    def __init__(
        self,
        engine: Engine,
        *,
        max_failures: int = 5,
        window_s: float = 900.0,
        clock: Clock = time.time,
    ) -> None:
        """Count in ``engine``'s ``login_failures`` table (made if missing, as the migrations do)."""
        self.engine = engine
        self.max_failures = max_failures
        self.window_ms = round(window_s * 1000)
        self._clock = clock
        self._next_purge = 0.0
        metadata.create_all(engine)

    def _key(self, name: str, address: str) -> tuple[str, str]:
        return name[:NAME_CHARS], address[:64]

    def check(self, name: str, address: str) -> None:
        """Raise `TooManyAttemptsError` while the pair is locked out; otherwise return."""
        now = self._now_ms()
        name, address = self._key(name, address)
        t = login_failures_table
        with self.engine.connect() as conn:
            row = conn.execute(
                sa.select(t.c.first_ms, t.c.failures).where(
                    t.c.name == name, t.c.address == address
                )
            ).first()
        if row is None:
            return
        left_ms = row.first_ms + self.window_ms - now
        if left_ms > 0 and row.failures >= self.max_failures:
            raise TooManyAttemptsError(max(1, (left_ms + 999) // 1000))

    def failed(self, name: str, address: str) -> None:
        """Count a failure: one upsert, so two nodes counting at once both count."""
        now = self._now_ms()
        name, address = self._key(name, address)
        t = login_failures_table
        with self.engine.begin() as conn:
            insert: Any = (postgresql if conn.dialect.name == "postgresql" else sqlite).insert(t)
            stmt = insert.values(name=name, address=address, first_ms=now, failures=1)
            expired = t.c.first_ms + self.window_ms <= now
            conn.execute(
                stmt.on_conflict_do_update(
                    index_elements=[t.c.name, t.c.address],
                    set_={
                        "first_ms": sa.case((expired, now), else_=t.c.first_ms),
                        "failures": sa.case((expired, 1), else_=t.c.failures + 1),
                    },
                )
            )
            if self._clock() >= self._next_purge:
                self._next_purge = self._clock() + self.PURGE_EVERY_S
                conn.execute(sa.delete(t).where(t.c.first_ms + self.window_ms <= now))

    def succeeded(self, name: str, address: str) -> None:
        """Forget the pair's failures."""
        name, address = self._key(name, address)
        t = login_failures_table
        with self.engine.begin() as conn:
            conn.execute(sa.delete(t).where(t.c.name == name, t.c.address == address))

    def _now_ms(self) -> int:
        return round(self._clock() * 1000)
