"""The level state machine of one rule, held in arrays by position: for/repeat timers, hysteresis, clear-after.

A rule's devices are numbered 0..P-1 (its *positions*); every array here has one more row, a sentinel
at P that devices outside the rule map to, so a batch's rows can be looked up without masking first.
The sentinel's bounds are NaN (never breached) and it is never written.

Per reading (``step``), for each level column L the signal ``x`` is compared with the level's bound in
its direction (``sign`` turns "below" into "above" of the negated value):

- ``since[p, L]``: when L started being breached without a break (for ``for_s``);
- ``count[p, L]``: readings in a row breaching L (for ``repeat``);
- the level becomes the highest eligible L, but an active level is kept while the value is still
  beyond its *hold* bound (the bound moved back by ``deadband``, or ``clear_below``/``clear_above``
  for the lowest level; reaching the hold bound releases it): this is what stops flapping;
- with ``clear_after_s`` a condition that is back to normal clears only after that long.

``tick`` fires ``for_s`` windows that elapse between readings and clear-after periods that end.

Most readings change nothing. Each position keeps the band of values that cannot change its state
(*edges*, see `LevelState.refresh_edges`), so a batch is checked with two gathers and two comparisons
and only rows outside their band are stepped.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
from numpy.typing import NDArray

NEVER = int(np.iinfo(np.int64).min)
NOT_DUE = int(np.iinfo(np.int64).max)


@dataclass(frozen=True, slots=True)
class Change:
    """Positions whose level changed in one step, with their old and new levels (Level values)."""

    rows: NDArray[np.intp]  # rows of the step's input
    old: NDArray[np.int8]
    new: NDArray[np.int8]


@dataclass(slots=True)
class LevelParams:
    """A rule's compiled bounds, per position and level column (lowest level first).

    Attributes:
        levels: Level value of each column.
        sign: +1 for a column breached above its bound, -1 below.
        sbound: signed bound ``sign * bound`` per position and column (NaN: no such level there).
        shold: signed hold bound (``sbound`` moved back by the deadband or to the clear bound).
        fast_hi: lowest "above" bound per position (NaN: none), to skip quiet readings in one compare.
        fast_lo: lowest signed "below" bound per position (NaN: none).
        for_ms, repeat, clear_after_ms: the rule's timers.
        keep_last: remember each position's last observation (for events raised by the timer).
        edged: every column has the same direction, so a reading can change nothing while its
            signed value lies strictly between its position's edges (see `LevelState.lo_edge`):
            devices with steady values, active or not, then cost no step at all.
    """

    levels: NDArray[np.int8]
    sign: NDArray[np.float64]
    sbound: NDArray[np.float64]
    shold: NDArray[np.float64]
    fast_hi: NDArray[np.float64] | None
    fast_lo: NDArray[np.float64] | None
    for_ms: int
    repeat: int
    clear_after_ms: int
    keep_last: bool
    edged: bool

    @property
    def timed(self) -> bool:
        """The rule has ``for``, ``repeat`` or clear-after timers."""
        return self.for_ms > 0 or self.repeat > 1 or self.clear_after_ms > 0


class LevelState:
    """The per-position state of a level rule (see the module docstring)."""

    FIELDS = ("level", "since", "count", "normal_since", "last_ts", "last_val", "last_x")
    PENDING = ("since", "count", "normal_since")  # timers a changed rule starts afresh

    def __init__(self, size: int, columns: int) -> None:
        """State for ``size`` positions (plus the sentinel) and ``columns`` levels."""
        n = size + 1
        self.size = size
        self.level = np.zeros(n, dtype=np.int8)
        self.since = np.full((n, columns), NEVER, dtype=np.int64)
        self.count = np.zeros((n, columns), dtype=np.int32)
        self.normal_since = np.full(n, NEVER, dtype=np.int64)
        self.last_ts = np.full(n, NEVER, dtype=np.int64)
        self.last_val = np.full(n, np.nan)
        self.last_x = np.full((n, columns), np.nan)
        self.busy = np.zeros(n, dtype=np.bool_)  # any of level, timers set: must see every reading
        # For edged rules: a signed value v read at t changes nothing while lo_edge < v < hi_edge
        # and t < due (when a pending ``for`` window elapses).
        self.lo_edge = np.full(n, -np.inf)
        self.hi_edge = np.full(n, np.nan)
        self.due = np.full(n, NOT_DUE, dtype=np.int64)
        # Pending timers (``for`` windows, clear-after periods) started so far: what a checkpoint
        # must catch soon, since a restart without it would start them again (hub/alerting.py).
        self.timers_started = 0

    def refresh_edges(self, params: LevelParams, p: NDArray[np.intp]) -> None:
        """Recompute the edges of positions ``p`` from their state (edged rules only).

        The upper edge is the lowest bound of a level above the current one. The lower edge:

        - at level 0 with nothing pending: none (any value below every bound changes nothing);
        - without timers: the current level's hold bound (the value may wander in the deadband),
          or its own bound when that is lower (no deadband: a value at the bound is still in);
        - with timers: the bound of the highest level that is active or pending (its ``for`` window
          running). Within the band every level up to it stays breached without a break and no
          higher one starts, so no window restarts; the reading that completes a window is stepped
          (``due``), so a condition fires on that reading as it would without the band. Readings
          in the deadband are stepped, as they restart the current level's own window.

        Anything else has no band and every reading is stepped: a pending ``repeat`` count (it
        counts readings), a clear-after period, an active level without a usable column of its own
        (the rule changed under it, or an override disabled it).
        """
        if not params.edged or not p.size:
            return
        level = self.level[p]
        levels = params.levels[None, :]
        sbound = params.sbound[p]
        if not params.timed:
            at = levels == level[:, None]
            self.hi_edge[p] = np.fmin.reduce(
                np.where(levels > level[:, None], sbound, np.nan), axis=1
            )
            # Held while beyond the hold bound, or while at or beyond the level's own bound.
            hold = np.where(at, params.shold[p], -np.inf).max(axis=1)
            own = np.where(at, sbound, -np.inf).max(axis=1)
            usable = at.any(axis=1) & np.isfinite(hold)
            active = np.where(usable, np.minimum(hold, np.nextafter(own, -np.inf)), np.inf)
            self.lo_edge[p] = np.where(level == 0, -np.inf, active)
            return
        since = self.since[p]
        pending = (since != NEVER) & (levels > level[:, None])  # windows of higher levels
        any_pending = pending.any(axis=1)
        # The highest level active or pending anchors the band.
        ref = np.maximum(level, np.where(pending, levels, 0).max(axis=1))
        at = levels == ref[:, None]
        self.hi_edge[p] = np.fmin.reduce(np.where(levels > ref[:, None], sbound, np.nan), axis=1)
        own = np.where(at, sbound, -np.inf).max(axis=1)
        usable = at.any(axis=1) & np.isfinite(own)
        # v <= nextafter(own, -inf) is v < own: a value at the bound still breaches it.
        lo = np.where(usable, np.nextafter(own, -np.inf), np.inf)
        lo = np.where(ref == 0, -np.inf, lo)
        unbanded = (self.normal_since[p] != NEVER) | (any_pending & (params.repeat > 1))
        self.lo_edge[p] = np.where(unbanded, np.inf, lo)
        first = np.where(pending, since, NOT_DUE - params.for_ms).min(axis=1)
        self.due[p] = first + params.for_ms  # NOT_DUE where nothing is pending

    def refresh_busy(self, p: NDArray[np.intp]) -> None:
        """Recompute ``busy`` at positions ``p``."""
        self.busy[p] = (
            (self.level[p] > 0)
            | (self.since[p] != NEVER).any(axis=1)
            | (self.normal_since[p] != NEVER)
        )

    def step(
        self,
        params: LevelParams,
        p: NDArray[np.intp],
        ts: NDArray[np.int64],
        x: NDArray[np.float64],
        raw: NDArray[np.float64] | None,
        *,
        reading: bool = True,
    ) -> Change:
        """Advance positions ``p`` (unique, not the sentinel) by one observation each.

        Args:
            params: the rule's bounds.
            p: positions.
            ts: time of each observation (the reading's, or the clock's for a re-evaluation).
            x: the signal, one value per row (``[n]``) or per row and level column (``[n, K]``).
            raw: the reading's own value, kept as evidence (None: keep the last one).
            reading: a new reading (counts towards ``repeat``); False for a re-evaluation.
        """
        x2 = x[:, None] if x.ndim == 1 else x
        sx = x2 * params.sign
        breach = sx >= params.sbound[p]
        hold = sx > params.shold[p]  # released at the hold bound: "clear at or below"
        timed = params.for_ms > 0 or params.repeat > 1
        pending = None
        if timed:  # rules without for/repeat never need since or count: skip them on the hot path
            eligible, pending = self._timers(params, p, breach, ts, reading=reading)
        else:
            eligible = breach
        top = (eligible * params.levels).max(axis=1)
        held = (hold * params.levels).max(axis=1)
        cur = self.level[p]
        new = np.maximum(top, np.minimum(cur, held)).astype(np.int8)
        busy = new > 0
        if params.clear_after_ms:
            normal = self.normal_since[p]
            quiet = (cur > 0) & (new == 0)
            self.timers_started += int(np.count_nonzero(quiet & (normal == NEVER)))
            normal = np.where(quiet, np.where(normal == NEVER, ts, normal), NEVER)
            wait = quiet & (ts - normal < params.clear_after_ms)
            new = np.where(wait, cur, new).astype(np.int8)
            self.normal_since[p] = np.where(wait, normal, NEVER)
            busy |= wait
        if pending is not None:
            busy |= pending
        self.level[p] = new
        self.busy[p] = busy
        if params.keep_last:
            if raw is not None:  # evidence is the last reading, not a re-evaluation's time
                self.last_ts[p] = ts
                self.last_val[p] = raw
            self.last_x[p] = x2
        rows = (new != cur).nonzero()[0]
        if params.timed:
            self.refresh_edges(params, p)  # timers move without the level changing
        elif rows.size:
            self.refresh_edges(params, p[rows])
        return Change(rows, cur[rows], new[rows])

    def _timers(
        self,
        params: LevelParams,
        p: NDArray[np.intp],
        breach: NDArray[np.bool_],
        ts: NDArray[np.int64],
        *,
        reading: bool,
    ) -> tuple[NDArray[np.bool_], NDArray[np.bool_]]:
        """Move the ``for`` windows and repeat counters; the levels due, and who has a window open."""
        since = self.since[p]
        fresh = breach & (since == NEVER)
        self.timers_started += int(np.count_nonzero(fresh))
        since = np.where(fresh, ts[:, None], np.where(breach, since, NEVER))
        self.since[p] = since
        count = self.count[p]
        count = np.where(breach, count + 1 if reading else count, 0)
        self.count[p] = count
        eligible = breach
        if params.for_ms:
            eligible = eligible & (ts[:, None] - since >= params.for_ms)
        if params.repeat > 1:
            eligible = eligible & (count >= params.repeat)
        pending: NDArray[np.bool_] = (since != NEVER).any(axis=1)
        return eligible, pending

    def tick(self, params: LevelParams, now_ms: int) -> tuple[NDArray[np.intp], Change]:
        """Fire ``for_s`` windows that elapsed and end clear-after periods, at ``now_ms``.

        Returns:
            the busy positions looked at, and the changes among them (rows index those positions).
        """
        empty = Change(np.empty(0, np.intp), np.empty(0, np.int8), np.empty(0, np.int8))
        if not (params.for_ms or params.clear_after_ms):
            return np.empty(0, np.intp), empty
        p = np.flatnonzero(self.busy[: self.size])
        if not p.size:
            return p, empty
        cur = self.level[p]
        new = cur
        if params.for_ms:
            since = self.since[p]
            eligible = (since != NEVER) & (now_ms - since >= params.for_ms)
            if params.repeat > 1:
                eligible &= self.count[p] >= params.repeat
            top = np.where(eligible, params.levels, 0).max(axis=1)
            new = np.maximum(cur, top).astype(np.int8)
        if params.clear_after_ms:
            normal = self.normal_since[p]
            done = (normal != NEVER) & (now_ms - normal >= params.clear_after_ms)
            new = np.where(done, 0, new).astype(np.int8)
            self.normal_since[p[done]] = NEVER
        self.level[p] = new
        self.refresh_busy(p)
        rows = np.flatnonzero(new != cur)
        self.refresh_edges(params, p)
        return p, Change(rows, cur[rows], new[rows])

    # -- carrying state across rebuilds, rule changes and restarts --------------------------------

    def export(self) -> dict[str, NDArray[np.generic]]:
        """The state of the real positions (no sentinel)."""
        n = self.size
        return {name: getattr(self, name)[:n].copy() for name in self.FIELDS}

    def take(
        self,
        data: dict[str, NDArray[np.generic]],
        new_rows: NDArray[np.intp],
        old_rows: NDArray[np.intp],
        *,
        keep_pending: bool,
        columns: NDArray[np.intp],
    ) -> None:
        """Copy exported rows ``old_rows`` into positions ``new_rows``.

        Args:
            data: an `export` of the same kind of rule.
            new_rows: positions here ...
            old_rows: ... and the positions of the same devices in ``data``.
            keep_pending: keep ``for``/``repeat``/clear-after timers (the rule did not change).
            columns: for each old level column, its column now (-1: the level is gone).
        """
        for name in self.FIELDS:
            if name in self.PENDING and not keep_pending:
                continue
            old = data.get(name)
            if old is None:
                continue
            mine = getattr(self, name)
            if old.ndim == 2:
                keep = np.flatnonzero(columns >= 0)
                if keep.size:
                    block = old[old_rows][:, keep]
                    mine[new_rows[:, None], columns[keep][None, :]] = block
            else:
                mine[new_rows] = old[old_rows]
        self.refresh_busy(np.arange(self.size))
