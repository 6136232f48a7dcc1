"""Login attempts limited per user name and client address: password guessing gets a 429, not a thousand tries.

After ``max_failures`` wrong passwords for one name from one address within ``window_s``, that pair is
refused, even with the right password, until the window (counted from its first failure) has passed;
the refusal says when to try again. A successful login clears the pair's count. Other names from the
same address, and the same name from other addresses, are not affected: one person mistyping does not
lock out a whole office behind one NAT, and an attacker cannot lock the administrator out from afar.

Kept in memory (one process; a restart forgets), bounded to ``max_entries`` pairs: when full, the
oldest entries go first. Spraying one password over many names from one address is not stopped here;
put the hub behind a proxy that limits requests per address for that.
"""

from __future__ import annotations

import threading
import time
from collections import OrderedDict
from collections.abc import Callable
from dataclasses import dataclass

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
