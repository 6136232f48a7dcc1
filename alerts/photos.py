"""Photos that units send with their reports: checked, then kept as files under the hub's data directory.

A photo is kept only if it is a JPEG, PNG or WebP picture by its first bytes (the declared content
type must agree: a client's word alone is not trusted) and no larger than the configured limit. The
file is named by its SHA-256, in a directory per incident, and written atomically (temporary file,
then rename), so a crash never leaves half a picture, and the same picture sent twice is one file.
"""

from __future__ import annotations

import hashlib
import os
import tempfile
from pathlib import Path

from alerts.errors import PhotoRejectedError
from alerts.incident_records import NewPhoto, Photo

_EXT = {"image/jpeg": "jpg", "image/png": "png", "image/webp": "webp"}


def sniff(data: bytes) -> str | None:
    """The picture type of ``data`` by its magic bytes: image/jpeg, image/png, image/webp, or None."""
    if data[:3] == b"\xff\xd8\xff":
        return "image/jpeg"
    if data[:8] == b"\x89PNG\r\n\x1a\n":
        return "image/png"
    if data[:4] == b"RIFF" and data[8:12] == b"WEBP":
        return "image/webp"
    return None


class PhotoStore:
    """Checks and keeps photos in ``root/<incident id>/<sha256>.<ext>``."""

    def __init__(self, root: Path, *, max_bytes: int) -> None:
        """Keep photos under ``root`` (made on first use)."""
        self.root = root
        self.max_bytes = max_bytes

    def check(self, data: bytes, declared: str | None) -> str:
        """The content type of an acceptable photo.

        Raises:
            PhotoRejectedError: too large (413), or not a JPEG/PNG/WebP picture, or declared as
                another type than it is (415).
        """
        if len(data) > self.max_bytes:
            msg = f"photo of {len(data)} bytes: the limit is {self.max_bytes}"
            raise PhotoRejectedError(msg, too_large=True)
        kind = sniff(data)
        if kind is None:
            msg = "not a JPEG, PNG or WebP picture"
            raise PhotoRejectedError(msg, too_large=False)
        declared = (declared or "").split(";")[0].strip().lower()
        if declared and declared not in ("application/octet-stream", kind):
            msg = f"declared {declared}, but the data is {kind}"
            raise PhotoRejectedError(msg, too_large=False)
        return kind

    def save(
        self, incident_id: int, data: bytes, declared: str | None, caption: str = ""
    ) -> NewPhoto:
        """Check and write a photo; what to record with the report (see `check` for errors)."""
        kind = self.check(data, declared)
        digest = hashlib.sha256(data).hexdigest()
        name = f"{digest}.{_EXT[kind]}"
        folder = self.root / str(incident_id)
        folder.mkdir(parents=True, exist_ok=True)
        path = folder / name
        if not path.exists():
            fd, tmp = tempfile.mkstemp(dir=folder, prefix=".upload-")
            try:
                with os.fdopen(fd, "wb") as f:
                    f.write(data)
                Path(tmp).replace(path)
            except BaseException:
                Path(tmp).unlink(missing_ok=True)
                raise
        return NewPhoto(
            content_type=kind, size=len(data), sha256=digest, name=name, caption=caption
        )

    def path(self, photo: Photo) -> Path:
        """Where ``photo``'s file is."""
        return self.root / str(photo.incident_id) / photo.name

    def read(self, photo: Photo) -> bytes | None:
        """The photo's bytes, or None when its file is gone."""
        try:
            return self.path(photo).read_bytes()
        except OSError:
            return None
