"""The websocket route ``/ws/situation`` (hello, auth, filters, close codes) and the feed's status route.

Browsers cannot set headers on a websocket, so the token comes in the first message (the hello), and
refusals are close codes after the handshake: 4400 malformed, 4401 bad token, 4403 forbidden filter,
4408 too slow. The connection runs two tasks: the screen's sender (`FeedClient.pump`) and a reader
for its later hello and filter messages; the first to end, or the feed declaring the screen too slow,
ends the connection.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time
from typing import Annotated, Any

import msgspec
from fastapi import APIRouter, Depends, Request, WebSocket
from starlette.websockets import WebSocketDisconnect

from devices.access import Authenticator, Principal, StaffOnly
from hub.feed import SituationFeed
from hub.feed_clients import TOO_SLOW, TOO_SLOW_REASON, FeedClient
from hub.feed_frames import Filter, FilterError, FilterWire

logger = logging.getLogger(__name__)

HELLO_TIMEOUT_S = 10.0
REFILTER_S = 0.5
CLOSE_TIMEOUT_S = 10.0
"""How long a close may wait behind a full socket before the connection is just dropped."""

BAD_REQUEST, UNAUTHORISED = 4400, 4401


class Hello(msgspec.Struct, tag="hello", tag_field="type"):
    """The first message: who the screen is, where it was, what it wants."""

    token: str
    since: int | None = None
    filter: FilterWire | None = None


class FilterMessage(msgspec.Struct, tag="filter", tag_field="type"):
    """A new filter on an open connection: answered with a fresh snapshot."""

    filter: FilterWire | None = None


_decoder = msgspec.json.Decoder(Hello | FilterMessage)


class RefusedError(Exception):
    """End the connection with a close code."""

    def __init__(self, code: int, reason: str) -> None:
        """Close with ``code`` and ``reason``."""
        super().__init__(reason)
        self.code = code
        self.reason = reason


router = APIRouter(tags=["situation"])


def _feed(request: Request) -> SituationFeed:
    feed: SituationFeed = request.app.state.components.feed
    return feed


FeedDep = Annotated[SituationFeed, Depends(_feed)]


@router.get(
    "/api/v1/feed/status", summary="Screens on the situation feed, its streams and counters"
)
def feed_status(feed: FeedDep, _: StaffOnly) -> dict[str, Any]:
    """What the websocket feed is doing: who watches which stream, queues, frames, slow closes."""
    return feed.status()


def _decode(text: str | bytes | None) -> Hello | FilterMessage:
    if text is None:
        raise RefusedError(BAD_REQUEST, "send JSON text frames")
    try:
        return _decoder.decode(text)
    except msgspec.DecodeError as exc:
        raise RefusedError(BAD_REQUEST, f"not a hello or filter message: {exc}"[:120]) from None


def _hello(message: Hello | FilterMessage) -> Hello:
    if not isinstance(message, Hello):
        raise RefusedError(BAD_REQUEST, "the first message must be a hello")
    return message


async def _authenticate(websocket: WebSocket, token: str) -> Principal:
    authenticator: Authenticator = websocket.app.state.authenticator
    principal = await asyncio.to_thread(authenticator.authenticate, token)
    if principal is None:
        raise RefusedError(UNAUTHORISED, "the token is unknown, expired or revoked: log in again")
    return principal


def _parse_filter(wire: FilterWire | None, principal: Principal) -> Filter:
    try:
        return Filter.parse(wire, principal)
    except FilterError as exc:
        raise RefusedError(exc.code, exc.reason) from None


async def _next_message(websocket: WebSocket) -> Hello | FilterMessage | None:
    """The screen's next message, or None when it disconnected."""
    message = await websocket.receive()
    if message["type"] == "websocket.disconnect":
        return None
    return _decode(message.get("text") or message.get("bytes"))


async def _follow(
    websocket: WebSocket, feed: SituationFeed, client: FeedClient, principal: Principal
) -> None:
    """Read hello and filter messages after the first, until the screen leaves.

    A new filter costs a snapshot, so one screen gets at most one every `REFILTER_S`; messages
    sent faster wait their turn (TCP holds them: uvicorn reads the next one only when asked).
    """
    while (message := await _next_message(websocket)) is not None:
        started = time.monotonic()
        if isinstance(message, Hello):
            principal = await _authenticate(websocket, message.token)
            await feed.join(client, _parse_filter(message.filter, principal), message.since)
        else:
            await feed.join(client, _parse_filter(message.filter, principal), None)
        await asyncio.sleep(max(0.0, REFILTER_S - (time.monotonic() - started)))


async def _close(websocket: WebSocket, code: int, reason: str) -> None:
    with contextlib.suppress(Exception):
        await asyncio.wait_for(websocket.close(code, reason), CLOSE_TIMEOUT_S)


@router.websocket("/ws/situation")
async def situation(websocket: WebSocket) -> None:
    """The situation feed: a hello, then a snapshot (or the frames missed), then deltas."""
    feed: SituationFeed = websocket.app.state.components.feed
    await websocket.accept()
    try:
        async with asyncio.timeout(HELLO_TIMEOUT_S):
            message = await _next_message(websocket)
        if message is None:
            return
        hello = _hello(message)
        principal = await _authenticate(websocket, hello.token)
        filt = _parse_filter(hello.filter, principal)
    except TimeoutError:
        await _close(websocket, BAD_REQUEST, "send a hello first")
        return
    except RefusedError as exc:
        await _close(websocket, exc.code, exc.reason)
        return
    except WebSocketDisconnect:
        return
    client = feed.client(principal.user)
    try:
        await feed.join(client, filt, hello.since)
        await _serve(websocket, feed, client, principal)
    finally:
        feed.leave(client)


async def _serve(
    websocket: WebSocket, feed: SituationFeed, client: FeedClient, principal: Principal
) -> None:
    sender = asyncio.create_task(client.pump(websocket.send_text), name=f"feed.send.{client.id}")
    reader = asyncio.create_task(
        _follow(websocket, feed, client, principal), name=f"feed.read.{client.id}"
    )
    slow = asyncio.create_task(client.too_slow.wait(), name=f"feed.slow.{client.id}")
    try:
        done, _ = await asyncio.wait({sender, reader, slow}, return_when=asyncio.FIRST_COMPLETED)
    finally:
        feed.leave(client)
        for task in (sender, reader, slow):
            task.cancel()
        await asyncio.gather(sender, reader, slow, return_exceptions=True)
    if slow in done:
        feed.too_slow(client)
        await _close(websocket, TOO_SLOW, TOO_SLOW_REASON)
        return
    if reader in done and not reader.cancelled():
        exc = reader.exception()
        if isinstance(exc, RefusedError):
            await _close(websocket, exc.code, exc.reason)
        elif exc is not None and not isinstance(exc, WebSocketDisconnect):
            logger.error("situation feed: reading from screen %s failed: %r", client.id, exc)
            await _close(websocket, 1011, "internal error")
    elif sender in done and not sender.cancelled():
        exc = sender.exception()
        if exc is not None and not isinstance(exc, WebSocketDisconnect | OSError):
            logger.error("situation feed: sending to screen %s failed: %r", client.id, exc)
            await _close(websocket, 1011, "internal error")
