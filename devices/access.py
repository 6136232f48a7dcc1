"""Who is calling and what they may do: roles, the principal of a request, and the policy checks.

Every route declares the roles it admits with `require`; routes that touch a vendor's objects also call
`Principal.check_vendor`, so a vendor's token reaches only its own devices, profiles and dead letters.
Objects of another vendor answer 404 (not 403): a vendor must not learn which device ids exist elsewhere.

Authentication is a small protocol (`Authenticator`): the hub's own opaque tokens today
(`devices.users.UserStore`); an OIDC deployment plugs in a verifier of the identity provider's JWTs that
maps its claims to a `Principal`, and nothing else changes.
"""

from __future__ import annotations

import enum
from collections.abc import Callable
from dataclasses import dataclass
from typing import Annotated, Protocol

from fastapi import Depends, Request

from devices.errors import DeviceError, NotFoundError


class Role(enum.StrEnum):
    """What a person does in the operations centre."""

    ADMIN = "admin"  # everything, including users
    COMMANDER = "commander"  # dispatches responses; reads everything
    OFFICER = "officer"  # duty officer: watches and acknowledges; reads everything
    VENDOR = "vendor"  # a device vendor: its own devices, profiles and rejects only
    VIEWER = "viewer"  # reads the situation, changes nothing
    UNIT = "unit"  # a response unit's crew: reports arrival, progress, completion of its dispatches


STAFF = (Role.ADMIN, Role.COMMANDER, Role.OFFICER, Role.VIEWER)
"""The operations centre's people. Units are not staff: hub-wide counters, cameras and rules are
not a field crew's business, and what they may do is granted route by route."""
EVERYONE = (*STAFF, Role.VENDOR, Role.UNIT)


class AuthError(DeviceError):
    """No valid credentials: the caller must log in (HTTP 401)."""


class ForbiddenError(DeviceError):
    """Valid credentials, but the role may not do this (HTTP 403)."""


@dataclass(frozen=True, slots=True)
class Principal:
    """The authenticated caller of a request."""

    user: str
    role: Role
    vendor: str | None = None  # set exactly when role is VENDOR
    token_id: int | None = None  # the token the request came with
    area: str | None = None  # an area-bound account (a town's officer) sees only that area's

    def sees_area(self, area: str | None) -> bool:
        """Whether an object in ``area`` is within this caller's area (everything, without one).

        Area paths nest by prefix along ``/`` (``demo/riverside`` holds ``demo/riverside/x``, not
        ``demo/riversidex``). An object without an area is the whole city's: not an area's.
        """
        if self.area is None:
            return True
        return area is not None and (area == self.area or area.startswith(self.area + "/"))

    def sees_vendor(self, vendor: str | None) -> bool:
        """Whether objects of ``vendor`` are visible to this caller (shared ones have no vendor)."""
        return self.role is not Role.VENDOR or (vendor is not None and vendor == self.vendor)

    def check_vendor(self, vendor: str | None, *, kind: str, key: str) -> None:
        """Raise NotFoundError when the object ``kind``/``key`` of ``vendor`` is not this caller's."""
        if not self.sees_vendor(vendor):
            raise NotFoundError(kind=kind, key=key)

    def vendor_scope(self, requested: str | None) -> str | None:
        """The vendor filter a listing must use: a vendor's own, whatever it asked for."""
        if self.role is Role.VENDOR:
            if requested is not None and requested != self.vendor:
                raise NotFoundError(kind="vendor", key=requested)
            return self.vendor
        return requested


class Authenticator(Protocol):
    """Turns the bearer credential of a request into a principal."""

    def authenticate(self, token: str) -> Principal | None:
        """The principal of ``token``, or None when it is unknown, expired or revoked."""
        ...


def _bearer(request: Request) -> str:
    header = request.headers.get("authorization", "")
    scheme, _, token = header.partition(" ")
    if scheme.lower() != "bearer" or not token.strip():
        msg = "log in: send 'Authorization: Bearer <token>' (POST /api/v1/auth/login gives one)"
        raise AuthError(msg)
    return token.strip()


def current_principal(request: Request) -> Principal:
    """The authenticated caller; raises AuthError without a valid bearer token."""
    authenticator: Authenticator = request.app.state.authenticator
    principal = authenticator.authenticate(_bearer(request))
    if principal is None:
        msg = "the token is unknown, expired or revoked: log in again"
        raise AuthError(msg)
    request.state.principal = principal
    return principal


def require(*roles: Role) -> Callable[[Principal], Principal]:
    """A dependency admitting only ``roles``; it yields the principal."""
    allowed = frozenset(roles)

    def dependency(
        principal: Annotated[Principal, Depends(current_principal)],
    ) -> Principal:
        if principal.role not in allowed:
            names = ", ".join(sorted(r.value for r in allowed))
            msg = f"role {principal.role.value!r} may not do this (needs one of: {names})"
            raise ForbiddenError(msg)
        return principal

    return dependency


ReadAny = Annotated[Principal, Depends(require(*EVERYONE))]
"""Anyone logged in; vendor-owned results must still be scoped with `Principal.check_vendor`."""

StaffOnly = Annotated[Principal, Depends(require(*STAFF))]
"""The city's own people: not vendors (e.g. hub-wide counters)."""

AdminOnly = Annotated[Principal, Depends(require(Role.ADMIN))]
DeviceWriter = Annotated[Principal, Depends(require(Role.ADMIN, Role.VENDOR))]
"""Who registers and changes devices and profiles: administrators, and vendors for their own."""
