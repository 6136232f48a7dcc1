"""The server errors and the filter leak the hostile-input suite found, each pinned by one request."""

from __future__ import annotations

import pytest

from tests.hub.conftest import ServedHub

pytestmark = pytest.mark.broker


def problem(r, status: int) -> dict:
    assert r.status_code == status, r.text
    assert r.headers["content-type"].startswith("application/problem+json")
    body = r.json()
    assert body["status"] == status
    return body


@pytest.fixture(params=["sqlite", pytest.param("postgresql", marks=pytest.mark.postgres)])
def any_hub(request: pytest.FixtureRequest) -> ServedHub:
    """The hub on SQLite, then on PostgreSQL (which refuses NUL in text and numbers past int32)."""
    served: ServedHub = request.getfixturevalue("hub" if request.param == "sqlite" else "pg_hub")
    return served


def test_hostile_requests_get_problems_not_server_errors(any_hub: ServedHub):
    hub = any_hub
    # Login with a body that says JSON but is not: was an unhandled JSONDecodeError.
    r = hub.anonymous.post(
        "/api/v1/auth/login", content=b"{nope", headers={"content-type": "application/json"}
    )
    assert "not valid JSON" in problem(r, 422)["detail"]
    # An API token for 1e300 days: timedelta overflowed.
    r = hub.http.post("/api/v1/auth/tokens", json={"name": "forever", "days": 1e300})
    problem(r, 422)
    # Offsets and ids past SQLite's 64-bit integers: the driver's OverflowError.
    for path, params in [
        ("/api/v1/rejects", {"offset": 10**30}),
        ("/api/v1/incidents", {"offset": 10**30}),
        ("/api/v1/alerts", {"offset": 10**30}),
        (f"/api/v1/alerts/{10**30}", {}),
    ]:
        r = hub.http.get(path, params=params)
        assert "too large" in problem(r, 422)["detail"], path
    # Past PostgreSQL's integer, within SQLite's: a 422 there, no such alert here.
    r = hub.http.get(f"/api/v1/alerts/{2**40}")
    problem(r, r.status_code)
    assert r.status_code in (404, 422)
    # An accumulation rule with an infinite window (Python's json reads 1e999 as inf): OverflowError.
    body = (
        b'{"id": "inf", "kind": "accumulation", "metric": "rainfall", "window_s": 1e999,'
        b' "levels": {"yellow": 50}}'
    )
    r = hub.http.post(
        "/api/v1/rules/validate", content=body, headers={"content-type": "application/json"}
    )
    assert "finite number" in problem(r, 422)["detail"]
    # Text with a NUL character, which PostgreSQL cannot store (SQLite can).
    r = hub.http.post("/api/v1/vendors", json={"id": "nul-vendor", "name": "a\u0000b"})
    assert r.status_code < 500, r.text


def test_like_wildcards_in_an_area_filter_match_nothing(hub: ServedHub):
    everything = hub.http.get("/api/v1/devices").json()["total"]
    assert everything > 0
    # "_" may be part of a name: it reaches the query, escaped, and matches only itself.
    for area in ("_", "s_"):
        assert hub.http.get("/api/v1/devices", params={"area": area}).json()["total"] == 0, area
    # "%" cannot be: refused before any query (hub/filters.py).
    for area in ("%", "sh/%"):
        r = hub.http.get("/api/v1/devices", params={"area": area})
        assert r.status_code == 422, (area, r.text)
        assert r.headers["content-type"].startswith("application/problem+json")
    assert hub.http.get("/api/v1/devices", params={"area": "sh"}).json()["total"] == everything - 1
