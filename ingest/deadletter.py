"""Dead letters: every rejected message or part of one, with a reason a vendor can read, counted per device."""

from __future__ import annotations

import threading
from collections import Counter
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any, NamedTuple

import msgspec
import sqlalchemy as sa

from ingest.columns import Rejection

EXCERPT_BYTES = 1024

_metadata = sa.MetaData()
dead_letters_table = sa.Table(
    "dead_letters",
    _metadata,
    sa.Column("id", sa.Integer, primary_key=True, autoincrement=True),
    sa.Column("ts", sa.BigInteger, nullable=False, index=True),
    sa.Column("vendor", sa.String(64), nullable=False, index=True),
    sa.Column("device", sa.String(64), nullable=False, index=True),
    sa.Column("topic", sa.String(300), nullable=False),
    sa.Column("reason", sa.String(32), nullable=False, index=True),
    sa.Column("detail", sa.Text, nullable=False),
    sa.Column("payload", sa.Text, nullable=False),
)


class DeadLetter(msgspec.Struct, frozen=True, kw_only=True):
    """A rejected message (or part of one), as a vendor sees it."""

    id: int | None = None
    ts: datetime
    vendor: str
    device: str
    topic: str
    reason: str
    detail: str
    payload: str


class ReasonCount(NamedTuple):
    """Rejections of one device for one reason within a span (see `DeadLetterStore.reasons_since`)."""

    device: str
    reason: str
    rejects: int  # since the span's start
    recent: int  # since the later ``recent_ms`` boundary
    last_ms: int  # when the newest of them was received, epoch ms UTC


@dataclass(frozen=True, slots=True)
class DeadLetterQuery:
    """Filters for listing dead letters; newest first."""

    device: str | None = None
    vendor: str | None = None
    reason: str | None = None
    offset: int = 0
    limit: int = 100


def _text(value: str, limit: int | None = None) -> str:
    """``value`` as every database stores it: PostgreSQL refuses NUL in text and overlong strings.

    A refused row would fail the pipeline's whole flush, so a hostile topic or payload (a NUL byte, a
    5,000-character device segment) must never reach the database as it came.
    """
    clean = value.replace("\x00", "\ufffd")
    return clean if limit is None else clean[:limit]


def _excerpt(payload: bytes) -> str:
    return _text(payload[:EXCERPT_BYTES].decode("utf-8", errors="replace"))


class DeadLetterStore:
    """Dead letters in SQL (the registry's database by default), with per-device counts in memory."""

    def __init__(self, url: str) -> None:
        """Open (and create if needed) the dead-letter table at a SQLAlchemy URL."""
        self.engine = sa.create_engine(url)
        _metadata.create_all(self.engine)
        self._lock = threading.Lock()
        self.counts: Counter[tuple[str, str]] = Counter()  # (device, reason) -> rejections
        with self.engine.connect() as conn:
            rows = conn.execute(
                sa.select(
                    dead_letters_table.c.device, dead_letters_table.c.reason, sa.func.count()
                ).group_by(dead_letters_table.c.device, dead_letters_table.c.reason)
            ).all()
        for device, reason, n in rows:
            self.counts[(device, reason)] = int(n)

    def write(self, rejections: Sequence[Rejection]) -> None:
        """Persist rejections (one row each) and count them per device and reason."""
        if not rejections:
            return
        rows: list[dict[str, Any]] = []
        for r in rejections:
            device = r.error.device_id or r.raw.device_id
            rows.append(
                {
                    "ts": r.raw.received_ms,
                    "vendor": _text(r.raw.vendor, 64),
                    "device": _text(device, 64),
                    "topic": _text(r.raw.topic, 300),
                    "reason": _text(str(r.error.reason), 32),
                    "detail": _text(r.error.detail),
                    "payload": _excerpt(r.raw.payload),
                }
            )
        with self._lock, self.engine.begin() as conn:
            conn.execute(sa.insert(dead_letters_table), rows)
            for row in rows:
                self.counts[(row["device"], row["reason"])] += 1

    def list(self, query: DeadLetterQuery) -> tuple[list[DeadLetter], int]:
        """A page of dead letters matching ``query`` (newest first) and how many match in all."""
        t = dead_letters_table
        cond = []
        if query.device:
            cond.append(t.c.device == query.device)
        if query.vendor:
            cond.append(t.c.vendor == query.vendor)
        if query.reason:
            cond.append(t.c.reason == query.reason)
        where = sa.and_(sa.true(), *cond)
        with self.engine.connect() as conn:
            total = conn.execute(
                sa.select(sa.func.count()).select_from(t).where(where)
            ).scalar_one()
            rows = conn.execute(
                sa.select(t)
                .where(where)
                .order_by(t.c.id.desc())
                .offset(query.offset)
                .limit(query.limit)
            ).all()
        items = [
            DeadLetter(
                id=r.id,
                ts=datetime.fromtimestamp(r.ts / 1000, tz=UTC),
                vendor=r.vendor,
                device=r.device,
                topic=r.topic,
                reason=r.reason,
                detail=r.detail,
                payload=r.payload,
            )
            for r in rows
        ]
        return items, int(total)

    def reasons_since(
        self,
        since_ms: int,
        *,
        recent_ms: int,
        vendor: str | None = None,
        device: str | None = None,
    ) -> Sequence[ReasonCount]:
        """Rejections received since ``since_ms`` per (device, reason), in one grouped query.

        ``recent`` counts those since ``recent_ms`` too, so device health gets a day's reasons and the
        last hour's reject count from one pass. Newest groups first.
        """
        t = dead_letters_table
        cond = [t.c.ts >= since_ms]
        if vendor is not None:
            cond.append(t.c.vendor == vendor)
        if device is not None:
            cond.append(t.c.device == device)
        recent = sa.func.sum(sa.case((t.c.ts >= recent_ms, 1), else_=0))
        last = sa.func.max(t.c.ts)
        stmt = (
            sa.select(t.c.device, t.c.reason, sa.func.count(), recent, last)
            .where(*cond)
            .group_by(t.c.device, t.c.reason)
            .order_by(last.desc())
        )
        with self.engine.connect() as conn:
            rows = conn.execute(stmt).all()
        return [
            ReasonCount(str(d), str(r), int(n), int(rec or 0), int(ts)) for d, r, n, rec, ts in rows
        ]

    def count_for(self, device: str) -> dict[str, int]:
        """Rejections of one device, by reason."""
        return {reason: n for (dev, reason), n in self.counts.items() if dev == device}

    def total(self) -> int:
        """Rejections of every device."""
        return sum(self.counts.values())
