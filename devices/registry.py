"""The device registry: vendors, profiles and devices in SQL (SQLite file by default), kept in step with the interner."""

from __future__ import annotations

import json
import logging
import threading
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from typing import Any

import sqlalchemy as sa
from sqlalchemy.dialects import postgresql, sqlite
from sqlalchemy.engine import Engine

from devices.areas import scope_clause
from devices.errors import InvalidDefinitionError, NotFoundError
from devices.intern import DeviceEntry, Interner
from devices.profiles import Device, DeviceProfile, DeviceStatus, Vendor

logger = logging.getLogger(__name__)

metadata = sa.MetaData()

vendors_table = sa.Table(
    "vendors",
    metadata,
    sa.Column("id", sa.String(64), primary_key=True),
    sa.Column("name", sa.String(200), nullable=False),
)

profiles_table = sa.Table(
    "profiles",
    metadata,
    sa.Column("id", sa.String(64), primary_key=True),
    sa.Column("vendor", sa.String(64), nullable=True, index=True),
    sa.Column("type", sa.String(64), nullable=False, index=True),
    sa.Column("body", sa.JSON, nullable=False),
)

devices_table = sa.Table(
    "devices",
    metadata,
    sa.Column("id", sa.String(64), primary_key=True),
    # The dense index the time-series store keeps: the monitoring point. Never reused for another
    # point, never changed; replacement hardware inherits it, so one point's series stays continuous.
    sa.Column("idx", sa.Integer, nullable=False, index=True),
    sa.Column("vendor", sa.String(64), nullable=False, index=True),
    sa.Column("profile", sa.String(64), nullable=False),
    sa.Column("type", sa.String(64), nullable=False, index=True),
    sa.Column("name", sa.String(200), nullable=False, default=""),
    sa.Column("lat", sa.Float, nullable=True),
    sa.Column("lon", sa.Float, nullable=True),
    sa.Column("area", sa.String(300), nullable=False, default="", index=True),
    sa.Column("tags", sa.JSON, nullable=False),
    sa.Column("status", sa.String(20), nullable=False, default="active"),
    sa.Column("replaced_by", sa.String(64), nullable=True),
)

_DEVICE_COLUMNS = [
    "id",
    "idx",
    "vendor",
    "profile",
    "type",
    "name",
    "lat",
    "lon",
    "area",
    "tags",
    "status",
    "replaced_by",
]

meta_table = sa.Table(
    "registry_meta",
    metadata,
    sa.Column("key", sa.String(32), primary_key=True),
    sa.Column("value", sa.Integer, nullable=False),
)

metrics_table = sa.Table(
    "metrics",
    metadata,
    sa.Column("name", sa.String(64), primary_key=True),
    sa.Column("idx", sa.Integer, nullable=False, unique=True),
    sa.Column("unit", sa.String(32), nullable=False),
)


@dataclass(frozen=True, slots=True)
class DeviceQuery:
    """Filters for listing devices; every field narrows the result."""

    type: str | None = None
    vendor: str | None = None
    area: str | None = None  # a prefix of the area path: "city/district" matches its streets
    status: DeviceStatus | None = None
    offset: int = 0
    limit: int = 100


def _device_from_row(row: sa.Row[Any]) -> Device:
    return Device(
        id=row.id,
        vendor=row.vendor,
        profile=row.profile,
        name=row.name,
        lat=row.lat,
        lon=row.lon,
        area=row.area,
        tags=row.tags or {},
        status=DeviceStatus(row.status),
        replaced_by=row.replaced_by,
    )


class Registry:
    """Vendors, profiles and devices, persisted in SQL and mirrored in an `Interner` for the hot path."""

    def __init__(self, url: str) -> None:
        """Open (and create if needed) the registry at a SQLAlchemy URL, e.g. ``sqlite:///hub.db``."""
        self.engine: Engine = sa.create_engine(url)
        if self.engine.dialect.name == "sqlite":
            sa.event.listen(self.engine, "connect", _sqlite_pragmas)
        metadata.create_all(self.engine)
        self.interner = Interner()
        self._profiles: dict[str, DeviceProfile] = {}
        self._lock = threading.Lock()  # index allocation must not race between API and loader
        # Bumped on every change, so hot-path caches (codecs, range tables) know to rebuild.
        self.version = 0
        self._stored_version = -1
        self._vendor_ids: tuple[int, frozenset[str]] | None = None
        self._load()

    # -- loading --------------------------------------------------------------------------------

    def _load(self) -> None:
        with self.engine.connect() as conn:
            self._stored_version = self._read_stored_version(conn)
            for row in conn.execute(sa.select(profiles_table.c.body)):
                profile = DeviceProfile.model_validate(row.body)
                self._profiles[profile.id] = profile
            for row in conn.execute(sa.select(metrics_table.c.name, metrics_table.c.idx)):
                self.interner.put_metric(row.name, row.idx)
            # Replaced hardware first: the index then names the point's current device.
            for row in conn.execute(
                sa.select(
                    devices_table.c.id,
                    devices_table.c.idx,
                    devices_table.c.vendor,
                    devices_table.c.profile,
                    devices_table.c.status,
                ).order_by(
                    (devices_table.c.status != DeviceStatus.REPLACED.value), devices_table.c.idx
                )
            ):
                self.interner.put_device(
                    row.id, DeviceEntry(row.idx, row.vendor, row.profile, row.status == "active")
                )
        logger.info(
            "registry loaded: %s profiles, %s devices, %s metrics",
            len(self._profiles),
            len(self.interner.devices),
            self.interner.metric_count,
        )

    @staticmethod
    def _read_stored_version(conn: sa.Connection) -> int:
        value = conn.execute(
            sa.select(meta_table.c.value).where(meta_table.c.key == "version")
        ).scalar_one_or_none()
        return int(value) if value is not None else 0

    def _bump_stored_version(self, conn: sa.Connection) -> None:
        # Another process (the CLI importing devices, another hub node) learns of changes from this.
        updated = conn.execute(
            sa.update(meta_table)
            .where(meta_table.c.key == "version")
            .values(value=meta_table.c.value + 1)
        ).rowcount
        if not updated:
            conn.execute(sa.insert(meta_table).values(key="version", value=1))
        self._stored_version = self._read_stored_version(conn)

    @property
    def stored_version(self) -> int:
        """The database's change counter as of this registry's last load or change.

        Another process that has loaded at least this version sees every change this one has.
        """
        return self._stored_version

    def refresh(self) -> bool:
        """Reload from the database if another process changed it; returns whether anything changed."""
        with self.engine.connect() as conn:
            stored = self._read_stored_version(conn)
        if stored == self._stored_version:
            return False
        with self._lock:
            self._load()
            self.version += 1
        return True

    # -- vendors and profiles -------------------------------------------------------------------

    def put_vendors(self, vendors: Iterable[Vendor]) -> None:
        """Create or update vendors."""
        rows = [v.model_dump() for v in vendors]
        if rows:
            with self.engine.begin() as conn:
                conn.execute(self._upsert(vendors_table, ["id"]), rows)
                self._bump_stored_version(conn)
            self.version += 1

    def vendor_ids(self) -> frozenset[str]:
        """Ids of every vendor (cached until the registry changes)."""
        cached = self._vendor_ids
        if cached is None or cached[0] != self.version:
            cached = (self.version, frozenset(v.id for v in self.vendors()))
            self._vendor_ids = cached
        return cached[1]

    def vendors(self) -> list[Vendor]:
        """Every vendor, by id."""
        with self.engine.connect() as conn:
            rows = conn.execute(sa.select(vendors_table).order_by(vendors_table.c.id)).all()
        return [Vendor(id=r.id, name=r.name) for r in rows]

    def put_profiles(self, profiles: Iterable[DeviceProfile]) -> None:
        """Create or update profiles, interning every metric they name."""
        profiles = list(profiles)
        if not profiles:
            return
        rows = [
            {"id": p.id, "vendor": p.vendor, "type": p.type, "body": p.model_dump(mode="json")}
            for p in profiles
        ]
        with self._lock, self.engine.begin() as conn:
            conn.execute(self._upsert(profiles_table, ["id"]), rows)
            self._bump_stored_version(conn)
            for p in profiles:
                self._intern_metrics(conn, p)
                # The type is denormalised onto devices so that listing by type needs no join.
                conn.execute(
                    sa.update(devices_table)
                    .where(devices_table.c.profile == p.id)
                    .values(type=p.type)
                )
        for p in profiles:
            self._profiles[p.id] = p
        self.version += 1

    def _intern_metrics(self, conn: sa.Connection, profile: DeviceProfile) -> None:
        for m in profile.metrics:
            if m.name in self.interner.metrics:
                continue
            idx = self.interner.metric_count
            conn.execute(sa.insert(metrics_table).values(name=m.name, idx=idx, unit=m.unit))
            self.interner.put_metric(m.name, idx)

    def profile(self, profile_id: str) -> DeviceProfile:
        """The profile ``profile_id``.

        Raises:
            NotFoundError: no such profile.
        """
        try:
            return self._profiles[profile_id]
        except KeyError:
            raise NotFoundError(kind="profile", key=profile_id) from None

    def profiles(self) -> list[DeviceProfile]:
        """Every profile, by id."""
        return [self._profiles[k] for k in sorted(self._profiles)]

    # -- devices --------------------------------------------------------------------------------

    def put_devices(self, devices: Sequence[Device]) -> int:
        """Create or update devices in one transaction; returns how many were new.

        Raises:
            NotFoundError: a device names a profile the registry does not hold.
        """
        # The same id twice in one call: the last definition wins, and it gets one index.
        devices = list({d.id: d for d in devices}.values())
        with self._lock:
            new = 0
            next_idx = self.interner.device_count
            indexes: list[int] = []
            for d in devices:
                known = self.interner.devices.get(d.id)
                if known is None:
                    indexes.append(next_idx)
                    next_idx += 1
                    new += 1
                else:
                    indexes.append(known.index)
            types = {pid: self.profile(pid).type for pid in {d.profile for d in devices}}
            if devices:
                with self.engine.begin() as conn:
                    self._write_devices(conn, devices, indexes, types)
                    self._bump_stored_version(conn)
            for d, idx in zip(devices, indexes, strict=True):
                self.interner.put_device(
                    d.id, DeviceEntry(idx, d.vendor, d.profile, d.status is DeviceStatus.ACTIVE)
                )
            self.version += 1
        return new

    def _write_devices(
        self,
        conn: sa.Connection,
        devices: Sequence[Device],
        indexes: Sequence[int],
        types: dict[str, str],
    ) -> None:
        """Upsert device rows.

        On SQLite, plain DB-API tuples: SQLAlchemy's per-row parameter processing and `model_dump`
        were two thirds of the time of a 100,000-device import.
        """
        columns = [c.name for c in devices_table.columns]
        if self.engine.dialect.name != "sqlite":
            rows = [
                {**d.model_dump(mode="json"), "idx": idx, "type": types[d.profile]}
                for d, idx in zip(devices, indexes, strict=True)
            ]
            conn.execute(self._upsert(devices_table, ["id"]), rows)
            return
        dumps = json.dumps
        tuples = [
            (
                d.id,
                idx,
                d.vendor,
                d.profile,
                types[d.profile],
                d.name,
                d.lat,
                d.lon,
                d.area,
                dumps(d.tags),
                d.status.value,
                d.replaced_by,
            )
            for d, idx in zip(devices, indexes, strict=True)
        ]
        assert columns == _DEVICE_COLUMNS, columns  # noqa: S101 - the tuple above follows the table
        updates = ", ".join(f"{c} = excluded.{c}" for c in columns if c != "id")
        conn.exec_driver_sql(
            f"INSERT INTO devices ({', '.join(columns)}) VALUES ({', '.join('?' * len(columns))}) "
            f"ON CONFLICT (id) DO UPDATE SET {updates}",
            tuples,
        )

    def device(self, device_id: str) -> Device:
        """The device ``device_id``.

        Raises:
            NotFoundError: no such device.
        """
        with self.engine.connect() as conn:
            row = conn.execute(
                sa.select(devices_table).where(devices_table.c.id == device_id)
            ).first()
        if row is None:
            raise NotFoundError(kind="device", key=device_id)
        return _device_from_row(row)

    def devices_by_id(self, ids: Iterable[str]) -> dict[str, Device]:
        """The stored devices among ``ids`` (missing ones are absent), in chunks the database takes."""
        ids = list(dict.fromkeys(ids))
        found: dict[str, Device] = {}
        with self.engine.connect() as conn:
            for start in range(0, len(ids), 500):
                chunk = ids[start : start + 500]
                for row in conn.execute(
                    sa.select(devices_table).where(devices_table.c.id.in_(chunk))
                ):
                    found[row.id] = _device_from_row(row)
        return found

    def set_status(self, device_id: str, status: DeviceStatus) -> Device:
        """Decommission (or reactivate) a device; a replaced device stays replaced.

        Raises:
            NotFoundError: no such device.
            InvalidDefinitionError: the device was replaced, or ``status`` is REPLACED (use `replace`).
        """
        device = self.device(device_id)
        if device.status is DeviceStatus.REPLACED or status is DeviceStatus.REPLACED:
            msg = f"device {device_id} was replaced by {device.replaced_by}: its status is final"
            if status is DeviceStatus.REPLACED:
                msg = "a device becomes replaced only by replacing it with another"
            raise InvalidDefinitionError(msg)
        with self._lock, self.engine.begin() as conn:
            conn.execute(
                sa.update(devices_table)
                .where(devices_table.c.id == device_id)
                .values(status=status.value)
            )
            self._bump_stored_version(conn)
            entry = self.interner.devices[device_id]
            self.interner.put_device(
                device_id,
                DeviceEntry(
                    entry.index, entry.vendor, entry.profile, status is DeviceStatus.ACTIVE
                ),
            )
            self.version += 1
        return device.model_copy(update={"status": status})

    def replace(self, old_id: str, new: Device) -> Device:
        """New hardware ``new`` takes over the monitoring point of ``old_id`` and its series.

        The new device inherits the old one's index, so readings, live state and rules continue on
        one series; the old device is marked REPLACED (its topic is refused from now on) and keeps
        pointing at its successor.

        Raises:
            NotFoundError: ``old_id`` or the new device's profile does not exist.
            InvalidDefinitionError: the old device is not active, the new id is taken, the vendor
                differs, or the new profile measures another kind of thing (type).
        """
        old = self.device(old_id)
        if old.status is not DeviceStatus.ACTIVE:
            msg = f"device {old_id} is {old.status.value}: only an active device can be replaced"
            raise InvalidDefinitionError(msg)
        if new.id in self.interner.devices:
            msg = f"device id {new.id} is already registered"
            raise InvalidDefinitionError(msg)
        if new.vendor != old.vendor:
            msg = f"replacement hardware must come from the same vendor ({old.vendor})"
            raise InvalidDefinitionError(msg)
        old_type, new_type = self.profile(old.profile).type, self.profile(new.profile).type
        if new_type != old_type:
            msg = f"device {old_id} measures {old_type}; a {new_type} device cannot continue its series"
            raise InvalidDefinitionError(msg)
        new = new.model_copy(update={"status": DeviceStatus.ACTIVE, "replaced_by": None})
        with self._lock, self.engine.begin() as conn:
            idx = self.interner.devices[old_id].index
            conn.execute(
                sa.update(devices_table)
                .where(devices_table.c.id == old_id)
                .values(status=DeviceStatus.REPLACED.value, replaced_by=new.id)
            )
            row = new.model_dump(mode="json")
            row.update(idx=idx, type=new_type)
            conn.execute(sa.insert(devices_table).values(**row))
            self._bump_stored_version(conn)
            entry = self.interner.devices[old_id]
            self.interner.put_device(
                old_id, DeviceEntry(idx, entry.vendor, entry.profile, active=False)
            )
            self.interner.put_device(new.id, DeviceEntry(idx, new.vendor, new.profile, active=True))
            self.version += 1
        return new

    def delete_profile(self, profile_id: str) -> None:
        """Delete a profile that no device uses.

        Raises:
            NotFoundError: no such profile.
            InvalidDefinitionError: devices still use it.
        """
        self.profile(profile_id)
        with self._lock, self.engine.begin() as conn:
            users = conn.execute(
                sa.select(sa.func.count())
                .select_from(devices_table)
                .where(devices_table.c.profile == profile_id)
            ).scalar_one()
            if users:
                msg = f"profile {profile_id} is used by {users} devices: move or delete them first"
                raise InvalidDefinitionError(msg)
            conn.execute(sa.delete(profiles_table).where(profiles_table.c.id == profile_id))
            self._bump_stored_version(conn)
            del self._profiles[profile_id]
            self.version += 1

    def devices(self, query: DeviceQuery) -> tuple[list[Device], int]:
        """A page of devices matching ``query``, ordered by id, and how many match in all."""
        cond = []
        if query.type:
            cond.append(devices_table.c.type == query.type)
        if query.vendor:
            cond.append(devices_table.c.vendor == query.vendor)
        if query.status:
            cond.append(devices_table.c.status == query.status.value)
        if query.area:
            cond.append(scope_clause(devices_table.c.area, [query.area.rstrip("/")]))
        where = sa.and_(sa.true(), *cond)
        with self.engine.connect() as conn:
            total = conn.execute(
                sa.select(sa.func.count()).select_from(devices_table).where(where)
            ).scalar_one()
            rows = conn.execute(
                sa.select(devices_table)
                .where(where)
                .order_by(devices_table.c.id)
                .offset(query.offset)
                .limit(query.limit)
            ).all()
        return [_device_from_row(r) for r in rows], int(total)

    def device_id(self, index: int) -> str:
        """The id of the device at a dense index."""
        return self.interner.device_ids[index]

    def metric_unit(self, name: str) -> str | None:
        """The canonical unit of an interned metric, from the first profile that defines it."""
        for p in self._profiles.values():
            spec = p.metric(name)
            if spec is not None:
                return spec.unit
        return None

    # -- SQL helpers ----------------------------------------------------------------------------

    def _upsert(self, table: sa.Table, keys: list[str]) -> sa.Insert:
        """An upsert without values, run as ``conn.execute(stmt, rows)``.

        One statement with many parameter sets is compiled once and cached; building a multi-row
        VALUES clause per chunk instead made importing 100,000 devices about 8x slower.
        """
        insert: Any
        if self.engine.dialect.name == "postgresql":
            insert = postgresql.insert(table)
        else:
            insert = sqlite.insert(table)
        updates = {c.name: insert.excluded[c.name] for c in table.columns if c.name not in keys}
        return insert.on_conflict_do_update(index_elements=keys, set_=updates)  # type: ignore[no-any-return]


def _sqlite_pragmas(dbapi_conn: Any, _record: object) -> None:  # noqa: ANN401 - DB-API connection
    # WAL lets the API read while the loader writes; NORMAL sync is durable enough in WAL mode.
    cur = dbapi_conn.cursor()
    cur.execute("PRAGMA journal_mode=WAL")
    cur.execute("PRAGMA synchronous=NORMAL")
    cur.execute("PRAGMA foreign_keys=ON")
    cur.close()
