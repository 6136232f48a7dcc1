"""Vendors register, change, decommission and replace their devices and profiles over the real API."""

from __future__ import annotations

import csv
import io
import json
import time

import httpx
import pytest

from devices.access import Role
from devices.users import UserStore
from tests.hub.conftest import ServedHub
from tests.publisher import Publisher

PASSWORD = "vendor password 1"


@pytest.fixture
def acme(hub: ServedHub) -> httpx.Client:
    """A logged-in vendor account of acme."""
    UserStore(hub.settings.registry).create_user(
        "acme-ops", Role.VENDOR, vendor="acme", password=PASSWORD
    )
    return hub.client("acme-ops", PASSWORD)


def test_a_vendor_registers_a_device_and_gets_its_credential_once(
    hub: ServedHub, acme: httpx.Client
) -> None:
    r = acme.post(
        "/api/v1/devices",
        json={
            "id": "mc-10001",
            "profile": "acme-mc",
            "name": "Cover by the school",
            "area": "sh/huangpu/s1",
        },
    )
    assert r.status_code == 201, r.text
    body = r.json()
    assert body["device"]["vendor"] == "acme"
    assert body["credential"]["device"] == "mc-10001"
    assert len(body["credential"]["secret"]) >= 20
    assert acme.get("/api/v1/devices/mc-10001").json()["name"] == "Cover by the school"
    again = acme.post("/api/v1/devices", json={"id": "mc-10001", "profile": "acme-mc"})
    assert again.status_code == 409
    # Not its vendor, not its profile:
    assert (
        acme.post(
            "/api/v1/devices", json={"id": "x-1", "profile": "acme-mc", "vendor": "hydrox"}
        ).status_code
        == 422
    )
    assert (
        acme.post("/api/v1/devices", json={"id": "x-2", "profile": "hydrox-wl"}).status_code == 404
    )


def _rows(n: int, bad_every: int = 33) -> tuple[list[dict[str, object]], set[int]]:
    """``n`` device rows, every ``bad_every``-th one wrong in one of five ways (~3 %)."""
    rows: list[dict[str, object]] = []
    bad: set[int] = set()
    kinds = ["no such profile", "bad id", "other vendor's profile", "latitude 123", "repeat"]
    for i in range(n):
        row: dict[str, object] = {
            "id": f"bn-{i:06d}",
            "profile": "acme-bin",
            "name": f"bin {i}",
            "lat": 31.0 + i / 1e5,
            "lon": 121.0,
            "area": f"sh/d{i % 7}/s{i % 11}",
            "tags": {"batch": "2026-11"},
        }
        if i % bad_every == 5:
            kind = kinds[(i // bad_every) % len(kinds)]
            bad.add(i)
            if kind == "no such profile":
                row["profile"] = "acme-nope"
            elif kind == "bad id":
                row["id"] = f"bn {i}/x"
            elif kind == "other vendor's profile":
                row["profile"] = "hydrox-wl"
            elif kind == "latitude 123":
                row["lat"] = 123.0
            else:
                row["id"] = "bn-000000"
        rows.append(row)
    return rows, bad


def test_bulk_import_creates_exactly_the_good_rows_and_reports_each_bad_one(
    hub: ServedHub, acme: httpx.Client
) -> None:
    rows, bad = _rows(10_000)
    assert 0.025 < len(bad) / len(rows) < 0.035
    t = time.perf_counter()
    r = acme.post("/api/v1/devices/bulk", json=rows, timeout=300)
    elapsed = time.perf_counter() - t
    assert r.status_code == 200, r.text
    result = r.json()
    assert result["created"] == len(rows) - len(bad)
    assert result["updated"] == 0
    assert [e["row"] for e in result["errors"]] == sorted(i + 1 for i in bad)
    assert all(e["reason"] for e in result["errors"])
    reasons = " ".join(e["reason"] for e in result["errors"])
    for expected in ("acme-nope does not exist", "another vendor", "repeats row 1", "lat"):
        assert expected in reasons
    assert len(result["credentials"]) == result["created"]
    listed = acme.get("/api/v1/devices", params={"type": "bin_fill", "limit": 1}).json()
    assert listed["total"] == 30 + result["created"]  # the fixture's 30 bins plus these
    print(f"bulk import of {len(rows)} rows over HTTP: {len(rows) / elapsed:.0f} rows/s")

    again = acme.post("/api/v1/devices/bulk", json=rows, timeout=300).json()
    assert (again["created"], again["updated"], again["unchanged"]) == (0, 0, result["created"])
    assert again["credentials"] == []
    assert len(again["errors"]) == len(bad)


def test_bulk_csv_with_line_numbers_and_updates(hub: ServedHub, acme: httpx.Client) -> None:
    out = io.StringIO()
    w = csv.writer(out)
    w.writerow(["id", "profile", "name", "lat", "lon", "area", "tags"])
    w.writerow(
        [
            "gas-00100",
            "acme-gas",
            "Kitchen A",
            "31.1",
            "121.2",
            "sh/xuhui/s1",
            "floor=1;owner=canteen",
        ]
    )
    w.writerow(["gas-00101", "acme-gas", "Kitchen B", "north", "121.2", "sh/xuhui/s1", ""])
    w.writerow(["gas-00102", "acme-gas", "", "", "", "", ""])
    body = out.getvalue().encode()
    r = acme.post("/api/v1/devices/bulk", content=body, headers={"content-type": "text/csv"}).json()
    assert r["created"] == 2
    assert [(e["row"], e["id"]) for e in r["errors"]] == [(3, "gas-00101")]
    assert "lat" in r["errors"][0]["reason"]
    assert acme.get("/api/v1/devices/gas-00100").json()["tags"] == {
        "floor": "1",
        "owner": "canteen",
    }
    changed = body.replace(b"Kitchen A", b"Kitchen A (moved)")
    r2 = acme.post(
        "/api/v1/devices/bulk", content=changed, headers={"content-type": "text/csv"}
    ).json()
    assert (r2["created"], r2["updated"], r2["unchanged"]) == (0, 1, 1)
    bad_header = acme.post(
        "/api/v1/devices/bulk", content=b"ident,model\n1,2\n", headers={"content-type": "text/csv"}
    )
    assert bad_header.status_code == 422
    assert "id and profile" in bad_header.json()["detail"]


def _publish(hub: ServedHub, device: str, ts_ms: int, fill: float) -> None:
    m = hub.settings.mqtt
    with Publisher(m.host, m.port) as pub:
        pub.send([(f"sensors/acme/{device}/up", json.dumps({"ts": ts_ms, "fill": fill}))])


def test_replacement_keeps_one_continuous_series(hub: ServedHub, acme: httpx.Client) -> None:
    t0 = (int(time.time()) - 3600) * 1000
    _publish(hub, "bin-00005", t0, 10.0)
    _publish(hub, "bin-00005", t0 + 60_000, 11.0)
    hub.wait_stored(2)
    r = acme.post("/api/v1/devices/bin-00005/replace", json={"new_id": "bin-90005"})
    assert r.status_code == 201, r.text
    assert r.json()["credential"]["device"] == "bin-90005"
    _publish(hub, "bin-90005", t0 + 120_000, 12.0)
    _publish(hub, "bin-00005", t0 + 180_000, 99.0)  # the old hardware is refused from now on
    hub.wait_stored(3)
    # The status counter counts a rejection when it is decoded; the rejects API shows it once its
    # batch is written (the next store write, up to store_write_interval_s later): wait for that.
    deadline = time.monotonic() + 10
    while not (
        rejects := acme.get("/api/v1/rejects", params={"device": "bin-00005"}).json()["items"]
    ):
        assert time.monotonic() < deadline
        time.sleep(0.05)
    span = {"metric": "fill_level", "start": "2000-01-01T00:00:00Z"}
    for device in ("bin-90005", "bin-00005"):
        series = acme.get(f"/api/v1/devices/{device}/readings", params=span).json()
        assert series["value"] == [10.0, 11.0, 12.0], device
    old = acme.get("/api/v1/devices/bin-00005").json()
    assert (old["status"], old["replaced_by"]) == ("replaced", "bin-90005")
    new = acme.get("/api/v1/devices/bin-90005").json()
    assert new["latest"]["fill_level"]["value"] == 12.0
    assert new["area"] == old["area"]
    assert [x["reason"] for x in rejects] == ["decommissioned"]
    # A replaced device cannot be replaced again, changed, or re-uploaded.
    assert (
        acme.post("/api/v1/devices/bin-00005/replace", json={"new_id": "bin-90006"}).status_code
        == 422
    )
    assert acme.patch("/api/v1/devices/bin-00005", json={"name": "x"}).status_code == 422
    # Hardware of another kind cannot continue a bin's series.
    wrong = acme.post(
        "/api/v1/devices/bin-00006/replace", json={"new_id": "mc-90006", "profile": "acme-mc"}
    )
    assert wrong.status_code == 422


def test_decommissioned_devices_are_refused_and_keep_their_history(
    hub: ServedHub, acme: httpx.Client
) -> None:
    t0 = (int(time.time()) - 3600) * 1000
    _publish(hub, "bin-00007", t0, 10.0)
    hub.wait_stored(1)
    r = acme.post("/api/v1/devices/bin-00007/decommission")
    assert r.json()["status"] == "decommissioned"
    _publish(hub, "bin-00007", t0 + 60_000, 20.0)
    deadline = time.monotonic() + 10
    while hub.health()["dead_letters"] < 1:  # type: ignore[operator]
        assert time.monotonic() < deadline
        time.sleep(0.05)
    series = acme.get(
        "/api/v1/devices/bin-00007/readings",
        params={"metric": "fill_level", "start": "2000-01-01T00:00:00Z"},
    ).json()
    assert series["value"] == [10.0]
    assert acme.post("/api/v1/devices/bin-00007/credential").status_code == 422


def test_a_vendor_manages_its_own_profiles(hub: ServedHub, acme: httpx.Client) -> None:
    profile = {
        "id": "acme-wl9",
        "name": "Acme radar level WL9",
        "type": "water_level",
        "domain": "water",
        "metrics": [{"name": "water_level", "unit": "m", "min": -2, "max": 30}],
        "report_interval_s": 300,
        "codec": {
            "codec": "mapping",
            "time": {"path": "/ts", "format": "epoch_ms"},
            "fields": [{"path": "/lvl", "metric": "water_level", "unit": "cm"}],
        },
    }
    r = acme.post("/api/v1/profiles", json=profile)
    assert r.status_code == 201, r.text
    assert r.json()["vendor"] == "acme"
    assert acme.post("/api/v1/profiles", json=profile).status_code == 409
    broken = {
        **profile,
        "id": "acme-wl10",
        "codec": {"codec": "mapping", "fields": [{"metric": "water_level"}]},
    }
    bad = acme.post("/api/v1/profiles", json=broken)
    assert bad.status_code == 422
    assert "codec" in bad.json()["detail"]
    changed = {**profile, "report_interval_s": 600}
    assert acme.put("/api/v1/profiles/acme-wl9", json=changed).json()["report_interval_s"] == 600
    ids = {p["id"] for p in acme.get("/api/v1/profiles").json()}
    assert "acme-wl9" in ids
    assert "hydrox-wl" not in ids
    assert (
        acme.put("/api/v1/profiles/hydrox-wl", json={**profile, "id": "hydrox-wl"}).status_code
        == 404
    )
    assert acme.delete("/api/v1/profiles/acme-bin").status_code == 422  # bins use it
    assert acme.delete("/api/v1/profiles/acme-wl9").status_code == 204
    assert acme.get("/api/v1/profiles/acme-wl9").status_code == 404
