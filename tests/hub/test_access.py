"""Access control over every route of the OpenAPI document: nobody reaches what their role may not.

The walk is exhaustive on purpose: a route added without a line in `ROUTES` fails the test, so every
new route is looked at with a vendor's eyes.
"""

from __future__ import annotations

import json
from collections.abc import Callable
from typing import Any

import httpx
import pytest

from alerts.events import ConditionEvent, Level
from devices.access import Role
from devices.users import UserStore
from tests.hub.conftest import ServedHub
from tests.publisher import Publisher

PASSWORD = "a long enough password"

# Vendor B (hydrox) objects that vendor A (acme) must not reach; filled into path parameters.
B = {
    "device_id": "wl-00001",
    "profile_id": "hydrox-wl",
    "vendor_id": "hydrox",
    "name": "hydrox-ops",
    "alert_id": "1",
    "silence_id": "1",
    "rule_id": "water-level-high",
    # The emergency response's objects (issue 8): all the city's, none a vendor's.
    "incident_id": "1",
    "photo_id": "1",
    "unit_id": "drain-1",
    "warning_id": "1",
    "shift_id": "1",
    "path": "sh/huangpu",
    # Issue 11: HTTP uplinks (a device's own credential) and citizens' reports (the city's).
    "vendor": "hydrox",
    "report_id": "1",
    "n": "1",
}
A = {
    "device_id": "bin-00001",
    "profile_id": "acme-bin",
    "vendor_id": "acme",
    "name": "acme-ops",
    "alert_id": "2",
}

PROFILE_BODY = {
    "id": "hydrox-wl",
    "name": "x",
    "type": "water_level",
    "domain": "water",
    "metrics": [{"name": "water_level", "unit": "m", "min": 0, "max": 10}],
    "report_interval_s": 60,
    "codec": {"codec": "senml"},
}

RULE_BODY = {
    "id": "acme-wants-quiet",
    "kind": "threshold",
    "device_type": "water_level",
    "metric": "water_level",
    "levels": {"red": 99},
}

# (method, path) -> body for the walk, or None for no body. Every route of the app is listed.
ROUTES: dict[tuple[str, str], Any] = {
    ("POST", "/api/v1/auth/login"): "self-service",
    ("GET", "/api/v1/auth/me"): "self-service",
    ("POST", "/api/v1/auth/logout"): "self-service",
    ("GET", "/api/v1/auth/tokens"): "self-service",
    ("POST", "/api/v1/auth/tokens"): "self-service",
    ("DELETE", "/api/v1/auth/tokens/{token_id}"): None,
    ("GET", "/api/v1/users"): None,
    ("POST", "/api/v1/users"): {"name": "sneaky", "role": "admin"},
    ("GET", "/api/v1/users/{name}"): None,
    ("PATCH", "/api/v1/users/{name}"): {"disabled": True},
    ("GET", "/api/v1/devices"): "list",
    ("POST", "/api/v1/devices"): {"id": "wl-77777", "profile": "hydrox-wl", "vendor": "hydrox"},
    ("GET", "/api/v1/devices/{device_id}"): None,
    ("PATCH", "/api/v1/devices/{device_id}"): {"name": "mine now"},
    ("POST", "/api/v1/devices/bulk"): "bulk",
    ("POST", "/api/v1/devices/{device_id}/decommission"): None,
    ("POST", "/api/v1/devices/{device_id}/replace"): {"new_id": "wl-88888"},
    ("POST", "/api/v1/devices/{device_id}/credential"): None,
    ("DELETE", "/api/v1/devices/{device_id}/credential"): None,
    ("GET", "/api/v1/vendors"): "list",
    ("POST", "/api/v1/vendors"): {"id": "hydrox", "name": "taken over"},
    ("GET", "/api/v1/profiles"): "list",
    ("POST", "/api/v1/profiles"): {**PROFILE_BODY, "id": "hydrox-x", "vendor": "hydrox"},
    ("GET", "/api/v1/profiles/{profile_id}"): None,
    ("PUT", "/api/v1/profiles/{profile_id}"): PROFILE_BODY,
    ("DELETE", "/api/v1/profiles/{profile_id}"): None,
    ("GET", "/api/v1/devices/{device_id}/readings"): None,
    ("GET", "/api/v1/rejects"): "list",
    ("POST", "/api/v1/profiles/{profile_id}/decode"): "raw",
    ("GET", "/api/v1/devices/{device_id}/health"): None,
    ("GET", "/api/v1/vendors/{vendor_id}/health"): None,
    ("GET", "/healthz"): "public",
    ("GET", "/api/v1/status"): "staff",
    ("GET", "/metrics"): "staff",
    ("GET", "/api/v1/alerts"): "list",
    ("GET", "/api/v1/alerts/{alert_id}"): None,
    ("POST", "/api/v1/alerts/{alert_id}/ack"): {},
    ("POST", "/api/v1/alerts/{alert_id}/assign"): {"assignee": "acme-ops"},
    ("POST", "/api/v1/alerts/{alert_id}/dispatch"): {"unit": "u1"},
    ("POST", "/api/v1/alerts/{alert_id}/resolve"): {},
    ("POST", "/api/v1/alerts/{alert_id}/close"): {"force": True},
    ("POST", "/api/v1/alerts/{alert_id}/reopen"): {},
    ("POST", "/api/v1/alerts/{alert_id}/comment"): {"note": "mine now"},
    ("GET", "/api/v1/silences"): "staff",
    ("POST", "/api/v1/silences"): {
        "matchers": [{"name": "device", "value": "wl-00001"}],
        "ends_at": "2100-01-01T00:00:00Z",
        "comment": "hide B's alerts",
    },
    ("DELETE", "/api/v1/silences/{silence_id}"): None,
    # Cameras are the city's: staff read, administrators write, duty staff check now; vendors: 403.
    ("GET", "/api/v1/cameras"): "staff",
    ("POST", "/api/v1/cameras"): {"id": "cam-x", "url": "rtsp://127.0.0.1:9/x"},
    ("POST", "/api/v1/cameras/bulk"): "staff",
    ("GET", "/api/v1/cameras/map"): "staff",
    ("GET", "/api/v1/cameras/summary"): "staff",
    ("GET", "/api/v1/cameras/near"): "staff",
    ("POST", "/api/v1/cameras/within"): "staff",
    ("GET", "/api/v1/cameras/{camera_id}"): "staff",
    ("PATCH", "/api/v1/cameras/{camera_id}"): {"name": "mine now"},
    ("DELETE", "/api/v1/cameras/{camera_id}"): "staff",
    ("POST", "/api/v1/cameras/{camera_id}/check"): "staff",
    ("GET", "/api/v1/cameras/{camera_id}/checks"): "staff",
    ("GET", "/api/v1/cameras/{camera_id}/probes"): "staff",
    ("GET", "/api/v1/cameras/{camera_id}/snapshot"): "staff",
    ("GET", "/api/v1/cameras/{camera_id}/snapshots/{name}"): "staff",
    ("GET", "/api/v1/alerts/{alert_id}/cameras"): "staff",
    ("GET", "/api/v1/rules"): "staff",
    ("GET", "/api/v1/rules/history"): "staff",
    ("GET", "/api/v1/rules/{rule_id}"): None,
    ("POST", "/api/v1/rules"): RULE_BODY,
    ("POST", "/api/v1/rules/validate"): RULE_BODY,
    ("POST", "/api/v1/rules/reload"): {},
    ("PUT", "/api/v1/rules/{rule_id}"): {**RULE_BODY, "id": "water-level-high"},
    ("DELETE", "/api/v1/rules/{rule_id}"): None,
    ("GET", "/api/v1/areas/geojson"): "staff",
    ("GET", "/api/v1/screen/config"): "staff",
    ("GET", "/api/v1/feed/status"): "staff",
    # Emergency response (issue 8): staff and units only; vendors 403. Warnings are public reading.
    ("GET", "/api/v1/areas/tree"): "staff",
    ("GET", "/api/v1/areas/tree.geojson"): "staff",
    ("GET", "/api/v1/areas/tree/{path}"): "staff",
    ("PUT", "/api/v1/areas/tree/{path}"): {"level": "county", "name": "mine now"},
    ("DELETE", "/api/v1/areas/tree/{path}"): None,
    ("GET", "/api/v1/areas/rollup"): "staff",
    ("GET", "/api/v1/incidents"): "staff",
    ("POST", "/api/v1/incidents"): {"alerts": [1]},
    ("GET", "/api/v1/incidents/types"): "staff",
    ("GET", "/api/v1/incidents/{incident_id}"): None,
    ("POST", "/api/v1/incidents/{incident_id}/register"): {},
    ("POST", "/api/v1/incidents/{incident_id}/dispatch"): {"units": ["drain-1"]},
    ("POST", "/api/v1/incidents/{incident_id}/recall"): {"unit": "drain-1"},
    ("POST", "/api/v1/incidents/{incident_id}/arrive"): {"unit": "drain-1"},
    ("POST", "/api/v1/incidents/{incident_id}/progress"): {},  # multipart form
    ("POST", "/api/v1/incidents/{incident_id}/complete"): {},  # multipart form
    ("POST", "/api/v1/incidents/{incident_id}/verify"): {},
    ("POST", "/api/v1/incidents/{incident_id}/reopen"): {},
    ("POST", "/api/v1/incidents/{incident_id}/close"): {},
    ("POST", "/api/v1/incidents/{incident_id}/dismiss"): {},
    ("POST", "/api/v1/incidents/{incident_id}/comment"): {"note": "mine now"},
    ("POST", "/api/v1/incidents/{incident_id}/link"): {"alerts": [1]},
    ("GET", "/api/v1/incidents/{incident_id}/suggestions"): None,
    ("GET", "/api/v1/incidents/{incident_id}/photos/{photo_id}"): None,
    ("GET", "/api/v1/incidents/{incident_id}/report.html"): None,
    ("GET", "/api/v1/incidents/{incident_id}/report.pdf"): None,
    ("GET", "/api/v1/units"): "staff",
    ("POST", "/api/v1/units"): {"id": "u-x", "name": "x", "kind": "fire", "area": "sh"},
    ("GET", "/api/v1/units/{unit_id}"): None,
    ("PUT", "/api/v1/units/{unit_id}"): {"name": "x", "kind": "fire", "area": "sh"},
    ("DELETE", "/api/v1/units/{unit_id}"): None,
    ("POST", "/api/v1/units/{unit_id}/position"): {"lat": 31.2, "lon": 121.4},
    ("POST", "/api/v1/units/{unit_id}/duty"): {"on_duty": False},
    ("GET", "/api/v1/warnings"): "list",  # public: every screen shows them, a vendor's too
    ("POST", "/api/v1/warnings"): {
        "area": "sh",
        "kind": "rainstorm",
        "level": "red",
        "reason": "x",
        "valid_until": "2100-01-01T00:00:00Z",
    },
    ("GET", "/api/v1/warnings/{warning_id}"): None,  # public too: 404 here only as none exists
    ("PATCH", "/api/v1/warnings/{warning_id}"): {"level": "blue"},
    ("POST", "/api/v1/warnings/{warning_id}/lift"): {},
    ("GET", "/api/v1/roster/shifts"): "staff",
    ("POST", "/api/v1/roster/shifts"): "staff",
    ("DELETE", "/api/v1/roster/shifts/{shift_id}"): None,
    ("GET", "/api/v1/roster/on-duty"): "staff",
    ("GET", "/api/v1/roster/notices"): "staff",
    ("GET", "/api/v1/statistics/incidents"): "staff",
    # Devices post with their own MQTT credential (HTTP Basic), never a person's token:
    # tests/hub/test_uplink.py checks who may post for whom.
    ("POST", "/api/v1/uplink/{vendor}/{device_id}"): "device",
    # Citizens' reports (issue 11): staff and units; vendors 403.
    ("GET", "/api/v1/reports"): "staff",
    ("POST", "/api/v1/reports"): {"source": "12345", "category": "flooding", "address": "x"},
    ("POST", "/api/v1/reports/import"): "staff",
    ("GET", "/api/v1/reports/{report_id}"): None,
    ("GET", "/api/v1/reports/{report_id}/photos/{n}"): None,
}

QUERY = {"/api/v1/devices/{device_id}/readings": {"metric": "water_level"}}


def _fill(path: str, objects: dict[str, str]) -> str:
    for key, value in objects.items():
        path = path.replace("{" + key + "}", value)
    return path


def _call(client: httpx.Client, method: str, path: str, body: Any) -> httpx.Response:
    params = QUERY.get(path)
    url = _fill(path, {**B, "token_id": str(B_TOKEN_ID[0])})
    if body == "raw":
        return client.request(method, url, content=b'[{"n":"water_level","v":1}]', params=params)
    if isinstance(body, dict):
        return client.request(method, url, json=body, params=params)
    return client.request(method, url, params=params)


B_TOKEN_ID = [0]


@pytest.fixture
def vendors(hub: ServedHub) -> tuple[httpx.Client, httpx.Client]:
    users = UserStore(hub.settings.registry)
    users.create_user("acme-ops", Role.VENDOR, vendor="acme", password=PASSWORD)
    users.create_user("hydrox-ops", Role.VENDOR, vendor="hydrox", password=PASSWORD)
    acme, hydrox = hub.client("acme-ops", PASSWORD), hub.client("hydrox-ops", PASSWORD)
    B_TOKEN_ID[0] = hydrox.post("/api/v1/auth/tokens", json={"name": "b"}).json()["id"]
    # An alert about each vendor's device: 1 is B's, 2 is A's.
    alerts = hub.server.config.app.state.alert_store  # type: ignore[attr-defined]
    for device in (B["device_id"], A["device_id"]):
        alerts.apply(
            ConditionEvent(
                rule="r",
                source=f"device:{device}",
                kind="threshold",
                level=Level.RED,
                firing=True,
                at_ms=1,
                summary="s",
                device=device,
            )
        )
    # Dead letters of both vendors, so the rejects listing has something to leak.
    m = hub.settings.mqtt
    with Publisher(m.host, m.port) as pub:
        pub.send(
            [("sensors/hydrox/wl-00001/up", "not json"), ("sensors/acme/bin-00001/up", "nope")]
        )
    return acme, hydrox


def test_every_route_is_classified(hub: ServedHub) -> None:
    spec = hub.anonymous.get("/openapi.json").json()
    routes = {(m.upper(), p) for p, ops in spec["paths"].items() for m in ops}
    assert routes == set(ROUTES), (
        f"unclassified: {routes - set(ROUTES)}; gone: {set(ROUTES) - routes}"
    )


def test_without_a_token_every_route_but_login_and_health_is_401(hub: ServedHub) -> None:
    for (method, path), body in ROUTES.items():
        if (method, path) in {("POST", "/api/v1/auth/login"), ("GET", "/healthz")}:
            continue
        r = _call(hub.anonymous, method, path, body if isinstance(body, dict) else None)
        assert r.status_code == 401, (method, path, r.status_code, r.text)
        challenge = 'Basic realm="hub devices"' if body == "device" else "Bearer"
        assert r.headers["www-authenticate"] == challenge
        wrong = hub.anonymous.request(
            method,
            _fill(path, {**B, "token_id": "1"}),
            headers={"Authorization": "Bearer hub_forged"},
        )
        assert wrong.status_code == 401, (method, path)


def test_vendor_a_reaches_none_of_vendor_b_s_objects(
    hub: ServedHub, vendors: tuple[httpx.Client, httpx.Client]
) -> None:
    acme, hydrox = vendors
    for (method, path), body in ROUTES.items():
        if body in ("self-service", "public"):
            continue
        if body == "device":  # a person's token is no device credential
            assert _call(acme, method, path, body).status_code == 401, (method, path)
            continue
        if body == "list":
            items = acme.get(path).json()
            items = items["items"] if isinstance(items, dict) else items
            text = json.dumps(items)
            assert "hydrox" not in text, (path, text[:300])
            continue
        if body == "bulk":
            r = acme.post(
                path,
                json=[
                    {"id": "wl-00001", "profile": "hydrox-wl"},
                    {"id": "wl-00002", "profile": "acme-bin"},
                ],
            )
            result = r.json()
            assert result["created"] == 0, result
            assert result["updated"] == 0, result
            assert len(result["errors"]) == 2
            assert "hydrox" not in json.dumps(result["errors"][1])  # whose id it is stays unsaid
            continue
        r = _call(acme, method, path, body)
        assert r.status_code in (403, 404, 422), (method, path, r.status_code, r.text)
        if r.status_code == 422:  # refused on its merits: it must not be about B's existence
            assert method == "POST", (method, path, r.text)
            assert "{" not in path, (method, path, r.text)
    # Nothing of B's changed: the device, profile, user and token are as they were.
    wl = hydrox.get("/api/v1/devices/wl-00001").json()
    assert wl["status"] == "active"
    assert wl["name"] == ""
    assert hydrox.get("/api/v1/profiles/hydrox-wl").json()["report_interval_s"] != 60
    assert hydrox.get("/api/v1/auth/me").json()["user"] == "hydrox-ops"
    assert hydrox.get("/api/v1/devices", params={"vendor": "hydrox"}).json()["total"] == 10


def test_vendor_a_reaches_its_own_objects_by_the_same_routes(
    hub: ServedHub, vendors: tuple[httpx.Client, httpx.Client]
) -> None:
    acme, _ = vendors
    for path in (
        "/api/v1/devices/{device_id}",
        "/api/v1/profiles/{profile_id}",
        "/api/v1/devices/{device_id}/health",
        "/api/v1/vendors/{vendor_id}/health",
        "/api/v1/users/{name}",
        "/api/v1/alerts/{alert_id}",
    ):
        r = acme.get(_fill(path, A))
        assert r.status_code == 200, (path, r.text)
    r = acme.get(_fill("/api/v1/devices/{device_id}/readings", A), params={"metric": "fill_level"})
    assert r.status_code == 200
    rejects = acme.get("/api/v1/rejects").json()
    assert {x["device"] for x in rejects["items"]} == {"bin-00001"}


ROLE_CHECKS: list[tuple[str, str, Callable[[ServedHub], dict[str, Any]] | None, set[Role]]] = [
    ("GET", "/api/v1/users", None, {Role.ADMIN}),
    ("POST", "/api/v1/vendors", lambda h: {"id": "newco", "name": "NewCo"}, {Role.ADMIN}),
    (
        "POST",
        "/api/v1/devices",
        lambda h: {"id": "mc-55555", "profile": "acme-mc", "vendor": "acme"},
        {Role.ADMIN, Role.VENDOR},
    ),
    ("GET", "/api/v1/status", None, {Role.ADMIN, Role.COMMANDER, Role.OFFICER, Role.VIEWER}),
    ("GET", "/api/v1/devices", None, set(Role)),
    ("GET", "/api/v1/rules", None, {Role.ADMIN, Role.COMMANDER, Role.OFFICER, Role.VIEWER}),
    ("POST", "/api/v1/rules/reload", None, {Role.ADMIN, Role.COMMANDER}),
    (
        "GET",
        "/api/v1/incidents",
        None,
        {Role.ADMIN, Role.COMMANDER, Role.OFFICER, Role.VIEWER, Role.UNIT},
    ),
    ("GET", "/api/v1/areas/tree", None, {Role.ADMIN, Role.COMMANDER, Role.OFFICER, Role.VIEWER}),
    (
        "POST",
        "/api/v1/warnings",
        lambda h: {
            "area": "sh/huangpu",
            "kind": "rainstorm",
            "level": "orange",
            "reason": "60 mm in an hour",
            "valid_until": "2100-01-01T00:00:00Z",
        },
        {Role.ADMIN, Role.COMMANDER},
    ),
    ("GET", "/api/v1/warnings", None, set(Role)),
]


@pytest.mark.parametrize(
    ("method", "path", "body", "allowed"),
    ROLE_CHECKS,
    ids=[f"{m} {p}" for m, p, _, _ in ROLE_CHECKS],
)
def test_roles(
    hub: ServedHub,
    method: str,
    path: str,
    body: Callable[[ServedHub], dict[str, Any]] | None,
    allowed: set[Role],
) -> None:
    users = UserStore(hub.settings.registry)
    for role in Role:
        name = f"u-{role.value}"
        users.create_user(
            name, role, vendor="acme" if role is Role.VENDOR else None, password=PASSWORD
        )
        client = hub.client(name, PASSWORD)
        r = client.request(method, path, json=body(hub) if body else None)
        if role in allowed:
            assert r.status_code < 400 or r.status_code == 409, (role, r.text)
        else:
            assert r.status_code == 403, (role, r.status_code)
            assert r.headers["content-type"] == "application/problem+json"
