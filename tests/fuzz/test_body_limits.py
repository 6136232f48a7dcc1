"""Oversized and deeply nested request bodies are refused before a route reads them (hub/limits.py)."""

from __future__ import annotations

import socket
import time

import pytest

from hub.limits import BODY_BYTES, JSON_DEPTH, UPLOAD_BYTES, BodyLimit, json_depth
from tests.hub.conftest import ServedHub

pytestmark = pytest.mark.broker

RULE = {"id": "deep", "kind": "threshold", "metric": "water_level", "levels": {"red": 5}}


def assert_problem(r, status: int, text: str) -> None:
    assert r.status_code == status, r.text
    assert r.headers["content-type"].startswith("application/problem+json")
    body = r.json()
    assert body["status"] == status
    assert text in body["detail"]


@pytest.mark.parametrize(
    ("text", "depth"),
    [
        (b"", 0),
        (b"1", 0),
        (b"[]", 1),
        (b'{"a": [1, {"b": []}]}', 4),
        (b'["[[[[", "{{{{"]', 1),  # brackets in strings do not count
        (b'["\\"[[[["]', 1),  # nor after an escaped quote
        (b"[" * 5000 + b"]" * 5000, 5000),
    ],
)
def test_json_depth(text, depth):
    assert json_depth(text) == depth


def test_limits_by_route_and_content_type():
    limits = BodyLimit(lambda s, r, send: None)  # type: ignore[arg-type,return-value]
    assert limits.limit_for("/api/v1/rules", "application/json") == BODY_BYTES
    assert limits.limit_for("/api/v1/devices/bulk", "text/csv") == UPLOAD_BYTES
    assert limits.limit_for("/api/v1/devices/bulk/x", "text/csv") == BODY_BYTES
    assert (
        limits.limit_for("/api/v1/incidents/1/progress", "multipart/form-data; b=x") == UPLOAD_BYTES
    )


def test_a_declared_size_over_the_limit_is_refused_before_the_body_is_sent(hub: ServedHub):
    token = hub.http.headers["Authorization"]
    host, port = hub.settings.http.host, hub.settings.http.port
    with socket.create_connection((host, port), timeout=5) as sock:
        sock.sendall(
            b"POST /api/v1/rules HTTP/1.1\r\nHost: hub\r\nContent-Type: application/json\r\n"
            + f"Authorization: {token}\r\nContent-Length: {100 * 1024 * 1024}\r\n\r\n".encode()
        )
        started = time.monotonic()
        answer = sock.recv(65536)  # not one byte of the 100 MiB was sent
        assert time.monotonic() - started < 5
    head, _, body = answer.partition(b"\r\n\r\n")
    assert head.startswith(b"HTTP/1.1 413")
    assert b"application/problem+json" in head
    assert b"over the 1048576-byte limit" in body


def test_a_chunked_json_body_over_the_limit_is_413(hub: ServedHub):
    def chunks():
        yield b'{"id": "x", "description": "'
        for _ in range(40):
            yield b"x" * 65536  # 2.5 MiB in all, no Content-Length
        yield b'"}'

    r = hub.http.post(
        "/api/v1/rules", content=chunks(), headers={"content-type": "application/json"}
    )
    assert_problem(r, 413, "over the 1048576-byte limit")


def test_a_chunked_binary_body_over_the_limit_is_413(hub: ServedHub):
    def chunks():
        for _ in range(40):
            yield b"\0" * 65536

    r = hub.http.post(
        "/api/v1/profiles/acme-bin/decode",
        content=chunks(),
        headers={"content-type": "application/octet-stream"},
    )
    assert_problem(r, 413, "over the 1048576-byte limit")


@pytest.mark.parametrize("depth", [JSON_DEPTH + 1, 1000, 100_000])
def test_deep_json_is_refused_unparsed(hub: ServedHub, depth):
    body = b'{"rules": ' + b"[" * depth + b"]" * depth + b"}"
    r = hub.http.post("/api/v1/rules", content=body, headers={"content-type": "application/json"})
    assert_problem(r, 400, f"JSON nested {depth + 1} levels deep; the limit is {JSON_DEPTH}")


def test_ordinary_bodies_still_reach_their_routes(hub: ServedHub):
    r = hub.http.post("/api/v1/rules/validate", json=RULE)
    assert r.status_code == 200, r.text
    # A 2 MiB CSV is over the JSON limit but a bulk import may be that large: it gets parsed.
    name = b"n" * 100
    csv = b"id,profile,vendor,name\n" + b"".join(
        b"big-%05d,acme-bin,acme,%s\n" % (i, name) for i in range(9000)
    )
    assert len(csv) > BODY_BYTES
    r = hub.http.post(
        "/api/v1/devices/bulk", content=csv, headers={"content-type": "text/csv"}, timeout=120
    )
    assert r.status_code == 200, r.text[:500]
    assert r.json()["created"] == 9000, r.json()["errors"][:3]
