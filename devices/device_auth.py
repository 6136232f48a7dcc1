"""Devices as HTTP callers: HTTP Basic with the very credential a device uses on MQTT.

A device that cannot speak MQTT posts its payloads over HTTP (``ingest.uplink_api``) and proves who
it is with the username and secret the hub issued for the broker (`devices.credentials`): HTTP Basic
(RFC 7617) with the broker username ``{vendor}/{device_id}`` (':' in an id written '~', as for the
broker) or the bare device id, and the secret as the password.

Why Basic and not a bearer of the secret: the hub keeps only a salted hash of each secret, so a bare
secret cannot be looked up; the username names the device, the secret proves it, exactly as at the
broker. And a device id may hold ':', which RFC 7617 forbids in a Basic user-id: the broker's '~'
form carries any id.

A device is not a person: it has no role, reaches only the uplink routes, and each route checks that
the device posts for itself (`DeviceIdentity.check_path`).
"""

from __future__ import annotations

import base64
from dataclasses import dataclass
from typing import Annotated

from fastapi import Depends, Request

from devices.access import AuthError, ForbiddenError
from devices.credentials import COLON_IN_USERNAME, CredentialStore
from devices.errors import NotFoundError

REALM = "hub devices"


class DeviceAuthError(AuthError):
    """No valid device credential (HTTP 401 with a Basic challenge, not the people's Bearer one)."""


@dataclass(frozen=True, slots=True)
class DeviceIdentity:
    """The device a request's credential belongs to."""

    vendor: str
    device_id: str

    def check_path(self, vendor: str, device_id: str) -> None:
        """Raise ForbiddenError unless the route's ``vendor``/``device_id`` are this device's own.

        The HTTP counterpart of the broker's ACL (``pattern write sensors/%u/up``): a device posts
        only on its own uplink, never for another device or vendor.
        """
        if (vendor, device_id) != (self.vendor, self.device_id):
            msg = (
                f"device {self.vendor}/{self.device_id} may post only to its own uplink "
                f"(/api/v1/uplink/{self.vendor}/{self.device_id}), not {vendor}/{device_id}"
            )
            raise ForbiddenError(msg)


def basic_credentials(header: str) -> tuple[str, str]:
    """``(user-id, password)`` of an ``Authorization: Basic ...`` header.

    Raises:
        DeviceAuthError: not a Basic header, not base64, or no ':' between user-id and password.
    """
    scheme, _, encoded = header.partition(" ")
    if scheme.lower() != "basic" or not encoded.strip():
        msg = (
            "a device authenticates with HTTP Basic: its broker username ({vendor}/{device_id}) "
            "or device id, and the secret the hub issued for it"
        )
        raise DeviceAuthError(msg)
    try:
        decoded = base64.b64decode(encoded.strip(), validate=True).decode("utf-8")
    except ValueError as exc:  # binascii.Error, UnicodeDecodeError, non-ASCII text
        msg = "the Basic credentials are not base64 of UTF-8 'user:secret'"
        raise DeviceAuthError(msg) from exc
    user, colon, secret = decoded.partition(":")
    if not colon or not user or not secret:
        msg = "the Basic credentials must be 'user:secret'"
        raise DeviceAuthError(msg)
    return user, secret


def authenticate(credentials: CredentialStore, user: str, secret: str) -> DeviceIdentity:
    """The device whose active credential ``user`` and ``secret`` are.

    Raises:
        DeviceAuthError: no such device credential, revoked, or the wrong secret (one answer for
            all three: a caller must not learn which device ids hold credentials).
    """
    vendor: str | None = None
    device_id = user
    if "/" in user:
        vendor, _, rest = user.partition("/")
        device_id = rest.replace(COLON_IN_USERNAME, ":")
    wrong = DeviceAuthError("unknown device, revoked credential or wrong secret")
    try:
        status = credentials.get(device_id)
    except NotFoundError:
        raise wrong from None
    if vendor is not None and status.vendor != vendor:
        raise wrong
    if not status.active or not credentials.verify(status.username, secret):
        raise wrong
    return DeviceIdentity(status.vendor, status.device_id)


def current_device(request: Request) -> DeviceIdentity:
    """The device calling, from its Basic credentials (a FastAPI dependency)."""
    store: CredentialStore = request.app.state.credentials
    user, secret = basic_credentials(request.headers.get("authorization", ""))
    return authenticate(store, user, secret)


DeviceCaller = Annotated[DeviceIdentity, Depends(current_device)]
"""A route only devices call, each with its own credential (see the module docstring)."""
