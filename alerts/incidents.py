"""Incidents: states, actions, the pure transition table, who may act, step deadlines, and the records.

An incident is the case people work (GB/T 30428): ``reported -> registered -> dispatched ->
in_progress -> verified -> closed`` (上报 立案 派遣 处置 核查 结案). It is opened from one or more
alerts, or by hand, and each of its steps has a time limit by type and level
(`alerts.incident_rules`): a step that overruns raises its own alert and escalates the incident to
the parent area. Units sent to it report arrival, progress and completion; someone other than the
units verifies the result, and a commander closes it.

Everything here is pure: `transition` is a table lookup, `check_role` says who may act,
`deadline_ms` and `overdue` read the clock they are given. `alerts.incident_store` persists.
"""

from __future__ import annotations

import enum
from dataclasses import dataclass

from alerts.errors import ActionForbiddenError, InvalidTransitionError
from alerts.events import Level
from devices.access import Role


class IncidentState(enum.StrEnum):
    """Where an incident is. Every state but ``closed`` is active, and each active one is timed."""

    REPORTED = "reported"  # 上报: opened, nobody has accepted it yet
    REGISTERED = "registered"  # 立案: accepted as a case, waiting for units
    DISPATCHED = "dispatched"  # 派遣: units sent, none there yet
    IN_PROGRESS = "in_progress"  # 处置: a unit is on it
    VERIFIED = "verified"  # 核查: someone checked the result, waiting to be closed
    CLOSED = "closed"  # 结案


ACTIVE_STATES = tuple(s for s in IncidentState if s is not IncidentState.CLOSED)


class IncidentAction(enum.StrEnum):
    """What happens to an incident: by people (first group), by units, or by the hub itself."""

    OPEN = "open"
    REGISTER = "register"
    DISPATCH = "dispatch"
    RECALL = "recall"  # a dispatched unit is called back before it completed
    VERIFY = "verify"
    REOPEN = "reopen"  # the check after verification found it not done
    CLOSE = "close"
    DISMISS = "dismiss"  # not a case (不予立案): a false alarm, a duplicate
    COMMENT = "comment"
    LINK = "link"  # more alerts belong to it
    # A unit's reports (or a commander's on its behalf).
    ARRIVE = "arrive"
    PROGRESS = "progress"
    COMPLETE = "complete"
    # The hub's own.
    OVERDUE = "overdue"  # the step overran its limit
    ESCALATE = "escalate"  # handed up to the parent area


UNIT_ACTIONS = (IncidentAction.ARRIVE, IncidentAction.PROGRESS, IncidentAction.COMPLETE)
SYSTEM_ACTIONS = (IncidentAction.OVERDUE, IncidentAction.ESCALATE)
HUMAN_ACTIONS = tuple(a for a in IncidentAction if a not in SYSTEM_ACTIONS)


def _table() -> dict[tuple[IncidentState, IncidentAction], IncidentState]:
    s, a = IncidentState, IncidentAction
    r, g, d, p, v, c = (
        s.REPORTED,
        s.REGISTERED,
        s.DISPATCHED,
        s.IN_PROGRESS,
        s.VERIFIED,
        s.CLOSED,
    )
    table = {
        (r, a.REGISTER): g,
        (r, a.DISMISS): c,
        (g, a.DISMISS): c,
        # Dispatch needs a case first (立案 before 派遣); sending more units keeps the state.
        (g, a.DISPATCH): d,
        (d, a.DISPATCH): d,
        (p, a.DISPATCH): p,
        (d, a.RECALL): d,  # the store steps back to registered when no unit is left on it
        (p, a.RECALL): p,
        (d, a.ARRIVE): p,
        (p, a.ARRIVE): p,
        (d, a.PROGRESS): d,  # "stuck at the underpass": a report from the way there
        (p, a.PROGRESS): p,
        (d, a.COMPLETE): p,  # finishing without reporting arrival first counts as arriving
        (p, a.COMPLETE): p,
        # Verification is someone other than the units checking the result (核查).
        (p, a.VERIFY): v,
        (v, a.REOPEN): p,
        (v, a.CLOSE): c,
    }
    for state in IncidentState:
        table[state, a.COMMENT] = state  # a closed case takes post-incident notes too
    for state in ACTIVE_STATES:
        table[state, a.LINK] = state
        table[state, a.OVERDUE] = state
        table[state, a.ESCALATE] = state
    return table


TRANSITIONS: dict[tuple[IncidentState, IncidentAction], IncidentState] = _table()
"""(state, action) -> next state; an absent pair is refused. `IncidentAction.OPEN` creates an
incident in ``reported`` and has no row."""

_CASEWORK = frozenset(
    {
        IncidentAction.OPEN,
        IncidentAction.REGISTER,
        IncidentAction.VERIFY,
        IncidentAction.REOPEN,
        IncidentAction.COMMENT,
        IncidentAction.LINK,
    }
)
ROLE_ACTIONS: dict[Role, frozenset[IncidentAction]] = {
    Role.ADMIN: frozenset(HUMAN_ACTIONS),
    Role.COMMANDER: frozenset(HUMAN_ACTIONS),
    Role.OFFICER: _CASEWORK,
    # A unit reports on its own dispatches only (checked by the store); it never closes, verifies
    # or dismisses: the people who sent it judge the result.
    Role.UNIT: frozenset({*UNIT_ACTIONS, IncidentAction.COMMENT}),
    Role.VIEWER: frozenset(),
    Role.VENDOR: frozenset(),
}
"""Which role may take which action on an incident."""


def roles_for(action: IncidentAction) -> tuple[Role, ...]:
    """The roles that may take ``action`` (empty for the hub's own)."""
    return tuple(role for role in Role if action in ROLE_ACTIONS.get(role, frozenset()))


def check_role(role: Role, action: IncidentAction) -> None:
    """Raise ActionForbiddenError unless ``role`` may take ``action``."""
    if action not in ROLE_ACTIONS.get(role, frozenset()):
        raise ActionForbiddenError(
            role.value, action.value, [r.value for r in roles_for(action)], subject="an incident"
        )


def transition(state: IncidentState, action: IncidentAction) -> IncidentState:
    """The state after ``action`` in ``state``; InvalidTransitionError naming the allowed actions."""
    try:
        return TRANSITIONS[state, action]
    except KeyError:
        allowed = [a.value for a in HUMAN_ACTIONS if (state, a) in TRANSITIONS]
        reason = f"an incident in state {state.value!r} does not take {action.value!r}"
        raise InvalidTransitionError(state.value, action.value, allowed, reason=reason) from None


@dataclass(frozen=True, slots=True)
class Incident:
    """One incident as stored. Times are epoch ms UTC.

    ``area`` is where it is; ``owner`` the area whose people handle it now (the area itself at
    first, a parent after each escalation). ``state_ms`` is when the current step began and
    ``deadline_ms`` when it is due (None: no limit); ``overdue_state`` the step last found overdue,
    so each step is flagged once. The ``*_ms`` milestones keep the first time each step was
    reached, for the times-to-respond of the period reports.
    """

    id: int
    title: str
    type: str
    level: Level
    state: IncidentState
    area: str
    owner: str
    opened_ms: int
    state_ms: int
    updated_ms: int
    seq: int
    opened_by: str
    description: str = ""
    lat: float | None = None
    lon: float | None = None
    deadline_ms: int | None = None
    overdue_state: IncidentState | None = None
    escalations: int = 0
    registered_ms: int | None = None
    dispatched_ms: int | None = None
    arrived_ms: int | None = None
    verified_ms: int | None = None
    closed_ms: int | None = None
    outcome: str | None = None  # "handled" or "dismissed" once closed

    @property
    def active(self) -> bool:
        """Not closed."""
        return self.state is not IncidentState.CLOSED

    @property
    def source(self) -> str:
        """The alert source of its own alerts (an overdue step): ``incident:<id>``."""
        return f"incident:{self.id}"


@dataclass(frozen=True, slots=True)
class IncidentEntry:
    """One line of an incident's history: never changed, never deleted.

    ``target`` names what the action was about: the unit of a dispatch or a unit's report, the
    area an escalation handed it to, the alert ids linked. ``photos`` are the ids of the photos a
    report came with.
    """

    incident_id: int
    seq: int
    at_ms: int
    actor: str
    action: IncidentAction
    from_state: IncidentState | None
    to_state: IncidentState
    note: str = ""
    target: str | None = None
    role: str | None = None
    photos: tuple[int, ...] = ()


@dataclass(frozen=True, slots=True)
class IncidentChange:
    """An incident after a change, and the history line that recorded it."""

    incident: Incident
    entry: IncidentEntry


def allowed_actions(incident: Incident, role: Role | None = None) -> list[IncidentAction]:
    """The people's actions ``incident`` accepts now (those of ``role`` only, when given)."""
    actions = [a for a in HUMAN_ACTIONS if (incident.state, a) in TRANSITIONS]
    if role is not None:
        actions = [a for a in actions if a in ROLE_ACTIONS.get(role, frozenset())]
    return actions


def deadline_ms(state: IncidentState, entered_ms: int, limit_ms: int | None) -> int | None:
    """When a step that began at ``entered_ms`` is due; None for a closed incident or no limit."""
    if state is IncidentState.CLOSED or limit_ms is None:
        return None
    return entered_ms + limit_ms


def overdue(incident: Incident, now_ms: int) -> bool:
    """Whether the incident's current step has overrun and was not flagged yet."""
    return (
        incident.active
        and incident.deadline_ms is not None
        and now_ms >= incident.deadline_ms
        and incident.overdue_state is not incident.state
    )


NEXT_STEP: dict[IncidentState, str] = {
    IncidentState.REPORTED: "registration (立案)",
    IncidentState.REGISTERED: "dispatch (派遣)",
    IncidentState.DISPATCHED: "arrival on site (到场)",
    IncidentState.IN_PROGRESS: "handling and verification (处置/核查)",
    IncidentState.VERIFIED: "closing (结案)",
}
"""What is awaited in each state: how an overdue step is named to people."""
