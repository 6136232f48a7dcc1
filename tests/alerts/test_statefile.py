"""The rule engine's checkpoint bytes (alerts/statefile.py): round trip, the earlier format, damage."""

from __future__ import annotations

import io
import json

import numpy as np
import pytest

from alerts.statefile import MAGIC, StateFile, StateFileError, pack, read_header

ARRAYS = {
    "heard": np.arange(5, dtype=np.int64) * 1_000,
    "since": np.full((4, 3), -7, dtype=np.int64),
    "level": np.array([0, 1, 4], dtype=np.int8),
    "names": np.array(["demo/harbor", "河西"], dtype=str),
    "empty": np.empty((0, 2), dtype=np.float64),
    "scalar": np.array(3.5),
    "strided": np.arange(12, dtype=np.int32).reshape(3, 4)[:, ::2],
}


def test_every_array_comes_back_as_it_was_and_writable() -> None:
    blob = pack({"format": 1, "saved_ms": 42}, ARRAYS)
    state = StateFile(blob)
    assert state.header == {"format": 1, "saved_ms": 42}
    for name, arr in ARRAYS.items():
        got = state[name]
        assert got.dtype == arr.dtype, name
        assert got.shape == arr.shape, name
        np.testing.assert_array_equal(got, arr)
        got[...] = got  # a copy of its own, not a view of the checkpoint's bytes
        assert got.flags.writeable
    assert read_header(blob)["saved_ms"] == 42
    with pytest.raises(KeyError):
        state["missing"]


def test_the_earlier_npz_checkpoints_are_still_read() -> None:
    buf = io.BytesIO()
    header = np.frombuffer(json.dumps({"format": 1, "saved_ms": 7}).encode(), dtype=np.uint8)
    np.savez(buf, allow_pickle=False, header=header, heard=ARRAYS["heard"])
    with StateFile(buf.getvalue()) as state:
        assert state.header["saved_ms"] == 7
        np.testing.assert_array_equal(state["heard"], ARRAYS["heard"])


@pytest.mark.parametrize(
    "damage",
    [
        lambda b: b[: len(b) - 3],  # truncated data
        lambda b: b[: len(MAGIC) + 20],  # truncated index
        lambda b: b"garbage" + b,
        lambda b: b"PK\x03\x04 not a zip",
    ],
    ids=["data", "index", "prefix", "bad-zip"],
)
def test_damaged_bytes_are_refused_with_a_reason(damage: object) -> None:
    blob = pack({"format": 1}, ARRAYS)
    with pytest.raises(StateFileError, match="not a rule engine snapshot"):
        StateFile(damage(blob))  # type: ignore[operator]


def test_python_objects_are_never_stored() -> None:
    with pytest.raises(StateFileError, match="Python objects"):
        pack({}, {"bad": np.array([{"a": 1}], dtype=object)})
