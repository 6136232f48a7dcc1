"""Dead letters of hostile messages are stored on SQLite and PostgreSQL alike.

PostgreSQL refuses what SQLite takes: a text with a NUL character, a value longer than its column.
A device segment of any length comes from the topic, and random bytes from the payload; a dead letter
the database refuses would fail the pipeline's whole flush.
"""

from __future__ import annotations

import json
import time

import pytest

from hub.settings import HttpSettings, HubSettings, MqttSettings
from ingest.codecs import DecodeError, DecodeReason, RawMessage
from ingest.columns import Rejection
from ingest.deadletter import DeadLetterQuery, DeadLetterStore
from tests.conftest import free_port
from tests.hub.conftest import ServedHub
from tests.publisher import Publisher


@pytest.mark.parametrize(
    ("vendor", "device", "payload", "detail"),
    [
        ("acme", "bin-00001", b"\x00\x01\xff binary \x00", "payload is not JSON: \x00 found"),
        ("v" * 200, "d" * 5000, b"{}", "device is not registered"),
        ("acme", "\u202e\u0000evil", "\u4e2d\u6587".encode() + b"\x00", "x"),
    ],
)
def test_hostile_dead_letters_are_stored_readable(db_url, vendor, device, payload, detail):
    store = DeadLetterStore(db_url)
    raw = RawMessage(
        topic=f"sensors/{vendor}/{device}/up",
        payload=payload,
        vendor=vendor,
        device_id=device,
        received_ms=1_795_392_000_000,
    )
    store.write([Rejection(raw, DecodeError(DecodeReason.MALFORMED_JSON, detail, device))])
    (letter,), total = store.list(DeadLetterQuery())
    assert total == 1
    assert letter.reason == "malformed_json"
    assert "\x00" not in letter.payload + letter.detail + letter.device
    assert letter.detail.strip("\ufffd ")
    assert len(letter.device) <= 64
    assert len(letter.vendor) <= 64
    assert sum(store.counts.values()) == 1
    store.engine.dispose()


@pytest.mark.postgres
@pytest.mark.broker
def test_a_hub_on_postgresql_keeps_ingesting_after_hostile_messages(
    private_broker, tmp_path, postgres_url
):
    # Before dead letters were cleaned, one NUL byte in a payload failed the flush on PostgreSQL
    # and with it the ingest task: the hub left the broker, logged nothing, and took nothing more.
    data = tmp_path / "hub"
    data.mkdir()
    settings = HubSettings(
        data_dir=data,
        registry_url=postgres_url,
        mqtt=MqttSettings(embedded=False, host=private_broker.host, port=private_broker.port),
        http=HttpSettings(port=free_port()),
    )
    hub = ServedHub(settings)
    try:
        r = hub.http.post(
            "/api/v1/devices", json={"id": "bin-00001", "profile": "acme-bin", "vendor": "acme"}
        )
        assert r.status_code in (200, 201), r.text
        now_ms = int(time.time() * 1000)
        pub = Publisher(private_broker.host, private_broker.port, "pg-hostile")
        try:
            pub.send(
                [
                    ("sensors/acme/bin-00001/up", b"\x00\xff not json \x00"),
                    (f"sensors/acme/{'x' * 500}/up", b"{}"),
                    ("sensors/acme/bin-00001/up", json.dumps({"ts": now_ms, "fill": 12.5})),
                ]
            )
        finally:
            pub.close()
        hub.wait_stored(1)
        # ...and still takes readings afterwards (before: disconnected, nothing logged).
        pub = Publisher(private_broker.host, private_broker.port, "pg-after")
        try:
            pub.send([("sensors/acme/bin-00001/up", json.dumps({"ts": now_ms + 1, "fill": 13}))])
        finally:
            pub.close()
        hub.wait_stored(2)
        status = hub.health()
        assert status["broker_connected"] is True
        assert status["dead_letters"] == 2
        assert status["codec_bugs"] == 0
        assert hub.http.get("/api/v1/rejects").json()["total"] == 2
    finally:
        hub.stop()
