"""Request body limits, applied before any route reads a body: size (413) and JSON nesting depth (400).

An API that reads whatever it is sent can be made to hold gigabytes, or to recurse until Python gives
up, by one request. This ASGI middleware refuses a body over its limit from its ``Content-Length``
alone, before reading a byte of it; a body without one (chunked) is counted as it streams in and
refused as soon as it passes the limit. JSON bodies are also refused when they nest deeper than any
of the hub's own documents (a rule, a profile, a GeoJSON area are a handful of levels): the depth is
counted over the raw bytes with numpy before the route's parser sees them.

Most routes take small JSON documents (1 MiB is far more than any needs); bulk imports and photo
uploads (``multipart/form-data``) take up to ``upload_bytes``. Refusals are RFC 9457 problems, as
every other error of the hub.
"""

from __future__ import annotations

import json
import re
from collections.abc import Sequence

import numpy as np
from starlette.exceptions import HTTPException
from starlette.types import ASGIApp, Message, Receive, Scope, Send

PROBLEM = "application/problem+json"
BODY_BYTES = 1024 * 1024
UPLOAD_BYTES = 64 * 1024 * 1024
JSON_DEPTH = 32
# Routes whose bodies are files people upload: CSV or JSON lists of devices, cameras, reports.
UPLOAD_PATHS = (
    r"/api/v1/devices/bulk",
    r"/api/v1/cameras/bulk",
    r"/api/v1/reports/import",
)

_STRING = re.compile(rb'"(?:[^"\\]|\\.)*"', re.DOTALL)
_OPEN = np.zeros(256, dtype=np.int8)
_OPEN[[ord("["), ord("{")]] = 1
_OPEN[[ord("]"), ord("}")]] = -1


class BodyTooLargeError(HTTPException):
    """A body that streamed past its limit (raised inside the route's read; the app answers 413)."""

    def __init__(self, limit: int) -> None:
        super().__init__(413, f"request body is over the {limit}-byte limit")


def json_depth(body: bytes) -> int:
    """How deep the arrays and objects of a JSON text nest (brackets inside strings do not count)."""
    if b"[" not in body and b"{" not in body:
        return 0
    stripped = _STRING.sub(b'""', body)
    steps = _OPEN[np.frombuffer(stripped, dtype=np.uint8)]
    if not steps.any():
        return 0
    return int(np.cumsum(steps, dtype=np.int64).max())


class BodyLimit:
    """ASGI middleware: the size limit of every request body, and the depth limit of JSON ones."""

    def __init__(
        self,
        app: ASGIApp,
        *,
        body_bytes: int = BODY_BYTES,
        upload_bytes: int = UPLOAD_BYTES,
        json_depth: int = JSON_DEPTH,
        upload_paths: Sequence[str] = UPLOAD_PATHS,
    ) -> None:
        """Wrap ``app``; ``upload_paths`` are regular expressions matched against the whole path."""
        self.app = app
        self.body_bytes = body_bytes
        self.upload_bytes = upload_bytes
        self.json_depth = json_depth
        self._uploads = re.compile("|".join(f"(?:{p})" for p in upload_paths) or "(?!)")

    def limit_for(self, path: str, content_type: str) -> int:
        """The largest body accepted on ``path`` with ``content_type``."""
        if content_type.startswith("multipart/form-data") or self._uploads.fullmatch(path):
            return self.upload_bytes
        return self.body_bytes

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        """Check the body's size (and a JSON body's depth) before the app reads it."""
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        headers = {k.decode("latin-1").lower(): v.decode("latin-1") for k, v in scope["headers"]}
        content_type = headers.get("content-type", "").lower()
        limit = self.limit_for(scope["path"], content_type)
        declared = headers.get("content-length")
        if declared is not None:
            try:
                size = int(declared)
            except ValueError:
                await _refuse(send, scope, 400, "Bad request", "Content-Length is not a number")
                return
            if size > limit:
                detail = f"request body of {size} bytes is over the {limit}-byte limit"
                await _refuse(send, scope, 413, "Payload too large", detail)
                return
        if _is_json(content_type):
            body = await _read(receive, limit)
            if body is None:
                detail = f"request body is over the {limit}-byte limit"
                await _refuse(send, scope, 413, "Payload too large", detail)
                return
            depth = json_depth(body)
            if depth > self.json_depth:
                detail = f"JSON nested {depth} levels deep; the limit is {self.json_depth}"
                await _refuse(send, scope, 400, "Bad request", detail)
                return
            await self.app(scope, _replay(body, receive), send)
            return
        await self.app(scope, _counting(receive, limit), send)


def _is_json(content_type: str) -> bool:
    media = content_type.split(";", 1)[0].strip()
    return media == "application/json" or media.endswith("+json")


async def _read(receive: Receive, limit: int) -> bytes | None:
    """The whole body, or None as soon as it passes ``limit`` (the rest is never read)."""
    chunks: list[bytes] = []
    size = 0
    while True:
        message = await receive()
        if message["type"] != "http.request":
            return b"".join(chunks)  # the client went away; the app sees an empty or partial body
        chunk: bytes = message.get("body", b"")
        size += len(chunk)
        if size > limit:
            return None
        chunks.append(chunk)
        if not message.get("more_body", False):
            return b"".join(chunks)


def _replay(body: bytes, receive: Receive) -> Receive:
    sent = False

    async def replay() -> Message:
        nonlocal sent
        if not sent:
            sent = True
            return {"type": "http.request", "body": body, "more_body": False}
        return await receive()  # http.disconnect, when the client goes

    return replay


def _counting(receive: Receive, limit: int) -> Receive:
    size = 0

    async def counting() -> Message:
        nonlocal size
        message = await receive()
        if message["type"] == "http.request":
            size += len(message.get("body", b""))
            if size > limit:
                raise BodyTooLargeError(limit)
        return message

    return counting


async def _refuse(send: Send, scope: Scope, status: int, title: str, detail: str) -> None:
    body = json.dumps(
        {
            "type": "about:blank",
            "title": title,
            "status": status,
            "detail": detail,
            "instance": scope["path"],
        }
    ).encode()
    await send(
        {
            "type": "http.response.start",
            "status": status,
            # The body was not read: the connection cannot carry another request.
            "headers": [
                (b"content-type", PROBLEM.encode()),
                (b"content-length", str(len(body)).encode()),
                (b"connection", b"close"),
            ],
        }
    )
    await send({"type": "http.response.body", "body": body})
