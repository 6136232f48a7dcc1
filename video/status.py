"""A camera's standing from check to check: findings confirmed after a streak, cleared on recovery.

One check can be unlucky (a bus parks in front of the lens, a frame comes torn), so a finding is
*raised* only when ``raise_after`` checks in a row show it, and *cleared* when ``clear_after`` checks
in a row do not (the alert path's debounce and recovery). `advance` is the whole rule: a pure
function of the previous `Track` and what one check saw, returning the new track and the changes
to announce. While the signal is lost nothing can be seen of the picture, so the picture findings
keep their standing until a check sees a picture again.
"""

from __future__ import annotations

import enum
from collections.abc import Mapping
from dataclasses import dataclass, field

from video.diagnose import Finding, FindingKind

PICTURE_BLOCKERS = frozenset({FindingKind.FROZEN, FindingKind.BLACK, FindingKind.COVERED})
"""Findings that leave no usable picture; a camera with only other findings still shows the scene."""


class CameraState(enum.StrEnum):
    """Where a camera stands, from its confirmed findings."""

    UNKNOWN = "unknown"  # not checked yet (or not since it was changed)
    OK = "ok"  # a picture, and no confirmed finding
    FAULT = "fault"  # a picture, with confirmed findings
    LOST = "lost"  # the signal is lost (confirmed)
    DISABLED = "disabled"  # not patrolled


@dataclass(frozen=True, slots=True)
class Track:
    """The debounce counters of one camera.

    Attributes:
        active: confirmed findings (an alert is raised for each).
        streak: for findings not confirmed yet, how many checks in a row saw them.
        quiet: for confirmed findings, how many checks in a row did not see them.
    """

    active: frozenset[FindingKind] = frozenset()
    streak: Mapping[FindingKind, int] = field(default_factory=dict)
    quiet: Mapping[FindingKind, int] = field(default_factory=dict)

    def state(self, *, checked: bool) -> CameraState:
        """The camera's state from its confirmed findings."""
        if FindingKind.SIGNAL_LOST in self.active:
            return CameraState.LOST
        if self.active:
            return CameraState.FAULT
        return CameraState.OK if checked else CameraState.UNKNOWN

    def to_json(self) -> dict[str, object]:
        """A JSON-able form (persisted with the camera's status)."""
        return {
            "active": sorted(self.active),
            "streak": {k.value: v for k, v in self.streak.items()},
            "quiet": {k.value: v for k, v in self.quiet.items()},
        }

    @classmethod
    def from_json(cls, data: Mapping[str, object]) -> Track:
        """The track `to_json` wrote (unknown finding kinds from another version are dropped)."""
        known = {k.value for k in FindingKind}

        def counts(key: str) -> dict[FindingKind, int]:
            raw = data.get(key)
            if not isinstance(raw, dict):
                return {}
            return {FindingKind(k): int(v) for k, v in raw.items() if k in known}

        active = data.get("active")
        kinds = active if isinstance(active, list) else []
        return cls(
            active=frozenset(FindingKind(k) for k in kinds if k in known),
            streak=counts("streak"),
            quiet=counts("quiet"),
        )


@dataclass(frozen=True, slots=True)
class Transition:
    """A finding confirmed (``firing``) or recovered from, on one camera."""

    kind: FindingKind
    firing: bool
    finding: Finding | None  # what the check saw when it fired; None when it cleared


def advance(
    track: Track,
    seen: Mapping[FindingKind, Finding],
    *,
    raise_after: int = 2,
    clear_after: int = 1,
) -> tuple[Track, list[Transition]]:
    """The track after a check that saw ``seen``, and the transitions to announce.

    Args:
        track: the camera's counters before this check.
        seen: the findings of this check by kind (``SIGNAL_LOST`` when no picture came).
        raise_after: checks in a row that must show a finding before it is confirmed.
        clear_after: checks in a row without it before a confirmed finding clears.
    """
    lost = FindingKind.SIGNAL_LOST in seen
    # Without a picture only the signal can be judged; the rest keep their counters.
    judged = {FindingKind.SIGNAL_LOST} if lost else set(FindingKind)
    active = set(track.active)
    streak = dict(track.streak)
    quiet = dict(track.quiet)
    changes: list[Transition] = []
    for kind in sorted(judged):
        finding = seen.get(kind)
        if kind in active:
            if finding is not None:
                quiet.pop(kind, None)
                continue
            quiet[kind] = quiet.get(kind, 0) + 1
            if quiet[kind] >= clear_after:
                active.discard(kind)
                quiet.pop(kind)
                changes.append(Transition(kind, firing=False, finding=None))
        elif finding is not None:
            streak[kind] = streak.get(kind, 0) + 1
            if streak[kind] >= raise_after:
                active.add(kind)
                streak.pop(kind)
                changes.append(Transition(kind, firing=True, finding=finding))
        else:
            streak.pop(kind, None)
    return Track(frozenset(active), streak, quiet), changes
