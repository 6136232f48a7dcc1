"""Many report bodies read at once: stations of one kind send the same layout, only the values differ.

Where a body's values are depends only on a few of its bytes: the identifiers and data-definition
bytes, the F1 F1 / F0 F0 markers and any time step (the positions `elements.scan` records as
``checks``). So a body is walked in Python once per layout; every other body of the same function and
length whose bytes at those positions are the same has its values at the same offsets, which numpy
finds for a whole group with one comparison. Bodies that match no known layout are walked, and their
layout remembered; bodies with a problem are walked alone so each problem is reported as usual.
"""

from __future__ import annotations

from collections import OrderedDict
from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np
from numpy.typing import NDArray

from ingest.sl651.elements import BodyError, Columns, Scan, scan

MIN_BODY = 23  # serial, send time, F1 F1 + station + category, F0 F0 + observation time
_TIME_SHIFTS = np.array([32, 24, 16, 8, 0], dtype=np.int64)


@dataclass(frozen=True, slots=True)
class Layout:
    """Where the values of every body with these bytes at these positions are."""

    checks: NDArray[np.intp]
    expect: NDArray[np.uint8]
    off: NDArray[np.int64]
    size: NDArray[np.int64]
    dec: NDArray[np.int64]
    kind: NDArray[np.int64]
    code: NDArray[np.int64]
    tt_at: NDArray[np.int64]
    shift_min: NDArray[np.int64]

    @classmethod
    def of(cls, body: bytes, sc: Scan) -> Layout:
        """The layout of ``body``, scanned alone (message 0, base 0) into ``sc``."""
        checks = np.unique(np.asarray(sc.checks, dtype=np.intp))
        return cls(
            checks=checks,
            expect=np.frombuffer(body, dtype=np.uint8)[checks].copy(),
            off=np.asarray(sc.off, dtype=np.int64),
            size=np.asarray(sc.size, dtype=np.int64),
            dec=np.asarray(sc.dec, dtype=np.int64),
            kind=np.asarray(sc.kind, dtype=np.int64),
            code=np.asarray(sc.code, dtype=np.int64),
            tt_at=np.asarray(sc.tt_at, dtype=np.int64),
            shift_min=np.asarray(sc.shift_min, dtype=np.int64),
        )

    def columns(
        self, rows: NDArray[np.int64], base: NDArray[np.int64], m: NDArray[np.uint8]
    ) -> Columns:
        """The values of bodies ``rows`` (starting at ``base`` in the joined buffer; bytes ``m``)."""
        k, e = len(rows), len(self.off)
        times = np.full((k, e), -1, dtype=np.int64)
        timed = self.tt_at >= 0
        if timed.any():
            at = self.tt_at[timed][:, None] + np.arange(5)[None, :]  # (E', 5)
            raw = m[:, at].astype(np.int64)  # (k, E', 5)
            times[:, timed] = (raw << _TIME_SHIFTS).sum(axis=2)
        return Columns(
            msg=np.repeat(rows, e),
            off=(base[:, None] + self.off[None, :]).ravel(),
            size=np.tile(self.size, k),
            dec=np.tile(self.dec, k),
            kind=np.tile(self.kind, k),
            code=np.tile(self.code, k),
            tt_key=times.ravel(),
            shift_min=np.tile(self.shift_min, k),
        )


class LayoutCache:
    """Layouts seen, per (function, body length); the least recently added go first when full."""

    def __init__(self, max_keys: int = 512, per_key: int = 8) -> None:
        """Keep at most ``per_key`` layouts for each of ``max_keys`` (function, length) pairs."""
        self._layouts: OrderedDict[tuple[int, int], list[Layout]] = OrderedDict()
        self._max_keys = max_keys
        self._per_key = per_key

    def get(self, key: tuple[int, int]) -> list[Layout]:
        """The layouts known for ``key``."""
        return self._layouts.get(key, [])

    def add(self, key: tuple[int, int], layout: Layout) -> None:
        """Remember a layout."""
        layouts = self._layouts.setdefault(key, [])
        layouts.append(layout)
        del layouts[: -self._per_key]
        while len(self._layouts) > self._max_keys:
            self._layouts.popitem(last=False)


def scan_many(
    bodies: Sequence[bytes], functions: Sequence[int], cache: LayoutCache
) -> tuple[bytes, Columns, list[tuple[int, str]]]:
    """The joined bodies, where every value is in them, and the problems, per body index.

    Equivalent to `elements.scan` of each body in turn (the tests check it), without a Python walk
    per body.
    """
    joined = b"".join(bodies)
    lengths = np.fromiter(map(len, bodies), dtype=np.int64, count=len(bodies))
    base = np.concatenate(([0], np.cumsum(lengths)[:-1])).astype(np.int64)
    groups: dict[tuple[int, int], list[int]] = {}
    for i, (body, fn) in enumerate(zip(bodies, functions, strict=True)):
        groups.setdefault((fn, len(body)), []).append(i)
    parts: list[Columns] = []
    problems: list[tuple[int, str]] = []
    for key, members in groups.items():
        rows = np.asarray(members, dtype=np.int64)
        if key[1] < MIN_BODY:
            for r in members:
                _walk_alone(bodies[r], r, int(base[r]), key[0], parts, problems)
            continue
        m = np.frombuffer(b"".join(bodies[r] for r in members), dtype=np.uint8).reshape(-1, key[1])
        todo = np.ones(len(members), dtype=np.bool_)
        for layout in cache.get(key):
            todo = _take(layout, m, rows, base, todo, parts)
        while todo.any():
            first = int(np.argmax(todo))
            r = members[first]
            sc = Scan()
            try:
                scan(bodies[r], 0, 0, key[0], sc)
            except BodyError:
                sc.problems.append((0, ""))  # walked alone below, which reports it
            if sc.problems:
                _walk_alone(bodies[r], r, int(base[r]), key[0], parts, problems)
                todo[first] = False
                continue
            layout = Layout.of(bodies[r], sc)
            cache.add(key, layout)
            todo = _take(layout, m, rows, base, todo, parts)
    return joined, Columns.concat(parts), problems


def _take(
    layout: Layout,
    m: NDArray[np.uint8],
    rows: NDArray[np.int64],
    base: NDArray[np.int64],
    todo: NDArray[np.bool_],
    parts: list[Columns],
) -> NDArray[np.bool_]:
    """Take the bodies still to do that have ``layout``; return those still to do after."""
    match: NDArray[np.bool_] = todo & (m[:, layout.checks] == layout.expect).all(axis=1)
    if match.any():
        parts.append(layout.columns(rows[match], base[rows[match]], m[match]))
    still: NDArray[np.bool_] = todo & ~match
    return still


def _walk_alone(
    body: bytes,
    row: int,
    base: int,
    function: int,
    parts: list[Columns],
    problems: list[tuple[int, str]],
) -> None:
    sc = Scan()
    try:
        scan(body, base, row, function, sc)
    except BodyError as exc:
        problems.append((row, str(exc)))
        return
    problems.extend(sc.problems)
    parts.append(Columns.of(sc))
