"""Errors raised by the video package.

The leaves also derive from the device registry's errors (the shared vocabulary), so the hub's
RFC 9457 handlers answer them (404, 409, 422) without a handler of their own.
"""

from __future__ import annotations

from devices.errors import ConflictError, InvalidDefinitionError, NotFoundError


class VideoError(Exception):
    """Root of every error the video package raises on purpose."""


class CameraNotFoundError(VideoError, NotFoundError):
    """No such camera (404)."""

    def __init__(self, camera_id: str) -> None:
        NotFoundError.__init__(self, kind="camera", key=camera_id)


class SnapshotNotFoundError(VideoError, NotFoundError):
    """No such snapshot, or it has passed its retention (404)."""

    def __init__(self, camera_id: str, snapshot: str) -> None:
        NotFoundError.__init__(self, kind="snapshot", key=f"{camera_id}/{snapshot}")


class InvalidCameraError(VideoError, InvalidDefinitionError):
    """A camera definition or query that does not validate; the message names the field (422)."""


class CameraConflictError(VideoError, ConflictError):
    """The camera id is taken already (409)."""

    def __init__(self, camera_id: str) -> None:
        self.camera_id = camera_id
        super().__init__(f"camera {camera_id!r} is already registered")


class AlertLocationError(VideoError, NotFoundError):
    """An alert without a known place, so no camera can be near it (404)."""

    def __init__(self, alert_id: int) -> None:
        NotFoundError.__init__(self, kind="alert location", key=str(alert_id))
