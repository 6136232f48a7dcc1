"""The decode preview ("try my payload"): live ingestion's answer for a payload, with nothing kept.

Unit level on a real registry (SQLite file) and the real consumer; then the HTTP route on a served hub
(real uvicorn, real Mosquitto) for authorisation, size limits and "nothing was stored".
"""

from __future__ import annotations

import json
import math
from pathlib import Path

import httpx
import pytest

from devices.access import Role
from devices.registry import Registry
from devices.users import UserStore
from ingest.consumer import Consumer, DecodeOptions
from ingest.normalise import RangeTable, flag_out_of_range
from ingest.preview import PLACEHOLDER_DEVICE, DecodePreview, preview
from tests.hub.conftest import ServedHub
from tests.hub.conftest import hub as hub  # noqa: PLC0414 - the served hub fixture, shared
from tests.ingest.codecs.conftest import SITE_ZONE, TESTDATA
from tests.strategies import RECEIVED_MS

PROBLEM = "application/problem+json"
LIMIT = 4096  # a small size limit for the unit tests' consumer


@pytest.fixture
def consumer(test_registry: Registry) -> Consumer:
    """The live consumer as the hub builds it (site zone, size limit), at a fixed clock."""
    return Consumer(
        test_registry,
        DecodeOptions(site_zone=SITE_ZONE, max_payload=LIMIT),
        clock=lambda: RECEIVED_MS / 1000,
    )


def _preview(
    registry: Registry,
    consumer: Consumer,
    profile: str,
    payload: object,
    topic: str,
    received_ms: int = RECEIVED_MS,
) -> DecodePreview:
    body = payload if isinstance(payload, bytes) else json.dumps(payload).encode()
    return preview(
        registry,
        consumer,
        registry.profile(profile),
        body,
        topic=topic,
        received_ms=received_ms,
    )


def _rows(p: DecodePreview) -> list[tuple[str, str, int, float | None, str, list[str]]]:
    return [
        (r.device, r.metric, round(r.ts.timestamp() * 1000), r.value, r.unit, r.flags)
        for r in p.readings
    ]


# -- every vendor shape -------------------------------------------------------------------------


def test_senml_of_an_unregistered_device_is_converted_and_range_flagged(test_registry, consumer):
    devices_before = dict(test_registry.interner.devices)
    pack = [
        {
            "bn": "wl-new01:",
            "bt": RECEIVED_MS / 1000 - 600,
            "n": "water_level",
            "u": "cm",
            "v": 250,
        },
        {"n": "water_level", "u": "cm", "v": 7000, "t": 300},  # 70 m: above the gauge's 60 m
        {"n": "battery", "v": 55},
    ]
    p = _preview(test_registry, consumer, "hydrox-wl", pack, "sensors/hydrox/wl-new01/up")
    t0 = RECEIVED_MS - 600_000
    assert _rows(p) == [
        ("wl-new01", "water_level", t0, 2.5, "m", []),
        ("wl-new01", "water_level", t0 + 300_000, 70.0, "m", ["out_of_range"]),
        ("wl-new01", "battery", t0, 55.0, "%", []),
    ]
    assert p.readings[1].quality == 1
    assert p.rejections == []
    assert (p.vendor, p.device, p.profile) == ("hydrox", "wl-new01", "hydrox-wl")
    # Nothing was registered on the way.
    assert "wl-new01" not in test_registry.interner.devices
    assert dict(test_registry.interner.devices) == devices_before


def test_mapping_payload_on_the_placeholder_device(test_registry, consumer):
    topic = f"sensors/acme/{PLACEHOLDER_DEVICE}/up"
    payload = {"ts": RECEIVED_MS - 60_000, "fill": 42.5, "temp": 95, "bat": 81}
    p = _preview(test_registry, consumer, "acme-bin", payload, topic)
    assert _rows(p) == [
        (PLACEHOLDER_DEVICE, "fill_level", RECEIVED_MS - 60_000, 42.5, "%", []),
        (PLACEHOLDER_DEVICE, "temperature", RECEIVED_MS - 60_000, 95.0, "Cel", ["out_of_range"]),
        (PLACEHOLDER_DEVICE, "battery", RECEIVED_MS - 60_000, 81.0, "%", []),
    ]
    assert p.rejections == []


def test_mapping_unit_conversion_mm_to_m(test_registry, consumer):
    payload = {"ts": RECEIVED_MS, "dx": 12.5, "dy": -3, "tilt": 0.4}
    p = _preview(test_registry, consumer, "acme-tilt", payload, "sensors/acme/st-new/up")
    values = {r.metric: (r.value, r.unit) for r in p.readings}
    assert values["displacement_x"][1] == "m"
    assert math.isclose(values["displacement_x"][0] or 0, 0.0125)
    assert math.isclose(values["displacement_y"][0] or 0, -0.003)
    assert values["tilt_angle"] == (0.4, "deg")


def test_gateway_batch_checks_the_devices_it_names_against_the_registry(test_registry, consumer):
    """The gateway itself is new; its records name a registered detector, an unknown one, and
    another vendor's device: only the registered detector's readings come through."""
    batch = {
        "gw": "tgw-new",
        "data": [
            {"id": "tf-00001", "t": "2026-11-23T08:00:00", "flow": 12, "speed": 41.5, "occ": 7},
            {"id": "tf-09999", "t": "2026-11-23T08:00:00", "flow": 3, "speed": 50, "occ": 1},
            {"id": "mc-00001", "t": "2026-11-23T08:00:00", "flow": 1},
        ],
    }
    p = _preview(test_registry, consumer, "trafix-gw", batch, "sensors/trafix/tgw-new/up")
    # Zone-less times are local time in the site's zone (UTC+8): 08:00 there is 00:00 UTC.
    ts = 1_795_392_000_000
    assert _rows(p) == [
        ("tf-00001", "vehicle_count", ts, 12.0, "veh", []),
        ("tf-00001", "average_speed", ts, 41.5, "km/h", []),
        ("tf-00001", "occupancy", ts, 7.0, "%", []),
    ]
    assert [(r.device, r.reason, r.detail) for r in p.rejections] == [
        ("tf-09999", "unknown_device", "device 'tf-09999' is not registered"),
        ("mc-00001", "wrong_vendor", "device 'mc-00001' belongs to another vendor than 'trafix'"),
    ]


def test_malformed_payload_gets_the_dead_letter_sentence(test_registry, consumer):
    p = _preview(test_registry, consumer, "acme-mc", b'{"ts": 1, "tilt": ', "sensors/acme/mc-x/up")
    assert p.readings == []
    assert len(p.rejections) == 1
    assert p.rejections[0].reason == "malformed_json"
    assert p.rejections[0].device == "mc-x"
    assert p.rejections[0].detail.startswith("payload is not JSON the hub can read:")


def test_far_future_time_is_rejected_and_a_few_minutes_ahead_is_flagged(test_registry, consumer):
    ahead = {"ts": RECEIVED_MS + 10 * 60_000, "lel": 4}
    far = {"ts": RECEIVED_MS + 3 * 86_400_000, "lel": 4}
    topic = "sensors/acme/gas-new/up"
    p = _preview(test_registry, consumer, "acme-gas", ahead, topic)
    assert _rows(p) == [("gas-new", "gas_lel", RECEIVED_MS + 600_000, 4.0, "%LEL", ["clock_skew"])]
    p = _preview(test_registry, consumer, "acme-gas", far, topic)
    assert p.readings == []
    assert [(r.reason, r.detail) for r in p.rejections] == [
        (
            "future_timestamp",
            f"gas_lel: time {RECEIVED_MS + 3 * 86_400_000} ms is 72.0 h ahead of the hub's clock; "
            "check the device's clock",
        )
    ]


def test_oversized_payload_is_rejected_by_its_size_like_live_ingestion(test_registry, consumer):
    body = json.dumps({"ts": RECEIVED_MS, "lel": 1, "pad": "x" * LIMIT}).encode()
    p = _preview(test_registry, consumer, "acme-gas", body, "sensors/acme/gas-00001/up")
    live = _live(test_registry, consumer, "sensors/acme/gas-00001/up", body)
    assert [(r.reason, r.detail) for r in p.rejections] == [
        ("oversized", f"payload of {len(body)} bytes is over the {LIMIT}-byte limit")
    ]
    assert [(r.reason, r.detail) for r in p.rejections] == live[1]
    # Only the start of a huge body was read: its whole size decides.
    cut = preview(
        test_registry,
        consumer,
        test_registry.profile("acme-gas"),
        body[: LIMIT + 1],
        topic="sensors/acme/gas-00001/up",
        received_ms=RECEIVED_MS,
        size=10_000_000,
    )
    assert cut.rejections[0].detail == f"payload of 10000000 bytes is over the {LIMIT}-byte limit"


def test_a_registered_topic_device_is_previewed_with_the_profile_asked_for(test_registry, consumer):
    """bin-00001 is a bin; previewing the tilt profile on its id decodes as a tilt sensor."""
    p = _preview(
        test_registry,
        consumer,
        "acme-tilt",
        {"ts": RECEIVED_MS, "dx": 1},
        "sensors/acme/bin-00001/up",
    )
    assert _rows(p) == [("bin-00001", "displacement_x", RECEIVED_MS, 0.001, "m", [])]
    assert test_registry.interner.devices["bin-00001"].profile == "acme-bin"


def test_status_and_bad_topics_are_answered_as_the_consumer_answers_them(test_registry, consumer):
    p = _preview(test_registry, consumer, "acme-bin", b"online", "sensors/acme/bin-new/status")
    assert (p.status, p.readings, p.rejections) == (True, [], [])
    p = _preview(test_registry, consumer, "acme-bin", b"{}", "acme/bin-new/up")
    assert [(r.reason, r.detail) for r in p.rejections] == [
        ("bad_topic", "topic 'acme/bin-new/up' is not sensors/{vendor}/{device}/up")
    ]


def test_duplicate_times_are_counted(test_registry, consumer):
    pack = [{"bn": "wl-new02:", "bt": RECEIVED_MS / 1000, "n": "water_level", "v": 1.0}] * 3
    p = _preview(test_registry, consumer, "hydrox-wl", pack, "sensors/hydrox/wl-new02/up")
    assert len(p.readings) == 3
    assert p.duplicates == 2


# -- the same answer as live ingestion, on every golden payload ---------------------------------


def _live(
    registry: Registry, consumer: Consumer, topic: str, payload: bytes
) -> tuple[list[tuple[str, str, int, float | None, int]], list[tuple[str, str]]]:
    """What the live consumer and the pipeline's range check make of a message."""
    live = Consumer(registry, consumer.options, clock=lambda: RECEIVED_MS / 1000)
    live.handle(topic, payload, 1, 1)
    taken = live.take()
    batch = flag_out_of_range(taken.batch, RangeTable.from_registry(registry))
    ids, names = registry.interner.device_ids, registry.interner.metric_names
    rows = [
        (ids[d], names[m], t, v if math.isfinite(v) else None, q)
        for d, m, t, v, q in zip(
            batch.device.tolist(),
            batch.metric.tolist(),
            batch.ts.tolist(),
            batch.value.tolist(),
            batch.quality.tolist(),
            strict=True,
        )
    ]
    return rows, [(str(r.error.reason), r.error.detail) for r in taken.rejections]


def _registered_cases(registry: Registry) -> list[Path]:
    cases = []
    for case in sorted(p.parent for p in TESTDATA.glob("*/*/topic.txt")):
        _, vendor, device, _ = (case / "topic.txt").read_text().strip().split("/")
        entry = registry.interner.devices.get(device)
        if (
            entry
            and entry.vendor == vendor
            and entry.active
            and not (case / "profile.txt").exists()
        ):
            cases.append(case)
    return cases


def test_preview_equals_live_ingestion_on_every_golden_payload(test_registry, consumer):
    cases = _registered_cases(test_registry)
    assert len(cases) >= 30  # every vendor's shapes, good and bad
    for case in cases:
        topic = (case / "topic.txt").read_text().strip()
        payload = (case / "payload.json").read_bytes()
        device = topic.split("/")[2]
        profile = test_registry.profile(test_registry.interner.devices[device].profile)
        p = preview(test_registry, consumer, profile, payload, topic=topic, received_ms=RECEIVED_MS)
        rows, rejections = _live(test_registry, consumer, topic, payload)
        got = [
            (r.device, r.metric, round(r.ts.timestamp() * 1000), r.value, r.quality)
            for r in p.readings
        ]
        assert got == rows, case.name
        assert [(r.reason, r.detail) for r in p.rejections] == rejections, case.name


def test_an_unregistered_topic_device_decodes_where_live_ingestion_refuses_it(
    test_registry, consumer
):
    case = TESTDATA / "acme" / "mc_unknown_device"
    topic = (case / "topic.txt").read_text().strip()
    payload = (case / "payload.json").read_bytes()
    assert _live(test_registry, consumer, topic, payload)[1][0][0] == "unknown_device"
    p = _preview(test_registry, consumer, "acme-mc", payload, topic)
    assert p.rejections == []
    assert {r.device for r in p.readings} == {"mc-00404"}
    assert len(p.readings) >= 1


# -- the HTTP route -----------------------------------------------------------------------------


def _vendor(hub: ServedHub, name: str, role: Role, vendor: str | None = None) -> httpx.Client:
    password = f"{name}-password-1"
    users = UserStore(hub.settings.registry)
    users.create_user(name, role, vendor=vendor, password=password)
    users.engine.dispose()
    return hub.client(name, password)


def test_route_previews_for_admin_vendor_and_viewer_and_stores_nothing(hub: ServedHub) -> None:
    with (
        _vendor(hub, "acme-ops", Role.VENDOR, "acme") as acme,
        _vendor(hub, "wall", Role.VIEWER) as viewer,
    ):
        _previews_and_stores_nothing(hub, acme, viewer)


def _previews_and_stores_nothing(hub: ServedHub, acme: httpx.Client, viewer: httpx.Client) -> None:
    url = "/api/v1/profiles/acme-bin/decode"
    body = json.dumps({"ts": 1_795_392_000_000, "fill": 101, "bat": 77})

    r = acme.post(url, content=body, headers={"content-type": "text/plain"})
    assert r.status_code == 200, r.text
    out = r.json()
    assert (out["vendor"], out["device"]) == ("acme", PLACEHOLDER_DEVICE)
    assert out["topic"] == f"sensors/acme/{PLACEHOLDER_DEVICE}/up"
    assert [(x["metric"], x["value"], x["unit"], x["flags"]) for x in out["readings"]] == [
        ("fill_level", 101.0, "%", ["out_of_range"]),
        ("battery", 77.0, "%", []),
    ]
    assert out["readings"][0]["ts"] == "2026-11-23T00:00:00Z"
    assert out["rejections"] == []

    named = hub.http.post(url, params={"device": "bin-77777"}, content=body).json()
    assert named["device"] == "bin-77777"
    assert {x["device"] for x in named["readings"]} == {"bin-77777"}
    assert viewer.post(url, content=body).status_code == 200

    # Nothing stored: no reading, no dead letter, no device.
    bad = acme.post(url, content=b"{broken")
    assert bad.json()["rejections"][0]["reason"] == "malformed_json"
    h = hub.health()
    assert (h["readings_stored"], h["dead_letters"], h["devices"]) == (0, 0, 41)
    assert hub.http.get("/api/v1/rejects").json()["total"] == 0
    assert hub.http.get("/api/v1/devices/bin-77777").status_code == 404


def test_route_keeps_vendors_to_their_own_profiles_and_topics(hub: ServedHub) -> None:
    with _vendor(hub, "acme-ops", Role.VENDOR, "acme") as acme:
        _keeps_vendors_to_their_own(hub, acme)


def _keeps_vendors_to_their_own(hub: ServedHub, acme: httpx.Client) -> None:
    other = acme.post("/api/v1/profiles/hydrox-wl/decode", content=b"[]")
    assert other.status_code == 404
    assert other.headers["content-type"] == PROBLEM
    assert acme.post("/api/v1/profiles/nope/decode", content=b"[]").status_code == 404
    foreign_topic = acme.post(
        "/api/v1/profiles/acme-bin/decode",
        params={"topic": "sensors/hydrox/wl-00001/up"},
        content=b"{}",
    )
    assert foreign_topic.status_code == 404
    mismatch = acme.post(
        "/api/v1/profiles/acme-bin/decode",
        params={"topic": "sensors/acme/bin-1/up", "device": "bin-2"},
        content=b"{}",
    )
    assert mismatch.status_code == 400
    assert hub.anonymous.post("/api/v1/profiles/acme-bin/decode", content=b"{}").status_code == 401


def test_route_gateway_batch_names_registered_unknown_and_foreign_devices(hub: ServedHub) -> None:
    """The hub's city has no trafix detectors: a gateway batch shows what would be refused."""
    batch = {
        "data": [
            {"id": "tf-00001", "t": "2026-11-23T08:00:00", "flow": 12},
            {"id": "bin-00003", "t": "2026-11-23T08:00:00", "flow": 1},
        ]
    }
    r = hub.http.post(
        "/api/v1/profiles/trafix-gw/decode",
        params={"topic": "sensors/trafix/tgw-new/up"},
        content=json.dumps(batch),
    ).json()
    assert r["readings"] == []
    assert [(x["device"], x["reason"]) for x in r["rejections"]] == [
        ("tf-00001", "unknown_device"),
        ("bin-00003", "wrong_vendor"),
    ]


def test_route_rejects_an_oversized_body_with_the_live_sentence(hub: ServedHub) -> None:
    limit = hub.settings.ingest.max_payload_bytes
    body = b'{"ts": 1, "pad": "' + b"x" * limit + b'"}'
    r = hub.http.post("/api/v1/profiles/acme-bin/decode", content=body)
    assert r.status_code == 200
    assert r.json()["rejections"] == [
        {
            "device": PLACEHOLDER_DEVICE,
            "reason": "oversized",
            "detail": f"payload of {len(body)} bytes is over the {limit}-byte limit",
        }
    ]
