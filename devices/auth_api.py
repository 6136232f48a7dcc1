"""HTTP routes for logging in, tokens and (for administrators) user accounts."""

from __future__ import annotations

import asyncio
from datetime import datetime, timedelta
from typing import Annotated

from fastapi import APIRouter, Body, Depends, Request
from fastapi.exceptions import RequestValidationError
from pydantic import BaseModel, Field

from devices.access import AdminOnly, AuthError, Principal, ReadAny, Role
from devices.api import RegistryDep
from devices.errors import InvalidDefinitionError, NotFoundError
from devices.login_limit import Limiter, LoginLimiter
from devices.registry import Registry
from devices.users import IssuedToken, TokenInfo, User, UserStore


class TokenOut(BaseModel):
    """A bearer token: send it as ``Authorization: Bearer <access_token>``. Shown only once."""

    access_token: str
    token_type: str = "bearer"  # noqa: S105 - the OAuth2 token type, not a secret
    id: int
    expires: datetime | None

    @classmethod
    def of(cls, t: IssuedToken) -> TokenOut:
        """The API view of an issued token."""
        return cls(access_token=t.token, id=t.id, expires=t.expires)


class Me(BaseModel):
    """Who the token belongs to and what it may do."""

    user: str
    role: Role
    vendor: str | None
    area: str | None = None


class TokenRequest(BaseModel):
    """A named API token for a script or an integration."""

    name: str = Field(min_length=1, max_length=100)
    days: float | None = Field(
        None,
        gt=0,
        le=36_500,  # a century; more overflowed timedelta (a 500)
        description="Expires after this many days; never if absent",
    )


class TokenView(BaseModel):
    """A token as listed (never the token itself)."""

    id: int
    user: str
    kind: str
    name: str
    created: datetime
    expires: datetime | None
    revoked: bool

    @classmethod
    def of(cls, t: TokenInfo) -> TokenView:
        """The API view of a stored token."""
        return cls(
            id=t.id,
            user=t.user,
            kind=t.kind,
            name=t.name,
            created=t.created,
            expires=t.expires,
            revoked=t.revoked,
        )


class UserView(BaseModel):
    """An account, without its password."""

    name: str
    role: Role
    vendor: str | None
    disabled: bool
    created: datetime
    area: str | None = Field(None, description="The area the account is bound to (None: all)")

    @classmethod
    def of(cls, u: User) -> UserView:
        """The API view of an account."""
        return cls(
            name=u.name,
            role=u.role,
            vendor=u.vendor,
            disabled=u.disabled,
            created=u.created,
            area=u.area,
        )


class NewUser(BaseModel):
    """An account to create; without a password one is generated and returned once."""

    name: str = Field(min_length=2, max_length=64)
    role: Role
    vendor: str | None = Field(None, description="Required for (and only for) role vendor")
    password: str | None = Field(None, min_length=10, max_length=200)
    area: str | None = Field(
        None, max_length=300, description="Bind to an area path: e.g. a town's officer"
    )


class CreatedUser(UserView):
    """A created account with its password, shown only this once."""

    password: str


class UserChange(BaseModel):
    """Changes to an account; changing its role or disabling it revokes its tokens."""

    role: Role | None = None
    vendor: str | None = None
    disabled: bool | None = None
    password: str | None = Field(None, min_length=10, max_length=200)
    area: str | None = Field(None, max_length=300, description="Bind to this area path")
    clear_area: bool = Field(False, description="Unbind the account from its area")


def get_users(request: Request) -> UserStore:
    """The user store the app was started with."""
    users: UserStore = request.app.state.users
    return users


UsersDep = Annotated[UserStore, Depends(get_users)]

router = APIRouter(prefix="/api/v1", tags=["auth"])


@router.post(
    "/auth/login",
    response_model=TokenOut,
    summary="Log in with name and password; returns a session token",
    responses={
        401: {"description": "Wrong name or password, or the account is disabled"},
        429: {"description": "Too many failed logins for this name from this address"},
    },
    openapi_extra={
        "requestBody": {
            "content": {
                "application/json": {
                    "schema": {
                        "type": "object",
                        "required": ["username", "password"],
                        "properties": {
                            "username": {"type": "string"},
                            "password": {"type": "string"},
                        },
                    }
                },
                "application/x-www-form-urlencoded": {
                    "schema": {
                        "type": "object",
                        "required": ["username", "password"],
                        "properties": {
                            "username": {"type": "string"},
                            "password": {"type": "string"},
                        },
                    }
                },
            },
            "required": True,
        }
    },
)
async def login(request: Request, users: UsersDep) -> TokenOut:
    """JSON ``{"username", "password"}`` or an OAuth2 password form (what `/docs` "Authorize" sends)."""
    if request.headers.get("content-type", "").startswith("application/json"):
        try:
            body = await request.json()
        except ValueError as exc:  # not JSON (or not UTF-8): a 422 problem, not a 500
            error = {"loc": ("body",), "msg": f"not valid JSON: {exc}", "type": "json_invalid"}
            raise RequestValidationError([error]) from exc
        if not isinstance(body, dict):
            body = {}
    else:
        body = dict(await request.form())
    username, password = body.get("username"), body.get("password")
    if not isinstance(username, str) or not isinstance(password, str):
        msg = "send username and password"
        raise AuthError(msg)
    # Per name and address: a guesser gets 429s, not tries (devices/login_limit.py).
    limiter = _login_limiter(request)
    address = request.client.host if request.client is not None else ""
    await asyncio.to_thread(limiter.check, username, address)  # the shared one is a query
    # In a thread: checking a password hash is made to be slow (tens of ms), and on the event loop
    # it would stall ingestion and every screen's feed for that long.
    issued = await asyncio.to_thread(users.login, username, password)
    if issued is None:
        await asyncio.to_thread(limiter.failed, username, address)
        msg = "wrong user name or password, or the account is disabled"
        raise AuthError(msg)
    await asyncio.to_thread(limiter.succeeded, username, address)
    return TokenOut.of(issued)


def _login_limiter(request: Request) -> Limiter:
    """The app's login limiter: the hub's shared one, or (an app without it) one in memory."""
    limiter: Limiter | None = getattr(request.app.state, "login_limiter", None)
    if limiter is None:
        limiter = request.app.state.login_limiter = LoginLimiter()
    return limiter


@router.get("/auth/me", response_model=Me, summary="Who am I")
def me(principal: ReadAny) -> Me:
    """The caller's name, role and vendor."""
    return Me(
        user=principal.user, role=principal.role, vendor=principal.vendor, area=principal.area
    )


@router.post("/auth/logout", status_code=204, summary="Revoke the token of this request")
def logout(principal: ReadAny, users: UsersDep) -> None:
    """The token sent with this request stops working."""
    if principal.token_id is not None:
        users.revoke_token(principal.token_id)


@router.get("/auth/tokens", response_model=list[TokenView], summary="My tokens")
def my_tokens(principal: ReadAny, users: UsersDep) -> list[TokenView]:
    """The caller's tokens, newest first (administrators: everyone's)."""
    owner = None if principal.role is Role.ADMIN else principal.user
    return [TokenView.of(t) for t in users.tokens(owner)]


@router.post(
    "/auth/tokens", response_model=TokenOut, status_code=201, summary="Create an API token"
)
def create_token(
    principal: ReadAny, users: UsersDep, body: Annotated[TokenRequest, Body()]
) -> TokenOut:
    """A long-lived token of the caller, for scripts; revoke it with DELETE when done."""
    ttl = timedelta(days=body.days) if body.days is not None else None
    return TokenOut.of(users.create_token(principal.user, body.name, ttl))


@router.delete("/auth/tokens/{token_id}", status_code=204, summary="Revoke a token")
def revoke_token(token_id: int, principal: ReadAny, users: UsersDep) -> None:
    """Revoke one of the caller's tokens (administrators: anyone's)."""
    users.revoke_token(token_id, user=None if principal.role is Role.ADMIN else principal.user)


@router.get("/users", response_model=list[UserView], summary="Every account")
def list_users(_: AdminOnly, users: UsersDep) -> list[UserView]:
    """Accounts by name (administrators only)."""
    return [UserView.of(u) for u in users.users()]


@router.post("/users", response_model=CreatedUser, status_code=201, summary="Create an account")
def create_user(
    _: AdminOnly,
    users: UsersDep,
    registry: RegistryDep,
    body: Annotated[NewUser, Body()],
) -> CreatedUser:
    """Create an account; a vendor account must name a registered vendor."""
    _check_vendor_exists(registry, body.vendor)
    password = users.create_user(
        body.name, body.role, vendor=body.vendor, password=body.password, area=body.area
    )
    return CreatedUser(**UserView.of(users.user(body.name)).model_dump(), password=password)


@router.get("/users/{name}", response_model=UserView, summary="One account")
def get_user(name: str, principal: ReadAny, users: UsersDep) -> UserView:
    """An account: your own, or any for administrators."""
    _own_or_admin(principal, name)
    return UserView.of(users.user(name))


@router.patch("/users/{name}", response_model=UserView, summary="Change an account")
def update_user(
    name: str,
    _: AdminOnly,
    users: UsersDep,
    registry: RegistryDep,
    body: Annotated[UserChange, Body()],
) -> UserView:
    """Change role, vendor, password or disable; role changes and disabling revoke its tokens."""
    _check_vendor_exists(registry, body.vendor)
    return UserView.of(
        users.update_user(
            name,
            role=body.role,
            vendor=body.vendor,
            disabled=body.disabled,
            password=body.password,
            area=body.area,
            clear_area=body.clear_area,
        )
    )


def _own_or_admin(principal: Principal, name: str) -> None:
    if principal.role is not Role.ADMIN and principal.user != name:
        raise NotFoundError(kind="user", key=name)


def _check_vendor_exists(registry: Registry, vendor: str | None) -> None:
    if vendor is not None and vendor not in {v.id for v in registry.vendors()}:
        msg = f"vendor {vendor!r} is not registered"
        raise InvalidDefinitionError(msg)
