"""Citizens' reports in SQL (the registry's database): insert, cluster, link, read back, filter."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import sqlalchemy as sa
from sqlalchemy.engine import Connection, Engine

from alerts.citizen_linking import Places
from alerts.citizen_records import Link, NewReport, Report, ReportQuery, StoredPhoto
from alerts.citizen_tables import metadata, report_links_table, report_photos_table, reports_table
from devices.areas import scope_clause

_R = reports_table.c


def _sqlite_wal(dbapi_conn: Any, _record: object) -> None:  # noqa: ANN401 - DB-API connection
    # The registry's file, shared with every store: readers never block the writer, and a writer
    # waits for another instead of failing at once.
    cur = dbapi_conn.cursor()
    cur.execute("PRAGMA journal_mode=WAL")
    cur.execute("PRAGMA busy_timeout=10000")
    cur.close()


class ReportStore:
    """The report tables, and the reads the service links and clusters with."""

    def __init__(self, url: str) -> None:
        """Open (and create if needed: tests open a store alone) the tables at a SQLAlchemy URL."""
        self.engine: Engine = sa.create_engine(url)
        if self.engine.dialect.name == "sqlite":
            sa.event.listen(self.engine, "connect", _sqlite_wal)
        metadata.create_all(self.engine)

    def dispose(self) -> None:
        """Close the database connections."""
        self.engine.dispose()

    # -- writes (inside the caller's transaction) -----------------------------------------------

    @staticmethod
    def known(conn: Connection, keys: Sequence[tuple[str, str]]) -> dict[tuple[str, str], int]:
        """The ids of reports already kept under ``(source, external_id)`` keys."""
        out: dict[tuple[str, str], int] = {}
        by_source: dict[str, list[str]] = {}
        for source, ext in keys:
            by_source.setdefault(source, []).append(ext)
        for source, exts in by_source.items():
            for start in range(0, len(exts), 500):  # stay under the database's parameter limit
                rows = conn.execute(
                    sa.select(_R.external_id, _R.id).where(
                        _R.source == source, _R.external_id.in_(exts[start : start + 500])
                    )
                ).all()
                out.update({(source, r.external_id): int(r.id) for r in rows})
        return out

    @staticmethod
    def insert(conn: Connection, reports: Sequence[NewReport], received_ms: int) -> list[int]:
        """Insert reports; their ids, in order."""
        rows = [
            {
                "source": r.source,
                "external_id": r.external_id,
                "category": r.category,
                "text": r.text,
                "lat": r.lat,
                "lon": r.lon,
                "address": r.address,
                "area": r.area,
                "at_ms": r.at_ms,
                "received_ms": received_ms,
                "reporter": r.reporter,
                "cluster_id": None,
            }
            for r in reports
        ]
        if not rows:
            return []
        result = conn.execute(
            sa.insert(reports_table).returning(_R.id, sort_by_parameter_order=True), rows
        )
        return [int(i) for i in result.scalars().all()]

    @staticmethod
    def set_clusters(conn: Connection, ids: Sequence[int], clusters: Sequence[int | None]) -> None:
        """Record the cluster each report joined."""
        if ids:
            conn.execute(
                sa.update(reports_table)
                .where(_R.id == sa.bindparam("rid"))
                .values(cluster_id=sa.bindparam("cid")),
                [{"rid": i, "cid": c} for i, c in zip(ids, clusters, strict=True)],
            )

    @staticmethod
    def add_photos(conn: Connection, report_id: int, photos: Sequence[StoredPhoto]) -> None:
        """Record the photos saved for a report."""
        if photos:
            conn.execute(
                sa.insert(report_photos_table),
                [
                    {
                        "report_id": report_id,
                        "n": p.n,
                        "content_type": p.content_type,
                        "size": p.size,
                        "sha256": p.sha256,
                        "name": p.name,
                    }
                    for p in photos
                ],
            )

    @staticmethod
    def add_links(conn: Connection, links: Sequence[tuple[int, Link]]) -> None:
        """Record ``(report id, link)`` pairs (each once)."""
        if links:
            conn.execute(
                sa.insert(report_links_table),
                [
                    {
                        "report_id": rid,
                        "kind": link.kind,
                        "target": link.target,
                        "distance_m": round(link.distance_m, 1),
                        "dt_s": round(link.dt_s, 1),
                    }
                    for rid, link in links
                ],
            )

    # -- reads ----------------------------------------------------------------------------------

    @staticmethod
    def placed_between(
        conn: Connection, start_ms: int, end_ms: int
    ) -> tuple[Places, dict[int, int | None]]:
        """Placed reports of ``[start_ms, end_ms]`` as `Places`, and each one's cluster."""
        rows = conn.execute(
            sa.select(_R.id, _R.lat, _R.lon, _R.at_ms, _R.cluster_id).where(
                _R.at_ms >= start_ms,
                _R.at_ms <= end_ms,
                _R.lat.is_not(None),
                _R.lon.is_not(None),
            )
        ).all()
        places = Places.of(
            [r.id for r in rows],
            [r.lat for r in rows],
            [r.lon for r in rows],
            [r.at_ms for r in rows],
        )
        return places, {int(r.id): r.cluster_id for r in rows}

    def cluster_sizes(self, clusters: Sequence[int]) -> dict[int, int]:
        """How many reports each of ``clusters`` holds (absent: none)."""
        out: dict[int, int] = {}
        with self.engine.connect() as conn:
            for start in range(0, len(clusters), 500):
                rows = conn.execute(
                    sa.select(_R.cluster_id, sa.func.count())
                    .where(_R.cluster_id.in_(list(clusters[start : start + 500])))
                    .group_by(_R.cluster_id)
                ).all()
                out.update((int(c), int(n)) for c, n in rows)
        return out

    def members(self, cluster_id: int, since_ms: int) -> list[Report]:
        """The reports of a cluster from ``since_ms`` on, oldest first, without photos and links.

        What deciding a cluster reads: a dense cluster's links grow as the square of its reports.
        """
        with self.engine.connect() as conn:
            rows = conn.execute(
                sa.select(reports_table)
                .where(_R.cluster_id == cluster_id, _R.at_ms >= since_ms)
                .order_by(_R.at_ms, _R.id)
            ).all()
        return [_report(r) for r in rows]

    def many(self, ids: Sequence[int]) -> list[Report]:
        """Reports by id, in the order given (unknown ids left out)."""
        if not ids:
            return []
        found: dict[int, Report] = {}
        with self.engine.connect() as conn:
            for start in range(0, len(ids), 500):
                rows = conn.execute(
                    sa.select(reports_table).where(_R.id.in_(list(ids[start : start + 500])))
                ).all()
                found.update((r.id, r) for r in self._full(conn, rows))
        return [found[i] for i in ids if i in found]

    def get(self, report_id: int) -> Report | None:
        """A report with its photos and links, or None."""
        with self.engine.connect() as conn:
            row = conn.execute(sa.select(reports_table).where(_R.id == report_id)).first()
            if row is None:
                return None
            return self._full(conn, [row])[0]

    def query(self, q: ReportQuery, *, oldest_first: bool = False) -> tuple[list[Report], int]:
        """Reports matching ``q`` (newest first unless ``oldest_first``), and how many match."""
        where = self._where(q)
        order = (_R.at_ms, _R.id) if oldest_first else (_R.at_ms.desc(), _R.id.desc())
        with self.engine.connect() as conn:
            total = conn.execute(
                sa.select(sa.func.count()).select_from(reports_table).where(*where)
            ).scalar_one()
            rows = conn.execute(
                sa.select(reports_table)
                .where(*where)
                .order_by(*order)
                .offset(q.offset)
                .limit(q.limit)
            ).all()
            return self._full(conn, rows), int(total)

    @staticmethod
    def _where(q: ReportQuery) -> list[sa.ColumnElement[bool]]:
        where: list[sa.ColumnElement[bool]] = []
        if q.category is not None:
            where.append(_R.category == q.category)
        if q.source is not None:
            where.append(_R.source == q.source)
        if q.since_ms is not None:
            where.append(_R.at_ms >= q.since_ms)
        if q.until_ms is not None:
            where.append(_R.at_ms < q.until_ms)
        if q.cluster_id is not None:
            where.append(_R.cluster_id == q.cluster_id)
        if q.placed is not None:
            where.append(_R.lat.is_not(None) if q.placed else _R.lat.is_(None))
        if q.within is not None:
            where.append(scope_clause(_R.area, q.within))
        if q.linked_alert is not None:
            linked = sa.select(report_links_table.c.report_id).where(
                report_links_table.c.kind == "alert",
                report_links_table.c.target == q.linked_alert,
            )
            where.append(_R.id.in_(linked))
        return where

    @staticmethod
    def _full(conn: Connection, rows: Sequence[sa.Row[Any]]) -> list[Report]:
        """Rows as reports, with their photos and links (two reads for the whole page)."""
        ids = [int(r.id) for r in rows]
        photos: dict[int, list[StoredPhoto]] = {}
        links: dict[int, list[Link]] = {}
        if ids:
            p = report_photos_table.c
            for r in conn.execute(
                sa.select(report_photos_table)
                .where(p.report_id.in_(ids))
                .order_by(p.report_id, p.n)
            ):
                photos.setdefault(int(r.report_id), []).append(
                    StoredPhoto(int(r.n), r.content_type, int(r.size), r.sha256, r.name)
                )
            k = report_links_table.c
            for r in conn.execute(
                sa.select(report_links_table)
                .where(k.report_id.in_(ids))
                .order_by(k.report_id, k.kind, k.distance_m)
            ):
                links.setdefault(int(r.report_id), []).append(
                    Link(r.kind, int(r.target), float(r.distance_m), float(r.dt_s))
                )
        return [
            _report(r, tuple(photos.get(int(r.id), ())), tuple(links.get(int(r.id), ())))
            for r in rows
        ]


def _report(
    r: sa.Row[Any], photos: tuple[StoredPhoto, ...] = (), links: tuple[Link, ...] = ()
) -> Report:
    return Report(
        id=int(r.id),
        source=r.source,
        external_id=r.external_id,
        category=r.category,
        text=r.text,
        lat=r.lat,
        lon=r.lon,
        address=r.address,
        area=r.area,
        at_ms=int(r.at_ms),
        received_ms=int(r.received_ms),
        reporter=r.reporter,
        cluster_id=r.cluster_id,
        photos=photos,
        links=links,
    )
