"""Devices authenticating over HTTP with their MQTT credential: Basic parsing and the credential check."""

from __future__ import annotations

import base64
from pathlib import Path

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from devices.access import ForbiddenError
from devices.credentials import CredentialStore
from devices.device_auth import DeviceAuthError, DeviceIdentity, authenticate, basic_credentials


def _basic(user: str, secret: str) -> str:
    return "Basic " + base64.b64encode(f"{user}:{secret}".encode()).decode()


@settings(max_examples=300, deadline=None)
@given(st.one_of(st.text(max_size=80), st.text(max_size=60).map(lambda t: "Basic " + t)))
def test_any_header_is_credentials_or_a_device_auth_error(header: str) -> None:
    try:
        user, secret = basic_credentials(header)
    except DeviceAuthError:
        return
    assert user
    assert secret


def test_basic_splits_at_the_first_colon() -> None:
    assert basic_credentials(_basic("hydrox/wl-1", "s:e:c")) == ("hydrox/wl-1", "s:e:c")
    bad_utf8 = "Basic " + base64.b64encode(b"\xff:\xfe").decode()
    cases = (
        "Bearer x",
        "Basic",
        "Basic !!!",
        "Basic é",
        bad_utf8,
        _basic("", "x"),
        _basic("u", ""),
    )
    for bad in cases:
        with pytest.raises(DeviceAuthError):
            basic_credentials(bad)


@pytest.fixture
def store(tmp_path: Path) -> CredentialStore:
    return CredentialStore(f"sqlite:///{tmp_path / 'creds.db'}")


def test_the_broker_username_or_the_bare_id_with_the_secret(store: CredentialStore) -> None:
    plain = store.issue("wl-00001", "hydrox")
    urn = store.issue("urn:dev:mac:0a1b", "acme")
    assert urn.username == "acme/urn~dev~mac~0a1b"
    me = DeviceIdentity("hydrox", "wl-00001")
    assert authenticate(store, plain.username, plain.secret) == me
    assert authenticate(store, "wl-00001", plain.secret) == me
    assert authenticate(store, urn.username, urn.secret) == DeviceIdentity(
        "acme", "urn:dev:mac:0a1b"
    )
    for user, secret in (
        ("wl-00001", urn.secret),  # another device's secret
        ("acme/wl-00001", plain.secret),  # the right secret under another vendor
        ("wl-99999", plain.secret),  # no such device
    ):
        with pytest.raises(DeviceAuthError, match="unknown device, revoked credential or wrong"):
            authenticate(store, user, secret)
    store.revoke("wl-00001")
    with pytest.raises(DeviceAuthError):
        authenticate(store, plain.username, plain.secret)
    store.dispose()


def test_a_device_posts_only_to_its_own_uplink() -> None:
    me = DeviceIdentity("hydrox", "wl-00001")
    me.check_path("hydrox", "wl-00001")
    for vendor, device in (("hydrox", "wl-00002"), ("acme", "wl-00001")):
        with pytest.raises(ForbiddenError, match="may post only to its own uplink"):
            me.check_path(vendor, device)
