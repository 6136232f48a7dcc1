"""Hostile payloads through the real broker to a running hub (``python -m hub run``): 0 crashes.

The whole run of ``bench/_faults_hostile.py`` at a smaller count (the bench sends 100,000), then
one message of each kind of mutation with the reason its dead letter must give.
"""

from __future__ import annotations

import contextlib
import random
import tempfile
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

from bench import _faults_hostile as hostile
from bench._broker import BenchBroker
from bench._rawpub import RawPublisher

pytestmark = [pytest.mark.broker, pytest.mark.slow]

PAYLOADS = 5000


def test_hostile_stream_crashes_nothing_and_every_reject_is_explained():
    figures = hostile.run(["--fuzz-payloads", str(PAYLOADS), "--api-examples", "0"])
    assert figures["fuzz_payloads"] == PAYLOADS
    assert figures["fuzz_lost_messages"] == 0
    assert figures["fuzz_crashes"] == 0
    assert figures["fuzz_unexplained"] == 0
    # The mix rejects most messages and keeps some readings (the valid and partly valid ones).
    assert figures["fuzz_rejects"] >= figures["fuzz_rejected_messages"] > PAYLOADS / 2
    assert figures["fuzz_readings_stored"] > 0


@pytest.fixture(scope="module")
def running() -> Iterator[tuple[hostile.HubProcess, list[tuple[str, bytes]], int]]:
    devices, corpus = hostile.valid_corpus(60)
    with BenchBroker() as broker, tempfile.TemporaryDirectory(prefix="fuzz-hub-") as tmp:
        hostile.register_city(Path(tmp), devices)
        hub = hostile.HubProcess(Path(tmp), broker.port)
        try:
            yield hub, corpus, broker.port
        finally:
            hub.stop()


def _one(corpus: list[tuple[str, bytes]], prefix: str) -> tuple[str, bytes]:
    return next((t, p) for t, p in corpus if t.split("/")[2].startswith(prefix))


# (mutation, device id prefix, reasons its dead letter may give, words its detail must hold)
CASES = [
    ("deep_nesting", "mc-", {"malformed_json"}, "nested too deeply"),
    ("deep_nesting", "wl-", {"wrong_type"}, "not a SenML pack"),
    ("oversized", "gs-", {"oversized"}, "-byte limit"),
    ("truncate", "rr-", {"malformed_json"}, "not JSON"),
    ("wrong_encoding", "bn-", {"malformed_json"}, "not JSON"),
    ("random_bytes", "tgw-", {"malformed_json"}, "not JSON"),
]


@pytest.mark.parametrize(("kind", "prefix", "reasons", "words"), CASES)
def test_each_kind_of_hostile_payload_leaves_a_dead_letter_with_its_reason(
    running, kind, prefix, reasons, words
):
    hub, corpus, port = running
    topic, valid = _one(corpus, prefix)
    device = topic.split("/")[2]
    rng = random.Random(3)
    payload = hostile.MUTATIONS[kind](rng, valid)
    if kind == "truncate":
        payload = valid[: len(valid) // 2]
    if kind == "deep_nesting":
        payload = b"[" * 10_000 + valid + b"]" * 10_000
    if kind == "wrong_encoding":
        payload = valid.decode().encode("utf-16")
    if kind == "random_bytes":
        payload = b"\xff\x00garbage\x80"
    before = hub.http.get("/api/v1/rejects", params={"device": device}).json()["total"]
    pub = RawPublisher("127.0.0.1", port, f"case-{kind}-{prefix}")
    try:
        pub.send([pub.packet(topic.encode(), payload)])
        deadline = time.monotonic() + 10
        while True:
            page = hub.http.get("/api/v1/rejects", params={"device": device}).json()
            if page["total"] > before:
                break
            assert time.monotonic() < deadline, f"no dead letter for {kind}"
            time.sleep(0.05)
    finally:
        pub.close()
    letter = page["items"][0]
    assert letter["reason"] in reasons, letter
    assert words in letter["detail"], letter
    status = hub.status()
    assert status["codec_bugs"] == 0
    assert status["handler_errors"] == 0
    assert hub.alive


def test_a_packet_over_the_broker_limit_never_reaches_the_hub(running):
    hub, corpus, port = running
    before = hub.status()["messages"]
    topic, _ = _one(corpus, "mc-")
    pub = RawPublisher("127.0.0.1", port, "too-big")
    try:
        # Mosquitto may close the connection while the packet is still being written.
        with contextlib.suppress(OSError):
            pub.send([pub.packet(topic.encode(), b" " * (hostile.BROKER_MAX_PACKET + 1))])
        time.sleep(1)
        assert pub.acked == 0  # Mosquitto refuses it (max_packet_size) and drops the connection
    finally:
        pub.close()
        pub.sock.close()  # close() skips it when the broker has already reset the connection
    assert hub.alive
    assert hub.status()["messages"] == before
