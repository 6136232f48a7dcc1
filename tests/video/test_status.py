"""Debounce and recovery of camera findings: a pure transition table."""

from __future__ import annotations

import pytest

from video.diagnose import Finding, FindingKind
from video.status import CameraState, Track, advance

F = FindingKind
LOST = Finding(F.SIGNAL_LOST, 1.0, 3.0, 0.0, "signal lost")
FROZEN = Finding(F.FROZEN, 0.9, 0.0, 6.0, "frozen")
BLUR = Finding(F.BLURRED, 0.7, 10.0, 45.0, "blurred")


def _run(
    checks: list[list[Finding]], raise_after: int = 2, clear_after: int = 1
) -> list[list[tuple[str, bool]]]:
    track = Track()
    out = []
    for seen in checks:
        track, changes = advance(
            track, {f.kind: f for f in seen}, raise_after=raise_after, clear_after=clear_after
        )
        out.append([(c.kind.value, c.firing) for c in changes])
    return out


@pytest.mark.parametrize(
    ("checks", "raise_after", "clear_after", "expected"),
    [
        # One unlucky check raises nothing.
        ([[FROZEN], []], 2, 1, [[], []]),
        # Two in a row confirm; the next clean check clears.
        ([[FROZEN], [FROZEN], []], 2, 1, [[], [("frozen", True)], [("frozen", False)]]),
        # An interrupted streak starts again.
        ([[BLUR], [], [BLUR], [BLUR]], 2, 1, [[], [], [], [("blurred", True)]]),
        # Recovery also debounced when asked.
        (
            [[BLUR], [], [BLUR], [], []],
            1,
            2,
            [[("blurred", True)], [], [], [], [("blurred", False)]],
        ),
        # While the signal is lost the picture findings keep their standing...
        (
            [[FROZEN], [LOST], [LOST], [FROZEN]],
            1,
            1,
            [[("frozen", True)], [("signal_lost", True)], [], [("signal_lost", False)]],
        ),
        # ...and a streak is neither counted nor broken by a lost check.
        ([[BLUR], [LOST], [BLUR]], 2, 1, [[], [], [("blurred", True)]]),
    ],
    ids=[
        "one-check",
        "confirm-clear",
        "streak-restarts",
        "clear-after-2",
        "lost-keeps",
        "lost-neutral",
    ],
)
def test_transitions(
    checks: list[list[Finding]],
    raise_after: int,
    clear_after: int,
    expected: list[list[tuple[str, bool]]],
) -> None:
    assert _run(checks, raise_after, clear_after) == expected


def test_state_and_json_round_trip() -> None:
    track, _ = advance(Track(), {F.SIGNAL_LOST: LOST}, raise_after=1)
    assert track.state(checked=True) is CameraState.LOST
    track, _ = advance(track, {F.BLURRED: BLUR}, raise_after=1)
    assert track.state(checked=True) is CameraState.FAULT
    assert Track.from_json(track.to_json()) == track
    assert Track().state(checked=False) is CameraState.UNKNOWN
    assert Track().state(checked=True) is CameraState.OK
    assert Track.from_json(
        {"active": ["frozen", "from-a-newer-version"], "streak": {"nope": 2}}
    ).active == {F.FROZEN}
