"""The security review against a served hub: secrets, token expiry, password hashing, CORS, login limits."""

from __future__ import annotations

import hashlib
import logging
import sqlite3
import stat
import time
from typing import Any

import httpx
import pytest

from devices.login_limit import LoginLimiter, TooManyAttemptsError
from tests.hub.conftest import ServedHub
from tests.security.conftest import MQTT_PASSWORD

pytestmark = pytest.mark.broker

WRONG_GUESS = "Wrong-guess-5a1c9e"


def _get_everything(client: httpx.Client, spec: dict[str, Any]) -> list[tuple[str, str]]:
    """GET every route of the OpenAPI document that needs no path parameter: (path, body) pairs."""
    seen = []
    for path, ops in spec["paths"].items():
        if "get" not in ops or "{" in path:
            continue
        r = client.get(path)
        seen.append((path, r.text))
    return seen


def test_secrets_are_never_logged_or_returned_after_their_one_showing(
    secure_hub: ServedHub, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.DEBUG)
    hub = secure_hub
    admin_password = (hub.settings.data_dir / "initial-admin-password").read_text().strip()
    # The generated first password waits in a file only its owner may read.
    mode = stat.S_IMODE((hub.settings.data_dir / "initial-admin-password").stat().st_mode)
    assert mode == 0o600
    user_password = "Ops-Passw0rd-7c3e1d"
    r = hub.http.post(
        "/api/v1/users", json={"name": "ops1", "role": "officer", "password": user_password}
    )
    assert r.status_code == 201, r.text
    ops = hub.client("ops1", user_password)
    session = ops.headers["Authorization"].removeprefix("Bearer ")
    r = hub.anonymous.post("/api/v1/auth/login", json={"username": "ops1", "password": WRONG_GUESS})
    assert r.status_code == 401
    assert WRONG_GUESS not in r.text
    r = hub.http.post("/api/v1/auth/tokens", json={"name": "script"})
    assert r.status_code in (200, 201), r.text
    api_token = r.json()["access_token"]
    r = hub.http.post(
        "/api/v1/devices", json={"id": "bin-sec-1", "vendor": "acme", "profile": "acme-bin"}
    )
    assert r.status_code == 201, r.text
    device_secret = r.json()["credential"]["secret"]
    secrets = {
        "admin password": admin_password,
        "user password": user_password,
        "wrong guess": WRONG_GUESS,
        "session token": session,
        "api token": api_token,
        "device secret": device_secret,
        "mqtt password": MQTT_PASSWORD,
    }
    # Every GET route, as the administrator (who sees most) and as the operator.
    spec = hub.http.get("/openapi.json").json()
    bodies = _get_everything(hub.http, spec) + _get_everything(ops, spec)
    bodies += [
        (p, hub.http.get(p).text)
        for p in (
            "/api/v1/users/ops1",
            "/api/v1/users/admin",
            "/api/v1/devices/bin-sec-1",
            "/api/v1/devices/bin-sec-1/credential",
        )
    ]
    assert len(bodies) > 30
    digest = hashlib.sha256(session.encode()).hexdigest()
    for path, body in bodies:
        for name, secret in secrets.items():
            assert secret not in body, f"{name} returned by GET {path}"
        assert "$argon2" not in body, f"a password hash returned by GET {path}"
        assert "$7$" not in body, f"a credential hash returned by GET {path}"
        assert digest not in body, f"a token digest returned by GET {path}"
    # Nothing the hub logged (any logger, any level) holds a secret.
    logged = "\n".join(
        f"{rec.getMessage()} {rec.exc_text or ''} {rec.args!r}" for rec in caplog.records
    )
    assert caplog.records  # the hub did log (the admin's password file, at least)
    for name, secret in secrets.items():
        assert secret not in logged, f"{name} logged"
    # And the database holds hashes only.
    with sqlite3.connect(hub.settings.data_dir / "hub.db") as db:
        hashes = dict(db.execute("SELECT name, password_hash FROM users"))
        assert hashes["ops1"].startswith("$argon2id$")
        assert hashes["admin"].startswith("$argon2id$")
        digests = [row[0] for row in db.execute("SELECT digest FROM tokens")]
        assert digest in digests
    raw = (hub.settings.data_dir / "hub.db").read_bytes()
    for name, secret in secrets.items():
        assert secret.encode() not in raw, f"{name} stored in the clear"


def test_tokens_expire(secure_hub: ServedHub) -> None:
    hub = secure_hub
    # A session from logging in expires after 12 hours.
    r = hub.anonymous.post(
        "/api/v1/auth/login",
        json={
            "username": "admin",
            "password": (hub.settings.data_dir / "initial-admin-password").read_text().strip(),
        },
    )
    expires = httpx.Response(200, text=r.text).json()["expires"]
    assert expires is not None
    from datetime import UTC, datetime, timedelta  # noqa: PLC0415

    left = datetime.fromisoformat(expires) - datetime.now(tz=UTC)
    assert timedelta(hours=11, minutes=59) < left <= timedelta(hours=12)
    # An API token made to last two seconds works, then does not.
    r = hub.http.post("/api/v1/auth/tokens", json={"name": "short", "days": 2 / 86_400})
    token = r.json()["access_token"]
    short = {"Authorization": f"Bearer {token}"}
    assert hub.anonymous.get("/api/v1/auth/me", headers=short).status_code == 200
    time.sleep(2.5)
    r = hub.anonymous.get("/api/v1/auth/me", headers=short)
    assert r.status_code == 401
    assert r.headers["content-type"] == "application/problem+json"
    assert "expired" in r.json()["detail"] or "unknown" in r.json()["detail"]


def test_cors_is_closed_by_default(secure_hub: ServedHub) -> None:
    hub = secure_hub
    evil = "https://evil.example"
    pre = hub.anonymous.options(
        "/api/v1/auth/me",
        headers={
            "Origin": evil,
            "Access-Control-Request-Method": "GET",
            "Access-Control-Request-Headers": "authorization",
        },
    )
    assert "access-control-allow-origin" not in pre.headers
    assert "access-control-allow-credentials" not in pre.headers
    r = hub.http.get("/api/v1/auth/me", headers={"Origin": evil})
    assert r.status_code == 200
    assert "access-control-allow-origin" not in r.headers
    r = hub.anonymous.post(
        "/api/v1/auth/login", json={"username": "x1", "password": "y"}, headers={"Origin": evil}
    )
    assert "access-control-allow-origin" not in r.headers


def test_login_is_limited_per_name_and_address_with_a_clear_429(secure_hub: ServedHub) -> None:
    hub = secure_hub
    password = (hub.settings.data_dir / "initial-admin-password").read_text().strip()
    hub.http.post(
        "/api/v1/users", json={"name": "ops2", "role": "officer", "password": "Ops2-Passw0rd-x"}
    )
    for _ in range(5):
        r = hub.anonymous.post("/api/v1/auth/login", json={"username": "admin", "password": "no"})
        assert r.status_code == 401
    r = hub.anonymous.post("/api/v1/auth/login", json={"username": "admin", "password": "no"})
    assert r.status_code == 429
    assert r.headers["content-type"] == "application/problem+json"
    problem = r.json()
    assert problem["status"] == 429
    assert problem["title"] == "Too many failed logins"
    assert 0 < problem["retry_after_s"] <= 900
    assert r.headers["Retry-After"] == str(problem["retry_after_s"])
    # Locked even with the right password: a guesser must not learn it got there.
    r = hub.anonymous.post("/api/v1/auth/login", json={"username": "admin", "password": password})
    assert r.status_code == 429
    # Another name from the same address is not affected...
    r = hub.anonymous.post(
        "/api/v1/auth/login", json={"username": "ops2", "password": "Ops2-Passw0rd-x"}
    )
    assert r.status_code == 200
    # ... nor the same name from another address (127.0.0.2 is loopback too).
    other = httpx.Client(
        base_url=hub.url, transport=httpx.HTTPTransport(local_address="127.0.0.2"), timeout=10
    )
    with other:
        r = other.post("/api/v1/auth/login", json={"username": "admin", "password": password})
        assert r.status_code == 200
    # The form login (what /docs sends) is limited alike.
    r = hub.anonymous.post("/api/v1/auth/login", data={"username": "admin", "password": password})
    assert r.status_code == 429


def test_the_login_limiter_window_and_reset() -> None:
    now = [1000.0]
    limiter = LoginLimiter(max_failures=3, window_s=60, clock=lambda: now[0])
    for _ in range(3):
        limiter.check("a", "1.2.3.4")
        limiter.failed("a", "1.2.3.4")
    with pytest.raises(TooManyAttemptsError) as refused:
        limiter.check("a", "1.2.3.4")
    assert refused.value.retry_after_s == 60
    now[0] += 30
    with pytest.raises(TooManyAttemptsError) as refused:
        limiter.check("a", "1.2.3.4")
    assert refused.value.retry_after_s == 30
    now[0] += 30.5  # the window since the first failure is over
    limiter.check("a", "1.2.3.4")
    limiter.failed("a", "1.2.3.4")
    limiter.failed("a", "1.2.3.4")
    limiter.succeeded("a", "1.2.3.4")  # a success forgets the failures
    limiter.failed("a", "1.2.3.4")
    limiter.failed("a", "1.2.3.4")
    limiter.check("a", "1.2.3.4")
    # Bounded memory: the oldest pairs go first.
    small = LoginLimiter(max_failures=1, max_entries=2, clock=lambda: now[0])
    for name in ("x", "y", "z"):
        small.failed(name, "h")
    small.check("x", "h")  # forgotten
    with pytest.raises(TooManyAttemptsError):
        small.check("z", "h")
