"""Units: great-circle distances, the nearest suitable available units, and the store's rules."""

from __future__ import annotations

import time

import numpy as np
import pytest

from alerts._response_tables import ResponseDb
from alerts.errors import InvalidAlertRequestError, ResponseConflictError
from alerts.units import Unit, UnitKind, UnitStatus, UnitStore, haversine_m, rank


def _unit(uid: str, lat: float | None, lon: float | None, **kw: object) -> Unit:
    fields: dict[str, object] = {
        "kind": UnitKind.DRAINAGE,
        "skills": ("drainage",),
        "status": UnitStatus.AVAILABLE,
    }
    fields.update(kw)
    return Unit(uid, uid, area="c/d", updated_ms=0, lat=lat, lon=lon, **fields)  # type: ignore[arg-type]


def test_haversine_matches_known_distances() -> None:
    # One degree of latitude is 111.19 km on the mean sphere; Beijing to Shanghai about 1068 km.
    d = haversine_m(30.0, 120.0, np.array([31.0, 30.0]), np.array([120.0, 120.0]))
    assert d[0] == pytest.approx(111_195, rel=1e-4)
    assert d[1] == 0.0
    bj_sh = haversine_m(39.9042, 116.4074, np.array([31.2304]), np.array([121.4737]))
    assert bj_sh[0] == pytest.approx(1_067_000, rel=0.01)


def test_rank_keeps_available_suitable_placed_units_nearest_first() -> None:
    units = [
        _unit("far", 30.05, 120.0),
        _unit("near", 30.001, 120.0),
        _unit("busy", 30.0001, 120.0, status=UnitStatus.ON_SCENE),
        _unit("fire", 30.0002, 120.0, kind=UnitKind.FIRE, skills=("fire",)),
        _unit("nowhere", None, None),
        _unit("mid", 30.01, 120.0),
    ]
    found = rank(units, 30.0, 120.0, skills=["drainage"], k=5, speed_kmh=36.0, detour=1.0)
    assert [s.unit.id for s in found] == ["near", "mid", "far"]
    assert found[0].distance_m == pytest.approx(111.2, abs=0.5)
    assert found[0].eta_s == pytest.approx(found[0].distance_m / 10.0)  # 36 km/h = 10 m/s
    anyone = rank(units, 30.0, 120.0, k=2)
    assert [s.unit.id for s in anyone] == ["fire", "near"]
    assert rank([], 30.0, 120.0) == []


def test_rank_is_one_vectorised_pass_even_for_many_units() -> None:
    rng = np.random.default_rng(1)
    lats, lons = 30 + rng.random(20_000) * 0.2, 120 + rng.random(20_000) * 0.3
    units = [
        _unit(f"u{i}", float(a), float(o)) for i, (a, o) in enumerate(zip(lats, lons, strict=True))
    ]
    t0 = time.perf_counter()
    found = rank(units, 30.1, 120.15, skills=["drainage"], k=5)
    took = time.perf_counter() - t0
    expected = np.argsort(haversine_m(30.1, 120.15, lats, lons))[:5]
    assert [s.unit.id for s in found] == [f"u{i}" for i in expected.tolist()]
    print(f"rank over {len(units)} units: {took * 1000:.1f} ms")  # a figure, not a test


def test_store_keeps_status_and_refuses_a_shared_account(db_url: str) -> None:
    db = ResponseDb(db_url)  # SQLite and PostgreSQL (tests/postgres.py), migrated by Alembic
    seen: list[Unit] = []
    store = UnitStore(db, on_change=seen.append, clock=lambda: 42)
    unit = store.put(
        Unit(
            "drain-1",
            "Drain",
            UnitKind.DRAINAGE,
            "c/d",
            (),
            UnitStatus.AVAILABLE,
            0,
            account="crew",
        )
    )
    assert unit.skills == ("drainage",)  # the kind's default
    assert unit.updated_ms == 42
    store.set_duty("drain-1", on_duty=False)
    again = store.put(
        Unit(
            "drain-1",
            "Drain team",
            UnitKind.DRAINAGE,
            "c/d",
            ("pumps",),
            UnitStatus.AVAILABLE,
            0,
            account="crew",
        )
    )
    assert (again.status, again.name, again.skills) == (
        UnitStatus.OFF_DUTY,
        "Drain team",
        ("pumps",),
    )
    assert store.of_account("crew") == again
    with pytest.raises(ResponseConflictError, match="crew"):
        store.put(
            Unit(
                "drain-2",
                "Other",
                UnitKind.DRAINAGE,
                "c/d",
                (),
                UnitStatus.AVAILABLE,
                0,
                account="crew",
            )
        )
    with pytest.raises(InvalidAlertRequestError):
        store.put(Unit("bad id!", "x", UnitKind.OTHER, "c", (), UnitStatus.AVAILABLE, 0))
    with pytest.raises(InvalidAlertRequestError, match="both"):
        store.put(Unit("half", "x", UnitKind.OTHER, "c", (), UnitStatus.AVAILABLE, 0, lat=30.0))
    moved = store.move("drain-1", 30.1, 120.2)
    assert (moved.lat, moved.lon, moved.position_ms) == (30.1, 120.2, 42)
    assert [u.status.value for u in seen] == ["available", "off_duty", "off_duty", "off_duty"]
    assert [u.id for u in store.units(within=("c",))] == ["drain-1"]
    assert store.units(within=("x",)) == []
    db.dispose()
