"""Per-device MQTT credentials: one username and hub-generated secret per device, stored only as a hash.

A device connects to the broker as ``{vendor}/{device_id}`` with a secret the hub generated and showed
once. The store keeps the broker-verifiable hash (Mosquitto's ``$7$`` form: PBKDF2-HMAC-SHA512), never
the secret, so the password file the hub writes for the broker is regenerated from this table alone.

Why one iteration, not ``mosquitto_passwd``'s 101: iterations slow down guessing a *chosen* password
from a leaked hash. A device secret is 192 random bits from `secrets`; guessing it is out of reach at
any iteration count, so iterations only cost. Measured on this machine (2 cores): 104 µs per hash at
101 iterations (100,000 devices: 10 s of hashing; a bulk import could not reach 5,000 devices/s with it)
against about 3 µs at 1; and Mosquitto re-verifies every connected client's password on each reload,
which with 5,000 clients connected stalled the broker 500-650 ms at 101 iterations and 45-55 ms at 1.
Accounts whose password a person may choose (`PASSWORD_ITERATIONS`) keep 101.

The salt is 12 characters of the URL-safe base64 alphabet used as bytes: Mosquitto 2.0 insists on a
12-byte salt, and EMQX's built-in database takes the salt as a string, so the same stored hash works for
both (see ``hub/broker_auth.py``).

This module owns the ``device_credentials`` table (and a one-row change counter) in the registry's
database; it does not read the registry's tables. Which credentials reach the broker (only devices the
registry holds as active, with the same vendor) is decided where both are known, in ``hub``.
"""

from __future__ import annotations

import base64
import hashlib
import hmac
import re
import secrets
import time
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from typing import Any, NamedTuple

import sqlalchemy as sa
from sqlalchemy.dialects import postgresql, sqlite
from sqlalchemy.engine import Engine

from devices.errors import InvalidDefinitionError, NotFoundError

DEVICE_ITERATIONS = 1
"""PBKDF2 iterations for hub-generated device secrets (192 random bits; see the module docstring)."""
PASSWORD_ITERATIONS = 101
"""PBKDF2 iterations for passwords a person may have chosen: what ``mosquitto_passwd`` writes."""
SECRET_BYTES = 24  # 192 bits, 32 URL-safe characters
SALT_CHARS = 12  # Mosquitto 2.0 refuses ``$7$`` salts that do not decode to exactly 12 bytes
_DIGEST_BYTES = 64

# Ids as the registry allows them. ':' is allowed in ids (``urn:dev:mac:...``) but Mosquitto's
# password file splits a line at the first ':', so a username writes it as '~', which no id may hold:
# the username stays unambiguous and never names another device's topic.
_ID = re.compile(r"^[A-Za-z0-9][A-Za-z0-9_.:-]{0,63}$")
COLON_IN_USERNAME = "~"

metadata = sa.MetaData()

credentials_table = sa.Table(
    "device_credentials",
    metadata,
    sa.Column("device_id", sa.String(64), primary_key=True),
    sa.Column("vendor", sa.String(64), nullable=False),
    sa.Column("username", sa.String(130), nullable=False, unique=True),
    # NULL once revoked: a revoked credential keeps no hash that could be put back by mistake.
    sa.Column("password_hash", sa.String(200), nullable=True),
    sa.Column("issued_at", sa.BigInteger, nullable=False),  # epoch ms, first issue
    sa.Column("rotated_at", sa.BigInteger, nullable=True),  # epoch ms, last new secret after that
    sa.Column("revoked_at", sa.BigInteger, nullable=True),  # epoch ms; NULL while usable
)

# Bumped in every writing transaction, so a hub process learns that another process (the CLI, an
# import) changed credentials with one cheap read, and regenerates the broker's files only then.
credentials_meta_table = sa.Table(
    "device_credentials_meta",
    metadata,
    sa.Column("key", sa.String(32), primary_key=True),
    sa.Column("value", sa.Integer, nullable=False),
)


class IssuedCredential(NamedTuple):
    """A new secret, to be shown once to whoever installs the device; the hub keeps only its hash.

    A tuple ``(device_id, username, secret)`` so callers may unpack it; its repr hides the secret,
    so it never reaches a log or a traceback.
    """

    device_id: str
    username: str
    secret: str

    def __repr__(self) -> str:
        """Everything but the secret."""
        return f"IssuedCredential(device_id={self.device_id!r}, username={self.username!r}, secret=***)"


@dataclass(frozen=True, slots=True)
class CredentialStatus:
    """What the hub knows about a device's credential (never the secret)."""

    device_id: str
    vendor: str
    username: str
    issued_at_ms: int
    rotated_at_ms: int | None
    revoked_at_ms: int | None

    @property
    def active(self) -> bool:
        """Whether the credential may connect (it has not been revoked)."""
        return self.revoked_at_ms is None


@dataclass(frozen=True, slots=True)
class ActiveCredential:
    """A usable credential as the broker needs it: who, and the hash to check the secret against."""

    device_id: str
    vendor: str
    username: str
    password_hash: str = field(repr=False)


def username_for(vendor: str, device_id: str) -> str:
    """The broker username of a device: ``{vendor}/{device_id}``, with ':' written as '~'.

    The vendor/id form lets one static ACL line (``pattern write sensors/%u/up``) give every device
    exactly its own topics.

    Raises:
        InvalidDefinitionError: the vendor or device id is not a valid registry id.
    """
    for kind, value in (("vendor", vendor), ("device", device_id)):
        if not _ID.match(value):
            msg = f"{kind} id {value!r} must be 1-64 characters of letters, digits, '_', '.', ':' or '-'"
            raise InvalidDefinitionError(msg)
    return f"{vendor}/{device_id}".replace(":", COLON_IN_USERNAME)


def hash_secret(secret: str, iterations: int = DEVICE_ITERATIONS) -> str:
    """The Mosquitto ``$7$`` hash of ``secret``: ``$7$iterations$b64(salt)$b64(PBKDF2-SHA512)``."""
    salt = secrets.token_urlsafe(SALT_CHARS * 3 // 4).encode("ascii")
    digest = hashlib.pbkdf2_hmac("sha512", secret.encode(), salt, iterations, _DIGEST_BYTES)
    return f"$7${iterations}${base64.b64encode(salt).decode()}${base64.b64encode(digest).decode()}"


@dataclass(frozen=True, slots=True)
class Pbkdf2Hash:
    """The parts of a ``$7$`` hash, for checking a secret or handing the hash to another broker."""

    iterations: int
    salt: bytes
    digest: bytes

    @classmethod
    def parse(cls, hashed: str) -> Pbkdf2Hash:
        """Split a ``$7$`` hash.

        Raises:
            ValueError: it is not a ``$7$`` PBKDF2-SHA512 hash.
        """
        parts = hashed.split("$")
        if len(parts) != 5 or parts[0] or parts[1] != "7":
            msg = "not a Mosquitto $7$ (PBKDF2-SHA512) hash"
            raise ValueError(msg)
        return cls(int(parts[2]), base64.b64decode(parts[3]), base64.b64decode(parts[4]))

    def matches(self, secret: str) -> bool:
        """Whether ``secret`` hashes to this digest (constant-time comparison)."""
        digest = hashlib.pbkdf2_hmac(
            "sha512", secret.encode(), self.salt, self.iterations, len(self.digest)
        )
        return hmac.compare_digest(digest, self.digest)


def verify_secret(secret: str, hashed: str) -> bool:
    """Whether ``secret`` is the one ``hashed`` was made from (False for anything unparsable)."""
    try:
        return Pbkdf2Hash.parse(hashed).matches(secret)
    except ValueError:
        return False


def _now_ms() -> int:
    return time.time_ns() // 1_000_000


class CredentialStore:
    """Device credentials in SQL (the registry's database): issue, rotate, revoke, list what may connect."""

    def __init__(self, url: str, *, clock: Callable[[], int] = _now_ms) -> None:
        """Open (and create if needed) the credential table at a SQLAlchemy URL, e.g. ``sqlite:///hub.db``.

        Args:
            url: the registry's URL; the table lives beside the registry's.
            clock: epoch milliseconds now (tests pass their own).
        """
        self.engine: Engine = sa.create_engine(url)
        if self.engine.dialect.name == "sqlite":
            sa.event.listen(self.engine, "connect", _sqlite_pragmas)
        metadata.create_all(self.engine)
        self._clock = clock

    def dispose(self) -> None:
        """Close the database connections."""
        self.engine.dispose()

    # -- writing --------------------------------------------------------------------------------

    def issue(self, device_id: str, vendor: str) -> IssuedCredential:
        """Give a device a new secret; an earlier secret of the device stops working (rotation).

        Issuing after `revoke` makes the device usable again with the new secret.

        Raises:
            InvalidDefinitionError: the vendor or device id cannot be a broker username.
        """
        return self.issue_many([(device_id, vendor)])[0]

    def issue_many(self, devices: Iterable[tuple[str, str]]) -> list[IssuedCredential]:
        """Issue (or rotate) credentials for many ``(device_id, vendor)`` pairs in one transaction.

        Built for bulk imports: one statement with many parameter sets, and a cheap hash (see the
        module docstring). A device named twice gets the secret of its last mention.

        Raises:
            InvalidDefinitionError: a vendor or device id cannot be a broker username; nothing is written.
        """
        now = self._clock()
        pairs = list(dict(devices).items())
        issued: list[IssuedCredential] = []
        rows: list[dict[str, Any]] = []
        for device_id, vendor in pairs:
            username = username_for(vendor, device_id)
            secret = secrets.token_urlsafe(SECRET_BYTES)
            issued.append(IssuedCredential(device_id, username, secret))
            rows.append(
                {
                    "device_id": device_id,
                    "vendor": vendor,
                    "username": username,
                    "password_hash": hash_secret(secret),
                    "issued_at": now,
                    "rotated_at": None,
                    "revoked_at": None,
                }
            )
        if rows:
            with self.engine.begin() as conn:
                conn.execute(self._issue_statement(), rows)
                self._bump_generation(conn)
        return issued

    def _issue_statement(self) -> sa.Insert:
        # An upsert compiled once for all rows: a new row keeps its values; an existing one keeps its
        # first issue time, takes the new hash, counts as rotated now and is no longer revoked.
        insert: Any = (
            postgresql.insert(credentials_table)
            if self.engine.dialect.name == "postgresql"
            else sqlite.insert(credentials_table)
        )
        ex = insert.excluded
        return insert.on_conflict_do_update(  # type: ignore[no-any-return]
            index_elements=["device_id"],
            set_={
                "vendor": ex.vendor,
                "username": ex.username,
                "password_hash": ex.password_hash,
                "rotated_at": ex.issued_at,
                "revoked_at": None,
            },
        )

    def revoke(self, device_id: str) -> bool:
        """Make a device's credential unusable (its hash is dropped).

        Returns:
            Whether a usable credential was revoked: False when the device has none or it was
            revoked already (decommissioning a device that never had one is not an error).
        """
        with self.engine.begin() as conn:
            updated = conn.execute(
                sa.update(credentials_table)
                .where(
                    credentials_table.c.device_id == device_id,
                    credentials_table.c.revoked_at.is_(None),
                )
                .values(password_hash=None, revoked_at=self._clock())
            ).rowcount
            if updated:
                self._bump_generation(conn)
        return bool(updated)

    # -- reading --------------------------------------------------------------------------------

    def get(self, device_id: str) -> CredentialStatus:
        """The state of a device's credential.

        Raises:
            NotFoundError: the device has no credential.
        """
        c = credentials_table.c
        with self.engine.connect() as conn:
            row = conn.execute(
                sa.select(
                    c.device_id, c.vendor, c.username, c.issued_at, c.rotated_at, c.revoked_at
                ).where(c.device_id == device_id)
            ).first()
        if row is None:
            raise NotFoundError(kind="credential", key=device_id)
        return CredentialStatus(
            device_id=row.device_id,
            vendor=row.vendor,
            username=row.username,
            issued_at_ms=row.issued_at,
            rotated_at_ms=row.rotated_at,
            revoked_at_ms=row.revoked_at,
        )

    def all_active(self) -> list[ActiveCredential]:
        """Every credential that has not been revoked, by username (a stable order for the broker's files)."""
        c = credentials_table.c
        with self.engine.connect() as conn:
            rows = conn.execute(
                sa.select(c.device_id, c.vendor, c.username, c.password_hash)
                .where(c.revoked_at.is_(None))
                .order_by(c.username)
            ).all()
        return [ActiveCredential(r.device_id, r.vendor, r.username, r.password_hash) for r in rows]

    def generation(self) -> int:
        """A number that changes whenever any process issues, rotates or revokes a credential."""
        with self.engine.connect() as conn:
            value = conn.execute(
                sa.select(credentials_meta_table.c.value).where(
                    credentials_meta_table.c.key == "generation"
                )
            ).scalar_one_or_none()
        return int(value) if value is not None else 0

    def verify(self, username: str, secret: str) -> bool:
        """Whether ``secret`` is the active secret of ``username`` (e.g. for an HTTP auth hook)."""
        c = credentials_table.c
        with self.engine.connect() as conn:
            hashed = conn.execute(
                sa.select(c.password_hash).where(c.username == username, c.revoked_at.is_(None))
            ).scalar_one_or_none()
        return hashed is not None and verify_secret(secret, hashed)

    @staticmethod
    def _bump_generation(conn: sa.Connection) -> None:
        meta = credentials_meta_table
        updated = conn.execute(
            sa.update(meta).where(meta.c.key == "generation").values(value=meta.c.value + 1)
        ).rowcount
        if not updated:
            conn.execute(sa.insert(meta).values(key="generation", value=1))


def _sqlite_pragmas(dbapi_conn: Any, _record: object) -> None:  # noqa: ANN401 - DB-API connection
    # The same database file as the registry, which runs it in WAL mode: readers never block the
    # writer. busy_timeout: the registry's and this store's connections may write at the same time.
    cur = dbapi_conn.cursor()
    cur.execute("PRAGMA journal_mode=WAL")
    cur.execute("PRAGMA synchronous=NORMAL")
    cur.execute("PRAGMA busy_timeout=10000")
    cur.close()
