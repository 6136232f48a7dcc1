"""People who use the hub, their passwords (argon2) and their bearer tokens (opaque, stored hashed).

Two kinds of token: a *session* from logging in (expires after `SESSION_HOURS`) and named *API tokens*
for scripts and integrations (expire when their owner says, or never; revocable). A token is 32 random
bytes; only its SHA-256 is stored, so a stolen database holds no usable token. Passwords are hashed with
argon2id (argon2-cffi), rehashed on login when its parameters change.
"""

from __future__ import annotations

import hashlib
import re
import secrets
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta

import sqlalchemy as sa
from argon2 import PasswordHasher
from argon2.exceptions import InvalidHashError, VerificationError
from sqlalchemy.engine import Engine

from devices.access import Principal, Role
from devices.errors import InvalidDefinitionError, NotFoundError

SESSION_HOURS = 12
TOKEN_PREFIX = "hub_"  # noqa: S105 - marks our tokens, not a secret
_NAME = re.compile(r"^[A-Za-z0-9][A-Za-z0-9._@-]{1,63}$")
_AREA = re.compile(r"^[A-Za-z0-9_.-]+(/[A-Za-z0-9_.-]+)*$")

_metadata = sa.MetaData()

users_table = sa.Table(
    "users",
    _metadata,
    sa.Column("name", sa.String(64), primary_key=True),
    sa.Column("role", sa.String(16), nullable=False),
    sa.Column("vendor", sa.String(64), nullable=True, index=True),
    sa.Column("area", sa.String(300), nullable=True),  # an area-bound account: that area only
    sa.Column("password_hash", sa.String(200), nullable=False),
    sa.Column("disabled", sa.Boolean, nullable=False, default=False),
    sa.Column("created", sa.DateTime(timezone=True), nullable=False),
)

tokens_table = sa.Table(
    "tokens",
    _metadata,
    sa.Column("id", sa.Integer, primary_key=True, autoincrement=True),
    sa.Column("user", sa.String(64), nullable=False, index=True),
    sa.Column("digest", sa.String(64), nullable=False, unique=True),
    sa.Column("kind", sa.String(16), nullable=False),  # "session" or "api"
    sa.Column("name", sa.String(100), nullable=False, default=""),
    sa.Column("created", sa.DateTime(timezone=True), nullable=False),
    sa.Column("expires", sa.DateTime(timezone=True), nullable=True),
    sa.Column("revoked", sa.Boolean, nullable=False, default=False),
)


@dataclass(frozen=True, slots=True)
class User:
    """A person's account (never with its password)."""

    name: str
    role: Role
    vendor: str | None
    disabled: bool
    created: datetime
    area: str | None = None


@dataclass(frozen=True, slots=True)
class IssuedToken:
    """A token as issued: ``token`` is shown once and never again."""

    id: int
    token: str
    user: str
    kind: str
    name: str
    expires: datetime | None


@dataclass(frozen=True, slots=True)
class TokenInfo:
    """A token as listed: what it is, never the token itself."""

    id: int
    user: str
    kind: str
    name: str
    created: datetime
    expires: datetime | None
    revoked: bool


def _digest(token: str) -> str:
    return hashlib.sha256(token.encode()).hexdigest()


def _utc(t: datetime | None) -> datetime | None:
    # SQLite hands back naive datetimes even for timezone-aware columns: they were stored in UTC.
    if t is None or t.tzinfo is not None:
        return t
    return t.replace(tzinfo=UTC)


def new_password() -> str:
    """A password for a new account: 16 random URL-safe characters."""
    return secrets.token_urlsafe(12)


class UserStore:
    """Users and tokens in SQL (the registry's database by default); implements `Authenticator`."""

    def __init__(self, url: str, *, hasher: PasswordHasher | None = None) -> None:
        """Open (and create if needed) the user tables at a SQLAlchemy URL."""
        self.engine: Engine = sa.create_engine(url)
        _metadata.create_all(self.engine)
        self._hasher = hasher or PasswordHasher()

    # -- users ----------------------------------------------------------------------------------

    def create_user(
        self,
        name: str,
        role: Role,
        *,
        vendor: str | None = None,
        password: str | None = None,
        area: str | None = None,
    ) -> str:
        """Create an account; returns its password (generated when not given).

        ``area`` binds the account to an area path (a town's officer sees only that town's).

        Raises:
            InvalidDefinitionError: a bad name, a vendor role without a vendor (or the reverse), a
                malformed area, a password shorter than 10 characters, or the name is taken.
        """
        self._check_user(name, role, vendor)
        _check_area(area)
        password = password or new_password()
        if len(password) < 10:
            msg = "a password needs at least 10 characters"
            raise InvalidDefinitionError(msg)
        row = {
            "name": name,
            "role": role.value,
            "vendor": vendor,
            "area": area,
            "password_hash": self._hasher.hash(password),
            "disabled": False,
            "created": datetime.now(tz=UTC),
        }
        try:
            with self.engine.begin() as conn:
                conn.execute(sa.insert(users_table).values(**row))
        except sa.exc.IntegrityError:
            msg = f"user {name!r} exists already"
            raise InvalidDefinitionError(msg) from None
        return password

    @staticmethod
    def _check_user(name: str, role: Role, vendor: str | None) -> None:
        if not _NAME.match(name):
            msg = f"user name {name!r}: 2-64 letters, digits, '.', '_', '@' or '-'"
            raise InvalidDefinitionError(msg)
        if (role is Role.VENDOR) != (vendor is not None):
            msg = "a vendor account names its vendor, and only a vendor account does"
            raise InvalidDefinitionError(msg)

    def user(self, name: str) -> User:
        """The account ``name``.

        Raises:
            NotFoundError: no such user.
        """
        with self.engine.connect() as conn:
            row = conn.execute(sa.select(users_table).where(users_table.c.name == name)).first()
        if row is None:
            raise NotFoundError(kind="user", key=name)
        return _user(row)

    def users(self) -> list[User]:
        """Every account, by name."""
        with self.engine.connect() as conn:
            rows = conn.execute(sa.select(users_table).order_by(users_table.c.name)).all()
        return [_user(r) for r in rows]

    def update_user(
        self,
        name: str,
        *,
        role: Role | None = None,
        vendor: str | None = None,
        disabled: bool | None = None,
        password: str | None = None,
        area: str | None = None,
        clear_area: bool = False,
    ) -> User:
        """Change an account; disabling it or changing its role or area revokes its tokens.

        ``area`` binds the account to an area; ``clear_area`` unbinds it (the whole city).

        Raises:
            NotFoundError: no such user.
            InvalidDefinitionError: the change leaves the account inconsistent.
        """
        current = self.user(name)
        new_role = role or current.role
        new_vendor = vendor if role is not None or vendor is not None else current.vendor
        if new_role is not Role.VENDOR:
            new_vendor = None
        self._check_user(name, new_role, new_vendor)
        _check_area(area)
        new_area = None if clear_area else (area if area is not None else current.area)
        values: dict[str, object] = {
            "role": new_role.value,
            "vendor": new_vendor,
            "area": new_area,
        }
        if disabled is not None:
            values["disabled"] = disabled
        if password is not None:
            if len(password) < 10:
                msg = "a password needs at least 10 characters"
                raise InvalidDefinitionError(msg)
            values["password_hash"] = self._hasher.hash(password)
        with self.engine.begin() as conn:
            conn.execute(sa.update(users_table).where(users_table.c.name == name).values(**values))
            if (
                disabled
                or new_role is not current.role
                or new_vendor != current.vendor
                or new_area != current.area
            ):
                conn.execute(
                    sa.update(tokens_table).where(tokens_table.c.user == name).values(revoked=True)
                )
        return self.user(name)

    # -- logging in and tokens ------------------------------------------------------------------

    def login(self, name: str, password: str) -> IssuedToken | None:
        """A session token for ``name`` if ``password`` is right and the account enabled, else None."""
        with self.engine.connect() as conn:
            row = conn.execute(sa.select(users_table).where(users_table.c.name == name)).first()
        if row is None:
            # Hash anyway, so a wrong name takes as long as a wrong password.
            self._hasher.hash(password)
            return None
        try:
            self._hasher.verify(row.password_hash, password)
        except (VerificationError, InvalidHashError):
            return None
        if row.disabled:
            return None
        if self._hasher.check_needs_rehash(row.password_hash):
            with self.engine.begin() as conn:
                conn.execute(
                    sa.update(users_table)
                    .where(users_table.c.name == name)
                    .values(password_hash=self._hasher.hash(password))
                )
        return self._issue(name, "session", "login", timedelta(hours=SESSION_HOURS))

    def create_token(self, user: str, name: str, ttl: timedelta | None = None) -> IssuedToken:
        """A named API token of ``user`` (for scripts); ``ttl`` None never expires.

        Raises:
            NotFoundError: no such user.
        """
        self.user(user)
        return self._issue(user, "api", name, ttl)

    def _issue(self, user: str, kind: str, name: str, ttl: timedelta | None) -> IssuedToken:
        token = TOKEN_PREFIX + secrets.token_urlsafe(32)
        now = datetime.now(tz=UTC)
        expires = now + ttl if ttl is not None else None
        with self.engine.begin() as conn:
            token_id = conn.execute(
                sa.insert(tokens_table)
                .values(
                    user=user,
                    digest=_digest(token),
                    kind=kind,
                    name=name,
                    created=now,
                    expires=expires,
                    revoked=False,
                )
                .returning(tokens_table.c.id)
            ).scalar_one()
        return IssuedToken(int(token_id), token, user, kind, name, expires)

    def tokens(self, user: str | None = None) -> list[TokenInfo]:
        """Tokens of ``user`` (every user's when None), newest first."""
        t = tokens_table
        query = sa.select(t).order_by(t.c.id.desc())
        if user is not None:
            query = query.where(t.c.user == user)
        with self.engine.connect() as conn:
            rows = conn.execute(query).all()
        return [
            TokenInfo(
                r.id,
                r.user,
                r.kind,
                r.name,
                _utc(r.created) or r.created,
                _utc(r.expires),
                r.revoked,
            )
            for r in rows
        ]

    def revoke_token(self, token_id: int, *, user: str | None = None) -> None:
        """Revoke a token (only if it belongs to ``user``, when given).

        Raises:
            NotFoundError: no such token (of that user).
        """
        cond = tokens_table.c.id == token_id
        if user is not None:
            cond = sa.and_(cond, tokens_table.c.user == user)
        with self.engine.begin() as conn:
            done = conn.execute(sa.update(tokens_table).where(cond).values(revoked=True)).rowcount
        if not done:
            raise NotFoundError(kind="token", key=str(token_id))

    def authenticate(self, token: str) -> Principal | None:
        """The principal of a bearer token: None if unknown, expired, revoked or its user disabled."""
        if not token.startswith(TOKEN_PREFIX):
            return None
        t, u = tokens_table, users_table
        with self.engine.connect() as conn:
            row = conn.execute(
                sa.select(
                    t.c.id,
                    t.c.expires,
                    t.c.revoked,
                    u.c.name,
                    u.c.role,
                    u.c.vendor,
                    u.c.area,
                    u.c.disabled,
                )
                .join(u, u.c.name == t.c.user)
                .where(t.c.digest == _digest(token))
            ).first()
        if row is None or row.revoked or row.disabled:
            return None
        expires = _utc(row.expires)
        if expires is not None and expires <= datetime.now(tz=UTC):
            return None
        return Principal(
            user=row.name, role=Role(row.role), vendor=row.vendor, token_id=row.id, area=row.area
        )


def _user(row: sa.Row[tuple[object, ...]]) -> User:
    return User(
        name=str(row.name),
        role=Role(row.role),
        vendor=row.vendor,
        disabled=bool(row.disabled),
        created=_utc(row.created) or row.created,
        area=row.area,
    )


def _check_area(area: str | None) -> None:
    if area is not None and not _AREA.match(area):
        msg = f"area {area!r}: a path of segments like city/district/street, no leading '/'"
        raise InvalidDefinitionError(msg)
