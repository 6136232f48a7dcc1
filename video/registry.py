"""The camera registry: cameras in SQL (the device registry's database by default), mirrored in memory.

6,000 cameras are a few megabytes, so every camera is held in memory and listings, filters and the
spatial index read that copy; SQL is the durable record and the way several hub processes (or the
CLI) share it: a change bumps a stored version, and `refresh` reloads when another process bumped it.
"""

from __future__ import annotations

import logging
import threading
from collections.abc import Iterable, Sequence
from typing import Any

import sqlalchemy as sa
from sqlalchemy.engine import Engine

from video.cameras import Camera
from video.errors import CameraConflictError, CameraNotFoundError

logger = logging.getLogger(__name__)

metadata = sa.MetaData()

cameras_table = sa.Table(
    "cameras",
    metadata,
    sa.Column("id", sa.String(64), primary_key=True),
    # The full URL, login included: the patrol needs it. The API and logs only ever see it redacted.
    sa.Column("url", sa.Text, nullable=False),
    sa.Column("name", sa.String(200), nullable=False, default=""),
    sa.Column("department", sa.String(64), nullable=False, default="", index=True),
    sa.Column("lat", sa.Float, nullable=True),
    sa.Column("lon", sa.Float, nullable=True),
    sa.Column("heading", sa.Float, nullable=True),
    sa.Column("fov", sa.Float, nullable=True),
    sa.Column("area", sa.String(300), nullable=False, default="", index=True),
    sa.Column("tags", sa.JSON, nullable=False),
    sa.Column("thresholds", sa.JSON, nullable=False),
    sa.Column("enabled", sa.Boolean, nullable=False, default=True),
)

video_meta_table = sa.Table(
    "video_meta",
    metadata,
    sa.Column("key", sa.String(32), primary_key=True),
    sa.Column("value", sa.Integer, nullable=False),
)


def _row(camera: Camera) -> dict[str, Any]:
    return camera.model_dump(mode="json")


def _camera(row: sa.Row[Any]) -> Camera:
    data = dict(row._mapping)  # SQLAlchemy's documented way to a row's dict
    data["tags"] = data["tags"] or {}
    data["thresholds"] = data["thresholds"] or {}
    # Stored rows were valid when written; construct without re-running validators (fast load).
    return Camera.model_construct(**data)


def sqlite_pragmas(dbapi_conn: Any, _record: object) -> None:  # noqa: ANN401 - DB-API connection
    """WAL, so the API reads while the patrol writes; NORMAL sync is durable enough under WAL."""
    cur = dbapi_conn.cursor()
    cur.execute("PRAGMA journal_mode=WAL")
    cur.execute("PRAGMA synchronous=NORMAL")
    cur.close()


class CameraRegistry:
    """Cameras, persisted in SQL and held in memory (``cameras``, by id)."""

    def __init__(self, url: str) -> None:
        """Open (and create if needed) the camera tables at a SQLAlchemy URL."""
        self.engine: Engine = sa.create_engine(url)
        if self.engine.dialect.name == "sqlite":
            sa.event.listen(self.engine, "connect", sqlite_pragmas)
        metadata.create_all(self.engine)
        self._lock = threading.Lock()
        self.cameras: dict[str, Camera] = {}
        self.version = 0  # bumped on every change seen by this process (caches rebuild on it)
        self._stored_version = -1
        self._load()

    def dispose(self) -> None:
        """Close the database connections."""
        self.engine.dispose()

    # -- loading --------------------------------------------------------------------------------

    def _load(self) -> None:
        with self.engine.connect() as conn:
            self._stored_version = self._read_version(conn)
            rows = conn.execute(sa.select(cameras_table)).all()
        self.cameras = {r.id: _camera(r) for r in rows}
        logger.info("camera registry loaded: %s cameras", len(self.cameras))

    @staticmethod
    def _read_version(conn: sa.Connection) -> int:
        value = conn.execute(
            sa.select(video_meta_table.c.value).where(video_meta_table.c.key == "version")
        ).scalar_one_or_none()
        return int(value) if value is not None else 0

    def _bump(self, conn: sa.Connection) -> None:
        updated = conn.execute(
            sa.update(video_meta_table)
            .where(video_meta_table.c.key == "version")
            .values(value=video_meta_table.c.value + 1)
        ).rowcount
        if not updated:
            conn.execute(sa.insert(video_meta_table).values(key="version", value=1))
        self._stored_version = self._read_version(conn)
        self.version += 1

    def refresh(self) -> bool:
        """Reload if another process changed the cameras; returns whether anything changed."""
        with self.engine.connect() as conn:
            stored = self._read_version(conn)
        if stored == self._stored_version:
            return False
        with self._lock:
            self._load()
            self.version += 1
        return True

    # -- reads ----------------------------------------------------------------------------------

    def get(self, camera_id: str) -> Camera:
        """The camera ``camera_id``.

        Raises:
            CameraNotFoundError: no such camera.
        """
        try:
            return self.cameras[camera_id]
        except KeyError:
            raise CameraNotFoundError(camera_id) from None

    def all(self) -> list[Camera]:
        """Every camera, by id."""
        return [self.cameras[k] for k in sorted(self.cameras)]

    # -- writes ---------------------------------------------------------------------------------

    def create(self, camera: Camera) -> Camera:
        """Register a new camera.

        Raises:
            CameraConflictError: the id is taken.
        """
        with self._lock:
            if camera.id in self.cameras:
                raise CameraConflictError(camera.id)
            with self.engine.begin() as conn:
                conn.execute(sa.insert(cameras_table).values(**_row(camera)))
                self._bump(conn)
            self.cameras[camera.id] = camera
        return camera

    def put(self, cameras: Sequence[Camera]) -> None:
        """Create or replace cameras in one transaction (the last of a repeated id wins)."""
        unique = list({c.id: c for c in cameras}.values())
        if not unique:
            return
        with self._lock:
            known = [c for c in unique if c.id in self.cameras]
            new = [c for c in unique if c.id not in self.cameras]
            with self.engine.begin() as conn:
                if new:
                    conn.execute(sa.insert(cameras_table), [_row(c) for c in new])
                for c in known:  # updates are few: bulk re-uploads change a handful of rows
                    conn.execute(
                        sa.update(cameras_table).where(cameras_table.c.id == c.id).values(**_row(c))
                    )
                self._bump(conn)
            self.cameras.update((c.id, c) for c in unique)

    def replace(self, camera: Camera) -> Camera:
        """Store a changed camera.

        Raises:
            CameraNotFoundError: no such camera.
        """
        self.get(camera.id)
        self.put([camera])
        return camera

    def delete(self, camera_id: str) -> Camera:
        """Remove a camera; returns what it was.

        Raises:
            CameraNotFoundError: no such camera.
        """
        with self._lock:
            camera = self.get(camera_id)
            with self.engine.begin() as conn:
                conn.execute(sa.delete(cameras_table).where(cameras_table.c.id == camera_id))
                self._bump(conn)
            del self.cameras[camera_id]
        return camera

    def by_ids(self, ids: Iterable[str]) -> dict[str, Camera]:
        """The registered cameras among ``ids``."""
        return {i: self.cameras[i] for i in ids if i in self.cameras}
