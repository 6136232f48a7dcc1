"""Every codec, and the consumer in front of them, on hostile payloads: a batch or a readable rejection.

The codec contract (``ingest/codecs/base.py``) is that ``decode`` returns or raises `DecodeError` and
nothing else; the consumer turns anything else into a counted codec bug. These properties feed every
shipped profile's codec the strategies of `tests.fuzz.hostile` and require no codec bug, and a reason
from the stable list with a sentence a vendor can read for every rejection.
"""

from __future__ import annotations

from pathlib import Path

import pytest
import yaml
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

import devices.profiles
from devices.registry import Registry
from ingest.codecs import DecodeError, DecodeReason, RawMessage, build
from ingest.columns import ColumnBuilder
from ingest.consumer import Consumer, DecodeOptions
from tests.fuzz.hostile import deep, giant, hostile_payloads, mutated
from tests.strategies import RECEIVED_MS

PROFILES = sorted(
    p["id"]
    for p in yaml.safe_load(
        (Path(devices.profiles.__file__).parent / "data" / "profiles.yaml").read_text()
    )
)
REASONS = {str(r) for r in DecodeReason}
BUDGET = settings(
    max_examples=100,
    deadline=None,
    suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large],
)


def assert_readable(error: DecodeError) -> None:
    """A stable reason code and one sentence a vendor can read: not empty, not a dump."""
    assert str(error.reason) in REASONS
    assert isinstance(error.detail, str)
    assert error.detail.strip(), error
    assert len(error.detail) <= 1000, error.detail[:200]
    assert "Traceback" not in error.detail


def device_of(registry: Registry, profile: str) -> tuple[str, str]:
    """``(vendor, device)`` of an active test device of ``profile``."""
    for device_id, entry in registry.interner.devices.items():
        if entry.profile == profile and registry.device(device_id).status == "active":
            return entry.vendor, device_id
    pytest.skip(f"no test device of {profile}")


def decode_all(registry: Registry, profile: str, payload: bytes) -> None:
    vendor, device = device_of(registry, profile)
    codec = build(registry.profile(profile).codec)
    raw = RawMessage(
        topic=f"sensors/{vendor}/{device}/up",
        payload=payload,
        vendor=vendor,
        device_id=device,
        received_ms=RECEIVED_MS,
    )
    builder = ColumnBuilder(registry.interner, registry.profile)
    builder.begin(raw)
    try:
        codec.decode(raw, builder)  # anything but DecodeError fails the test
        builder.commit()
    except DecodeError as err:
        assert_readable(err)
        builder.rollback(err)
    batch, rejections = builder.take()
    for r in rejections:
        assert_readable(r.error)
    assert len(batch.device) == len(batch.value)


@pytest.mark.parametrize("profile", PROFILES)
@BUDGET
@given(payload=hostile_payloads)
def test_every_codec_is_total_on_hostile_payloads(fuzz_registry, profile, payload):
    decode_all(fuzz_registry, profile, payload)


@pytest.mark.parametrize("profile", PROFILES)
def test_a_deep_out_of_range_number_gets_a_short_reason(fuzz_registry, profile):
    """Found by the fuzzer: msgspec spelled the path of a number 500 arrays deep as ``[...]`` 500
    times, a 5,000-character reason for a vendor to read."""
    decode_all(fuzz_registry, profile, b"[" * 500 + b"1e999" + b"]" * 500)


@pytest.mark.parametrize("profile", PROFILES)
@settings(max_examples=10, deadline=None, suppress_health_check=list(HealthCheck))
@given(payload=deep() | giant())
def test_deep_and_giant_payloads_are_rejected_or_taken_whole(fuzz_registry, profile, payload):
    decode_all(fuzz_registry, profile, payload)


def _topics(registry: Registry) -> list[str]:
    out = []
    for device_id, entry in sorted(registry.interner.devices.items()):
        out.append(f"sensors/{entry.vendor}/{device_id}/up")
    return out


@BUDGET
@given(data=st.data())
def test_consumer_rejects_with_reasons_and_never_counts_a_codec_bug(fuzz_registry, data):
    consumer = Consumer(fuzz_registry, DecodeOptions(max_payload=64 * 1024))
    topics = _topics(fuzz_registry)
    sent = data.draw(
        st.lists(
            st.tuples(
                st.sampled_from(topics)
                | st.sampled_from(["sensors/acme/no-such/up", "sensors/trafix/wl-00001/up"])
                | st.sampled_from(topics).map(lambda t: t.replace("/up", "/status")),
                hostile_payloads | mutated(),
            ),
            min_size=1,
            max_size=8,
        )
    )
    for mid, (topic, payload) in enumerate(sent, start=1):
        consumer.handle(topic, payload, mid, 1)
    taken = consumer.take()
    assert consumer.counters.codec_bugs == 0
    assert taken.messages == len(sent)
    assert sorted(mid for mid, _ in taken.acks) == list(range(1, len(sent) + 1))
    for r in taken.rejections:
        assert_readable(r.error)
    # A message rejected whole leaves exactly one dead letter; parts leave one each.
    assert len(taken.rejections) >= consumer.counters.rejected_messages


def test_oversized_payload_is_refused_before_decoding(fuzz_registry):
    consumer = Consumer(fuzz_registry, DecodeOptions(max_payload=1024))
    consumer.handle("sensors/acme/mc-00001/up", b"[" * 5000 + b"]" * 5000, 1, 1)
    (rejection,) = consumer.take().rejections
    assert rejection.error.reason == DecodeReason.OVERSIZED
    assert rejection.error.detail == "payload of 10000 bytes is over the 1024-byte limit"


@pytest.mark.parametrize("profile", PROFILES)
def test_nesting_past_the_parser_limit_is_malformed_json_not_a_bug(fuzz_registry, profile):
    vendor, device = device_of(fuzz_registry, profile)
    consumer = Consumer(fuzz_registry)
    for mid, payload in enumerate(
        [b"[" * 100_000 + b"]" * 100_000, b'{"a":' * 40_000 + b"1" + b"}" * 40_000], start=1
    ):
        consumer.handle(f"sensors/{vendor}/{device}/up", payload, mid, 1)
    taken = consumer.take()
    assert consumer.counters.codec_bugs == 0
    assert [str(r.error.reason) for r in taken.rejections] in (
        ["malformed_json", "malformed_json"],
        ["wrong_type", "wrong_type"],  # SenML's typed decoder stops at the first non-record
    )
