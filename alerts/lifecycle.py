"""The alert lifecycle: states, actions, the pure transition table, who may act, and the records.

An alert has two independent axes, as ThingsBoard's ack x clear: the *work state* people move it
through (``raised -> acknowledged -> dispatched -> resolved -> closed``, GB/T 30428's 立案 -> 派遣 ->
处置 -> 结案) and the *condition* the rule engine reports (``firing`` or ``cleared``). A cleared
condition never moves the work state by itself: a cover that opened for a minute at 3 a.m. still
needs someone to look (unless the store's `AlertPolicy.auto_close_cleared_unacked` says otherwise).

Everything here is pure: `transition` is a table lookup, `on_condition` decides what a rule engine
event means for an alert, `check_role` says who may act. `alerts.store` persists what they decide.
"""

from __future__ import annotations

import enum
from dataclasses import dataclass

from alerts.errors import ActionForbiddenError, InvalidTransitionError
from alerts.events import ConditionEvent, Level
from devices.access import Role

SYSTEM_ACTOR = "system"
"""The actor of everything the hub does by itself (condition changes, auto-close)."""


class State(enum.StrEnum):
    """Where people are with an alert. Every state but ``closed`` is active."""

    RAISED = "raised"
    ACKNOWLEDGED = "acknowledged"
    DISPATCHED = "dispatched"
    RESOLVED = "resolved"
    CLOSED = "closed"


ACTIVE_STATES = (State.RAISED, State.ACKNOWLEDGED, State.DISPATCHED, State.RESOLVED)


class Action(enum.StrEnum):
    """What happens to an alert: by a person (first group) or by the hub (second group)."""

    ACKNOWLEDGE = "acknowledge"
    ASSIGN = "assign"
    DISPATCH = "dispatch"
    RESOLVE = "resolve"
    CLOSE = "close"
    COMMENT = "comment"
    REOPEN = "reopen"
    # The hub's own: the rule engine's condition events and the store's policy.
    RAISE = "raise"
    ESCALATE = "escalate"
    DEESCALATE = "deescalate"
    CLEAR = "clear"
    REFIRE = "refire"
    AUTO_CLOSE = "auto_close"
    ESCALATE_UNACKED = "escalate_unacked"  # not acknowledged in time: the next role is told


HUMAN_ACTIONS = (
    Action.ACKNOWLEDGE,
    Action.ASSIGN,
    Action.DISPATCH,
    Action.RESOLVE,
    Action.CLOSE,
    Action.COMMENT,
    Action.REOPEN,
)
SYSTEM_ACTIONS = tuple(a for a in Action if a not in HUMAN_ACTIONS)


class ChangeKind(enum.StrEnum):
    """What an `AlertChange` tells a listener, so a screen or webhook can filter without a table."""

    CREATED = "created"
    LEVEL_CHANGED = "level_changed"
    CLEARED = "cleared"
    REFIRED = "refired"
    STATE_CHANGED = "state_changed"
    ESCALATED = "escalated"  # nobody acknowledged it in time
    UPDATED = "updated"  # no state or level change: an assignment, a comment, a re-dispatch


def _table() -> dict[tuple[State, Action], State]:
    r, a, d, v, c = (
        State.RAISED,
        State.ACKNOWLEDGED,
        State.DISPATCHED,
        State.RESOLVED,
        State.CLOSED,
    )
    table = {
        (r, Action.ACKNOWLEDGE): a,
        # A commander may dispatch straight from raised: dispatching is acknowledging, and a red
        # alert should not need two clicks. Dispatching again sends another (or a further) unit.
        (r, Action.DISPATCH): d,
        (a, Action.DISPATCH): d,
        (d, Action.DISPATCH): d,
        # Resolving needs someone to have taken the alert on first (acknowledged or dispatched).
        (a, Action.RESOLVE): v,
        (d, Action.RESOLVE): v,
        (v, Action.CLOSE): c,
        # A person who finds a resolved alert unresolved takes it back on.
        (v, Action.REOPEN): a,
        # Only an alert nobody acknowledged is closed by policy when its condition clears, and
        # only such an alert is escalated for want of an acknowledgement.
        (r, Action.AUTO_CLOSE): c,
        (r, Action.ESCALATE_UNACKED): r,
    }
    for s in (r, a, d):
        table[s, Action.ASSIGN] = s
    for s in State:
        table[s, Action.COMMENT] = s  # closed alerts take post-incident notes too
    for s in ACTIVE_STATES:
        table[s, Action.DEESCALATE] = s
        table[s, Action.CLEAR] = s
        # A resolved alert whose condition comes back, or gets worse, needs people again.
        table[s, Action.ESCALATE] = r if s is v else s
        table[s, Action.REFIRE] = r if s is v else s
    return table


TRANSITIONS: dict[tuple[State, Action], State] = _table()
"""(state, action) -> next state. A pair that is absent is refused. `Action.RAISE` creates an alert
(in `State.RAISED`) and so has no row: there is no state before the first."""

_OFFICER = frozenset(
    {Action.ACKNOWLEDGE, Action.ASSIGN, Action.COMMENT, Action.RESOLVE, Action.REOPEN}
)
ROLE_ACTIONS: dict[Role, frozenset[Action]] = {
    Role.ADMIN: frozenset(HUMAN_ACTIONS),
    Role.COMMANDER: _OFFICER | {Action.DISPATCH, Action.CLOSE},
    Role.OFFICER: _OFFICER,
    Role.VIEWER: frozenset(),
    Role.VENDOR: frozenset(),
    Role.UNIT: frozenset(),  # a field crew works incidents (alerts.incidents), not raw alerts
}
"""Which role may take which action. Viewers, vendors and units only read alerts; nobody takes a
system action."""


def roles_for(action: Action) -> tuple[Role, ...]:
    """The roles that may take ``action`` (empty for the hub's own actions)."""
    return tuple(role for role in Role if action in ROLE_ACTIONS[role])


def check_role(role: Role, action: Action) -> None:
    """Raise ActionForbiddenError unless ``role`` may take ``action``."""
    if action not in ROLE_ACTIONS[role]:
        raise ActionForbiddenError(role.value, action.value, [r.value for r in roles_for(action)])


def transition(state: State, action: Action) -> State:
    """The state after ``action`` in ``state``; InvalidTransitionError naming the allowed actions."""
    try:
        return TRANSITIONS[state, action]
    except KeyError:
        allowed = [a.value for a in HUMAN_ACTIONS if (state, a) in TRANSITIONS]
        raise InvalidTransitionError(state.value, action.value, allowed) from None


@dataclass(frozen=True, slots=True)
class Alert:
    """One alert as stored: what it is about, where people are with it, and what the condition is.

    Times are epoch milliseconds UTC. ``level`` is the level now; ``firing`` the condition now;
    ``first_ms``/``last_ms`` the first and the newest condition event; ``seq`` the number of the
    newest audit entry; ``state_ms`` when the alert entered its state (the clock of the step
    people are on); ``escalated_ms`` when it was escalated for want of an acknowledgement.
    """

    id: int
    rule: str
    source: str
    kind: str
    level: Level
    state: State
    firing: bool
    summary: str
    first_ms: int
    last_ms: int
    updated_ms: int
    seq: int
    state_ms: int
    device: str | None = None
    area: str | None = None
    vendor: str | None = None
    metric: str | None = None
    value: float | None = None
    cleared_ms: int | None = None
    acknowledged_ms: int | None = None
    closed_ms: int | None = None
    assignee: str | None = None
    unit: str | None = None
    escalated_ms: int | None = None

    @property
    def active(self) -> bool:
        """Not closed: the one alert of its (source, rule) that condition events update."""
        return self.state is not State.CLOSED


@dataclass(frozen=True, slots=True)
class AuditEntry:
    """One line of an alert's history: never changed, never deleted."""

    alert_id: int
    seq: int
    at_ms: int
    actor: str
    action: Action
    from_state: State | None
    to_state: State
    from_level: Level | None
    to_level: Level
    note: str = ""
    target: str | None = None  # whom an assignment names, which unit a dispatch sends

    @property
    def change(self) -> ChangeKind:
        """What kind of change this entry records."""
        kinds = {
            Action.RAISE: ChangeKind.CREATED,
            Action.ESCALATE: ChangeKind.LEVEL_CHANGED,
            Action.DEESCALATE: ChangeKind.LEVEL_CHANGED,
            Action.CLEAR: ChangeKind.CLEARED,
            Action.REFIRE: ChangeKind.REFIRED,
            Action.ESCALATE_UNACKED: ChangeKind.ESCALATED,
        }
        if self.action in kinds:
            return kinds[self.action]
        return ChangeKind.STATE_CHANGED if self.from_state != self.to_state else ChangeKind.UPDATED


@dataclass(frozen=True, slots=True)
class AlertChange:
    """An alert after a change, and the audit entry that recorded it: what notifications carry."""

    alert: Alert
    entry: AuditEntry

    @property
    def kind(self) -> ChangeKind:
        """What changed."""
        return self.entry.change


def allowed_actions(alert: Alert, role: Role | None = None) -> list[Action]:
    """The people's actions ``alert`` accepts now (those of ``role`` only, when given)."""
    actions = [a for a in HUMAN_ACTIONS if (alert.state, a) in TRANSITIONS]
    if alert.firing:
        actions = [a for a in actions if a is not Action.CLOSE]
    if role is not None:
        actions = [a for a in actions if a in ROLE_ACTIONS[role]]
    return actions


def decide(alert: Alert, action: Action, role: Role | None, *, force: bool = False) -> State:
    """The state a person's ``action`` moves ``alert`` to, or the error saying why not.

    ``role`` None means the hub itself (no role check). Closing an alert whose condition still holds
    is refused unless ``force``: the screen would show nothing while the river is above red, and the
    engine reports the condition again only once it clears or changes level.

    Raises:
        ActionForbiddenError: the role may not take the action at all.
        InvalidTransitionError: the alert's state does not accept it.
    """
    if role is not None:
        check_role(role, action)
    nxt = transition(alert.state, action)
    if action is Action.CLOSE and alert.firing and not force:
        allowed = [a.value for a in allowed_actions(alert)]
        reason = (
            f"alert {alert.id}'s condition still holds ({alert.level.label}): close it once it "
            "clears, or close with force"
        )
        raise InvalidTransitionError(alert.state.value, action.value, allowed, reason=reason)
    return nxt


def on_condition(alert: Alert, event: ConditionEvent) -> Action | None:
    """What a condition event means for its active alert; None when it changes nothing.

    A firing event on a cleared condition is a re-firing (whatever its level); otherwise a firing
    event at another level escalates or de-escalates. A cleared event clears a firing condition.
    Repeats (the same level again, a second clear) change nothing worth an audit line.
    """
    if event.firing:
        if not alert.firing:
            return Action.REFIRE
        if event.level > alert.level:
            return Action.ESCALATE
        if event.level < alert.level:
            return Action.DEESCALATE
        return None
    return Action.CLEAR if alert.firing else None
