"""Dead letters: every rejected message or part of one, with a reason a vendor can read, counted per device."""

from __future__ import annotations

import threading
from collections import Counter
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any

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


@dataclass(frozen=True, slots=True)
class DeadLetterQuery:
    """Filters for listing dead letters; newest first."""

    device: str | None = None
    vendor: str | None = None
    reason: str | None = None
    offset: int = 0
    limit: int = 100


def _excerpt(payload: bytes) -> str:
    return payload[:EXCERPT_BYTES].decode("utf-8", errors="replace")


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
                    "vendor": r.raw.vendor,
                    "device": device,
                    "topic": r.raw.topic[:300],
                    "reason": str(r.error.reason),
                    "detail": r.error.detail,
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

    def count_for(self, device: str) -> dict[str, int]:
        """Rejections of one device, by reason."""
        return {reason: n for (dev, reason), n in self.counts.items() if dev == device}

    def total(self) -> int:
        """Rejections of every device."""
        return sum(self.counts.values())
