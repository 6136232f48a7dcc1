"""The rule engine's checkpoint bytes: a JSON header and named numpy arrays, packed in one piece.

``np.savez`` wrote one zip member per array: a city's 50 rules are some 550 arrays, and zipfile's
per-member Python work made a 4.6 MB checkpoint cost ~45 ms of the interpreter's time, which the
ingest path then waited for. Here the arrays' bytes are joined after a JSON index (name, dtype,
shape, offset), so packing is one ``join`` and reading is one ``frombuffer`` per array, with no
pickles (dtypes are numpy's own strings; object arrays are refused).

Layout: ``MAGIC``, the index's length (8 bytes, little-endian), the index (UTF-8 JSON:
``{"header": ..., "arrays": [[name, dtype, shape, offset, nbytes], ...]}``), then the data. Files the
earlier format wrote (an ``.npz`` archive, starting ``PK``) are still read.
"""

from __future__ import annotations

import io
import json
import zipfile
from collections.abc import Mapping
from typing import Any

import numpy as np
from numpy.typing import NDArray

MAGIC = b"CITYHUB-RULESTATE\x01"


class StateFileError(ValueError):
    """Bytes that are not a checkpoint this module (or the earlier ``.npz`` format) wrote."""


def pack(header: Mapping[str, Any], arrays: Mapping[str, NDArray[Any]]) -> bytes:
    """One checkpoint: ``header`` (JSON-able) and ``arrays`` (no object dtypes)."""
    index: list[list[Any]] = []
    parts: list[bytes] = []
    offset = 0
    for name, arr in arrays.items():
        if arr.dtype.hasobject:
            msg = f"array {name!r} holds Python objects: not stored"
            raise StateFileError(msg)
        data = np.ascontiguousarray(arr).tobytes()
        index.append([name, arr.dtype.str, list(arr.shape), offset, len(data)])
        parts.append(data)
        offset += len(data)
    head = json.dumps({"header": header, "arrays": index}).encode()
    return b"".join([MAGIC, len(head).to_bytes(8, "little"), head, *parts])


class StateFile:
    """A checkpoint read back: its header and its arrays by name (each copied out on access)."""

    def __init__(self, blob: bytes) -> None:
        """Parse ``blob``.

        Raises:
            StateFileError: the bytes are not a checkpoint.
        """
        self._npz: Any = None
        self._index: dict[str, tuple[str, tuple[int, ...], int, int]] = {}
        if blob.startswith(b"PK"):  # the earlier format: an .npz archive with a "header" array
            try:
                self._npz = np.load(io.BytesIO(blob), allow_pickle=False)
                self.header: dict[str, Any] = json.loads(bytes(self._npz["header"]).decode())
            except (OSError, ValueError, KeyError, zipfile.BadZipFile) as exc:
                msg = f"not a rule engine snapshot: {exc}"
                raise StateFileError(msg) from exc
            return
        if not blob.startswith(MAGIC):
            msg = "not a rule engine snapshot: unknown leading bytes"
            raise StateFileError(msg)
        at = len(MAGIC)
        size = int.from_bytes(blob[at : at + 8], "little")
        start = at + 8 + size
        try:
            index = json.loads(blob[at + 8 : start].decode())
            self.header = index["header"]
            for name, dtype, shape, offset, nbytes in index["arrays"]:
                self._index[name] = (dtype, tuple(shape), start + offset, nbytes)
        except (ValueError, KeyError, TypeError) as exc:
            msg = f"not a rule engine snapshot: {exc}"
            raise StateFileError(msg) from exc
        if any(o + n > len(blob) for _, _, o, n in self._index.values()):
            msg = "not a rule engine snapshot: truncated"
            raise StateFileError(msg)
        self._blob = blob

    def __enter__(self) -> StateFile:
        """Use as a context manager: the earlier format's archive is closed at the end."""
        return self

    def __exit__(self, *exc: object) -> None:
        """Close the earlier format's archive, if any."""
        if self._npz is not None:
            self._npz.close()

    def __getitem__(self, name: str) -> NDArray[Any]:
        """The array ``name`` (a writable copy). Raises KeyError when there is none."""
        if self._npz is not None:
            return np.asarray(self._npz[name])
        dtype, shape, offset, nbytes = self._index[name]
        size = int(np.prod(shape)) if shape else 1
        try:
            kind = np.dtype(dtype)
            if kind.hasobject or kind.itemsize * size != nbytes:
                raise KeyError(name)
            flat = np.frombuffer(self._blob, dtype=kind, count=size, offset=offset)
        except (TypeError, ValueError) as exc:
            raise KeyError(name) from exc
        return flat.reshape(shape).copy()


def read_header(blob: bytes) -> dict[str, Any]:
    """Only the header of a checkpoint (cheap: no array is copied)."""
    return StateFile(blob).header
