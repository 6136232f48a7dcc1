"""A camera check asked of an api node, carried out by the video node over MQTT.

Only the video node opens streams (hub/camera_relay.py). A duty officer's "check now" on the command
screen reaches whichever api node the load balancer picked, so that node forwards it:

* the api node (`CheckForwarder`) publishes a `CheckRequest` on ``hub/cmd/cameras/check`` with a
  reply topic of its own (``hub/reply/{its client id}/cameras``) and waits for the answer;
* the video node (`CheckServer`) takes requests through the shared subscription
  ``$share/hub-video/hub/cmd/cameras/check`` (one video node answers, however many run), checks the
  camera as its own API would (the result is written to the shared status table and published on
  the camera relay as usual), and publishes a `CheckReply`;
* the api node then reads the camera's new status from the shared table and answers the request.

No answer within ``timeout_s`` (no video node running, or the broker away) is a 504 that says so.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import uuid
from collections.abc import Awaitable, Callable
from typing import Any

import msgspec
from fastapi import HTTPException

from devices.errors import DeviceError, NotFoundError
from video.errors import CameraNotFoundError

logger = logging.getLogger(__name__)

CHECK_TOPIC = "hub/cmd/cameras/check"
SHARED_CHECK_FILTER = f"$share/hub-video/{CHECK_TOPIC}"


class CheckRequest(msgspec.Struct, frozen=True):
    """Check ``camera`` now and answer on ``reply_to`` under ``id``."""

    id: str
    camera: str
    reply_to: str


class CheckReply(msgspec.Struct, frozen=True):
    """How a forwarded check went: ``status`` 200, or the HTTP status and text of its error."""

    id: str
    status: int = 200
    error: str = ""


class CheckForwarder:
    """An api node's side: forward checks and wait for the video node's replies."""

    def __init__(self, link: Callable[[], Any], client_id: str, *, timeout_s: float = 60.0) -> None:
        """Publish through ``link()``; replies come on a topic named after ``client_id``."""
        self._link = link
        self.reply_topic = f"hub/reply/{client_id}/cameras"
        self.timeout_s = timeout_s
        self._waiting: dict[str, asyncio.Future[CheckReply]] = {}
        self._loop: asyncio.AbstractEventLoop | None = None

    def subscriptions(self) -> list[tuple[str, int]]:
        """The reply topic (QoS 1)."""
        return [(self.reply_topic, 1)]

    def wants(self, topic: str) -> bool:
        """Whether a delivered message is a reply for this forwarder."""
        return topic == self.reply_topic

    def handle(self, payload: bytes) -> None:
        """A reply arrived (the MQTT network thread): wake its waiter on the event loop."""
        try:
            reply = msgspec.json.decode(payload, type=CheckReply)
        except (msgspec.DecodeError, msgspec.ValidationError):
            logger.warning("camera check reply did not decode: %r", payload[:200])
            return
        loop = self._loop
        if loop is not None and not loop.is_closed():
            loop.call_soon_threadsafe(self._settle, reply)

    def _settle(self, reply: CheckReply) -> None:
        waiter = self._waiting.get(reply.id)
        if waiter is not None and not waiter.done():
            waiter.set_result(reply)

    async def check(self, camera_id: str) -> None:
        """Have the video node check ``camera_id``; returns once it has recorded the result.

        Raises:
            NotFoundError: the video node does not know the camera.
            HTTPException: 504 when no video node answered in time; the video node's own error
                status otherwise.
        """
        self._loop = asyncio.get_running_loop()
        request = CheckRequest(uuid.uuid4().hex, camera_id, self.reply_topic)
        waiter: asyncio.Future[CheckReply] = self._loop.create_future()
        self._waiting[request.id] = waiter
        try:
            self._link().publish(CHECK_TOPIC, msgspec.json.encode(request), 1)
            reply = await asyncio.wait_for(waiter, self.timeout_s)
        except TimeoutError as exc:
            detail = (
                f"no video node answered the check of camera {camera_id} within "
                f"{self.timeout_s:.0f} s (is a node running with --role video?)"
            )
            raise HTTPException(504, detail) from exc
        finally:
            self._waiting.pop(request.id, None)
        if reply.status == 404:
            raise CameraNotFoundError(camera_id)
        if reply.status != 200:
            raise HTTPException(reply.status, reply.error)


class CheckServer:
    """The video node's side: check cameras on request and reply."""

    def __init__(
        self, link: Callable[[], Any], check_now: Callable[[str], Awaitable[object]]
    ) -> None:
        """Reply through ``link()``; ``check_now`` is the patrol's (looked up when a request comes)."""
        self._link = link
        self._check_now = check_now
        self._loop: asyncio.AbstractEventLoop | None = None
        self._tasks: set[asyncio.Task[None]] = set()
        self.served = 0

    def subscriptions(self) -> list[tuple[str, int]]:
        """The requests, shared among video nodes (one answers)."""
        return [(SHARED_CHECK_FILTER, 1)]

    def wants(self, topic: str) -> bool:
        """Whether a delivered message is a check request."""
        return topic == CHECK_TOPIC

    async def run(self) -> None:
        """Serve requests on this event loop until cancelled (the ``video.commands`` task)."""
        self._loop = asyncio.get_running_loop()
        try:
            await asyncio.Event().wait()
        finally:
            self._loop = None
            for task in list(self._tasks):
                task.cancel()

    def handle(self, payload: bytes) -> None:
        """A request arrived (the MQTT network thread): serve it on the event loop."""
        try:
            request = msgspec.json.decode(payload, type=CheckRequest)
        except (msgspec.DecodeError, msgspec.ValidationError):
            logger.warning("camera check request did not decode: %r", payload[:200])
            return
        loop = self._loop
        if loop is not None and not loop.is_closed():
            loop.call_soon_threadsafe(self._start, request)

    def _start(self, request: CheckRequest) -> None:
        task = asyncio.ensure_future(self._serve(request))
        self._tasks.add(task)
        task.add_done_callback(self._tasks.discard)

    async def _serve(self, request: CheckRequest) -> None:
        reply = CheckReply(request.id)
        try:
            await self._check_now(request.camera)
        except NotFoundError as exc:
            reply = CheckReply(request.id, 404, str(exc))
        except (DeviceError, OSError, RuntimeError) as exc:
            logger.exception("forwarded check of camera %s failed", request.camera)
            reply = CheckReply(request.id, 502, f"the video node's check failed: {exc}")
        self.served += 1
        with contextlib.suppress(Exception):  # a broker away: the forwarder times out and says so
            self._link().publish(request.reply_to, msgspec.json.encode(reply), 1)
