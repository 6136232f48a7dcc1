"""Cameras on the situation feed (``/ws/situation``): in the snapshot, and their changes as deltas."""

from __future__ import annotations

import asyncio
import json
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

from websockets.asyncio.client import ClientConnection, connect

from devices.access import Role
from devices.users import UserStore
from hub.feed_snapshot import CameraText
from hub.video_wiring import FeedCameras
from tests.hub.conftest import ServedHub
from tests.video.conftest import FAST, make_fleet
from tests.video.scenes import Segment
from tests.video.streams import MjpegServer, Stream
from video.cameras import Camera
from video.diagnose import FindingKind
from video.history import CameraStatus
from video.status import CameraState, Track

PASSWORD = "a long enough password"


async def open_feed(hub: ServedHub, token: str) -> ClientConnection:
    ws = await connect(f"ws://127.0.0.1:{hub.settings.http.port}/ws/situation")
    await ws.send(json.dumps({"type": "hello", "token": token, "since": None, "filter": None}))
    return ws


async def next_frame(
    ws: ClientConnection, wanted: Callable[[dict[str, Any]], bool], within: float = 15
) -> dict[str, Any]:
    deadline = time.monotonic() + within
    while True:
        left = deadline - time.monotonic()
        assert left > 0, "no wanted frame"
        frame: dict[str, Any] = json.loads(await asyncio.wait_for(ws.recv(), left))
        if wanted(frame):
            return frame


async def test_camera_states_reach_the_screens(
    hub: ServedHub, mjpeg: MjpegServer, segment_jpegs: dict[Segment, list[bytes]]
) -> None:
    url = mjpeg.add("/black.mjpg", Stream(segment_jpegs[Segment.BLACK]))
    r = hub.http.post(
        "/api/v1/cameras",
        json={"id": "cam-bund", "url": url, "lat": 31.24, "lon": 121.49, "area": "sh/huangpu/bund"},
    )
    assert r.status_code == 201, r.text
    token = hub.http.headers["Authorization"].split()[1]
    ws = await open_feed(hub, token)
    snapshot = await next_frame(ws, lambda f: f["type"] == "snapshot")
    assert snapshot["type"] == "snapshot"
    (cam,) = snapshot["cameras"]
    assert (cam["id"], cam["status"], cam["area"]) == ("cam-bund", "unknown", "sh/huangpu/bund")
    assert "url" not in cam  # the stream's address stays in the hub
    for _ in range(2):  # raise_after=2: the second black check confirms the finding
        check = await asyncio.to_thread(hub.http.post, "/api/v1/cameras/cam-bund/check", timeout=60)
        assert check.status_code == 200, check.text
    # The first check made it "ok" (seen, not confirmed), the second "fault". The registration's
    # own "unknown" may reach the feed after the snapshot was taken: it says nothing new.
    seen: list[dict[str, Any]] = []
    while not seen or seen[-1]["status"] != "fault":
        frame = await next_frame(ws, lambda f: bool(f.get("cameras")))
        seen += [c for c in frame["cameras"] if c["status"] != "unknown"]
    await ws.close()
    assert seen == [
        {"id": "cam-bund", "status": "ok", "findings": []},
        {"id": "cam-bund", "status": "fault", "findings": ["black"]},
    ]


async def test_a_vendor_screen_shows_no_city_camera(hub: ServedHub) -> None:
    r = hub.http.post(
        "/api/v1/cameras",
        json={"id": "cam-1", "url": "rtsp://127.0.0.1:9/x", "lat": 31.2, "lon": 121.4},
    )
    assert r.status_code == 201
    UserStore(hub.settings.registry).create_user(
        "acme-ops", Role.VENDOR, vendor="acme", password=PASSWORD
    )
    client = hub.client("acme-ops", PASSWORD)
    ws = await open_feed(hub, client.headers["Authorization"].split()[1])
    snapshot: dict[str, Any] = json.loads(await asyncio.wait_for(ws.recv(), 10))
    await ws.close()
    assert snapshot["type"] == "snapshot"
    assert snapshot.get("cameras", []) == []


def test_feed_entries_follow_every_change_and_are_made_once_otherwise(tmp_path: Path) -> None:
    """The feed's camera source keeps each entry while its camera and stored status stay the same."""
    fleet = make_fleet(tmp_path, FAST)
    a = Camera(id="cam-a", url="rtsp://127.0.0.1:9/a", area="sh/huangpu")
    b = Camera(id="cam-b", url="rtsp://127.0.0.1:9/b", area="sh/xuhui")
    fleet.registry.put([a, b])
    source = FeedCameras(fleet)
    first = source.cameras()
    assert [(e["id"], e["status"]) for e in first] == [("cam-a", "unknown"), ("cam-b", "unknown")]
    again = source.cameras()
    # Nothing changed: nothing made again.
    assert again[0] is first[0]
    assert again[1] is first[1]

    # A confirmed finding: the stored status is replaced (statuses are frozen).
    fleet.statuses["cam-a"] = CameraStatus(
        "cam-a", state=CameraState.FAULT, track=Track(active=frozenset({FindingKind.BLACK}))
    )
    after_finding = source.cameras()
    assert (after_finding[0]["status"], after_finding[0]["findings"]) == ("fault", ["black"])
    assert after_finding[1] is first[1]

    # The camera edited (disabled, moved): its entry follows the new camera.
    fleet.registry.replace(b.model_copy(update={"enabled": False, "area": "sh/minhang"}))
    after_edit = source.cameras()
    assert (after_edit[1]["status"], after_edit[1]["area"]) == ("disabled", "sh/minhang")
    assert after_edit[0] is after_finding[0]

    # Removed: gone from the list, and its entry is not kept.
    fleet.registry.delete("cam-a")
    assert [e["id"] for e in source.cameras()] == ["cam-b"]
    assert list(source._entries) == ["cam-b"]


def test_camera_text_is_encoded_again_only_for_another_list() -> None:
    text = CameraText()
    cameras = [{"id": "cam-a", "status": "ok", "findings": []}]
    first = text(cameras)
    assert text(list(cameras)) is first  # the same entries: the kept text
    changed = text([{"id": "cam-a", "status": "fault", "findings": ["black"]}])
    assert changed is not first
    assert json.loads(bytes(changed)) == [{"id": "cam-a", "status": "fault", "findings": ["black"]}]
    assert json.loads(bytes(text([]))) == []
