"""The pure lifecycle: every (state, action) pair, every (role, action) pair, condition decisions."""

from __future__ import annotations

import itertools

import pytest

from alerts.errors import ActionForbiddenError, InvalidTransitionError
from alerts.events import ConditionEvent, Level
from alerts.lifecycle import (
    HUMAN_ACTIONS,
    TRANSITIONS,
    Action,
    Alert,
    AuditEntry,
    ChangeKind,
    State,
    allowed_actions,
    check_role,
    decide,
    on_condition,
    transition,
)
from devices.access import Role

R, A, D, V, C = (State.RAISED, State.ACKNOWLEDGED, State.DISPATCHED, State.RESOLVED, State.CLOSED)

# The specification, written out by hand (not derived from the code): state -> action -> next state.
EXPECTED: dict[State, dict[Action, State]] = {
    R: {
        Action.ACKNOWLEDGE: A,
        Action.ASSIGN: R,
        Action.DISPATCH: D,
        Action.COMMENT: R,
        Action.AUTO_CLOSE: C,
        Action.ESCALATE_UNACKED: R,
        Action.ESCALATE: R,
        Action.DEESCALATE: R,
        Action.CLEAR: R,
        Action.REFIRE: R,
    },
    A: {
        Action.ASSIGN: A,
        Action.DISPATCH: D,
        Action.RESOLVE: V,
        Action.COMMENT: A,
        Action.ESCALATE: A,
        Action.DEESCALATE: A,
        Action.CLEAR: A,
        Action.REFIRE: A,
    },
    D: {
        Action.ASSIGN: D,
        Action.DISPATCH: D,
        Action.RESOLVE: V,
        Action.COMMENT: D,
        Action.ESCALATE: D,
        Action.DEESCALATE: D,
        Action.CLEAR: D,
        Action.REFIRE: D,
    },
    V: {
        Action.CLOSE: C,
        Action.REOPEN: A,
        Action.COMMENT: V,
        Action.ESCALATE: R,  # worse again: people are needed again
        Action.REFIRE: R,
        Action.DEESCALATE: V,
        Action.CLEAR: V,
    },
    C: {Action.COMMENT: C},
}

PAIRS = list(itertools.product(State, Action))


@pytest.mark.parametrize(("state", "action"), PAIRS, ids=[f"{s}-{a}" for s, a in PAIRS])
def test_every_state_and_action(state: State, action: Action) -> None:
    expected = EXPECTED[state].get(action)
    if expected is not None:
        assert transition(state, action) is expected
        return
    with pytest.raises(InvalidTransitionError) as err:
        transition(state, action)
    allowed = [a.value for a in HUMAN_ACTIONS if a in EXPECTED[state]]
    assert err.value.allowed == allowed
    assert err.value.status == 409
    assert err.value.problem_extra() == {
        "state": state.value,
        "action": action.value,
        "allowed": allowed,
    }
    assert repr(state.value) in str(err.value)
    assert ", ".join(allowed) in str(err.value)


def test_the_table_has_nothing_the_specification_lacks() -> None:
    spec = {(s, a): n for s, actions in EXPECTED.items() for a, n in actions.items()}
    assert spec == TRANSITIONS


def test_raise_is_not_a_transition_from_any_state() -> None:
    for state in State:
        with pytest.raises(InvalidTransitionError):
            transition(state, Action.RAISE)


ROLE_SPEC: dict[Role, set[Action]] = {
    Role.ADMIN: set(HUMAN_ACTIONS),
    Role.COMMANDER: {
        Action.ACKNOWLEDGE,
        Action.ASSIGN,
        Action.COMMENT,
        Action.RESOLVE,
        Action.REOPEN,
        Action.DISPATCH,
        Action.CLOSE,
    },
    Role.OFFICER: {
        Action.ACKNOWLEDGE,
        Action.ASSIGN,
        Action.COMMENT,
        Action.RESOLVE,
        Action.REOPEN,
    },
    Role.VIEWER: set(),
    Role.VENDOR: set(),
    Role.UNIT: set(),  # a field crew works incidents, not raw alerts
}
ROLE_PAIRS = list(itertools.product(Role, Action))


@pytest.mark.parametrize(("role", "action"), ROLE_PAIRS, ids=[f"{r}-{a}" for r, a in ROLE_PAIRS])
def test_every_role_and_action(role: Role, action: Action) -> None:
    if action in ROLE_SPEC[role]:
        check_role(role, action)
        return
    with pytest.raises(ActionForbiddenError) as err:
        check_role(role, action)
    assert err.value.status == 403
    assert role.value in str(err.value)


def _alert(state: State = R, *, firing: bool = True, level: Level = Level.ORANGE) -> Alert:
    return Alert(
        id=7,
        rule="wl-high",
        source="device:wl-00001",
        kind="threshold",
        level=level,
        state=state,
        firing=firing,
        summary="water level high",
        first_ms=1000,
        last_ms=1000,
        updated_ms=1000,
        seq=1,
        state_ms=1000,
    )


def _event(level: Level, *, firing: bool = True) -> ConditionEvent:
    return ConditionEvent(
        rule="wl-high",
        source="device:wl-00001",
        kind="threshold",
        level=level,
        firing=firing,
        at_ms=2000,
        summary="s",
    )


@pytest.mark.parametrize(
    ("alert_firing", "event_level", "event_firing", "expected"),
    [
        (True, Level.RED, True, Action.ESCALATE),
        (True, Level.YELLOW, True, Action.DEESCALATE),
        (True, Level.ORANGE, True, None),  # a repeat: nothing worth a history line
        (True, Level.ORANGE, False, Action.CLEAR),
        (True, Level.RED, False, Action.CLEAR),  # a cleared event carries the level it had
        (False, Level.ORANGE, False, None),  # cleared twice
        (False, Level.ORANGE, True, Action.REFIRE),
        (False, Level.RED, True, Action.REFIRE),  # back and worse: one re-firing, at red
        (False, Level.BLUE, True, Action.REFIRE),
    ],
)
def test_on_condition(
    alert_firing: bool, event_level: Level, event_firing: bool, expected: Action | None
) -> None:
    alert = _alert(firing=alert_firing)
    assert on_condition(alert, _event(event_level, firing=event_firing)) is expected


def test_closing_while_the_condition_holds_needs_force() -> None:
    firing = _alert(V, firing=True)
    with pytest.raises(InvalidTransitionError) as err:
        decide(firing, Action.CLOSE, Role.COMMANDER)
    assert "still holds" in str(err.value)
    assert "close" not in err.value.allowed
    assert decide(firing, Action.CLOSE, Role.COMMANDER, force=True) is C
    assert decide(_alert(V, firing=False), Action.CLOSE, Role.COMMANDER) is C


def test_decide_checks_the_role_before_the_state() -> None:
    with pytest.raises(ActionForbiddenError):
        decide(_alert(C), Action.DISPATCH, Role.OFFICER)
    with pytest.raises(InvalidTransitionError):
        decide(_alert(C), Action.DISPATCH, Role.COMMANDER)


def test_allowed_actions_follow_state_role_and_condition() -> None:
    assert allowed_actions(_alert(R), Role.OFFICER) == [
        Action.ACKNOWLEDGE,
        Action.ASSIGN,
        Action.COMMENT,
    ]
    assert allowed_actions(_alert(R), Role.COMMANDER) == [
        Action.ACKNOWLEDGE,
        Action.ASSIGN,
        Action.DISPATCH,
        Action.COMMENT,
    ]
    assert allowed_actions(_alert(V, firing=False), Role.COMMANDER) == [
        Action.CLOSE,
        Action.COMMENT,
        Action.REOPEN,
    ]
    assert allowed_actions(_alert(V, firing=True), Role.COMMANDER) == [
        Action.COMMENT,
        Action.REOPEN,
    ]
    assert allowed_actions(_alert(R), Role.VIEWER) == []
    assert allowed_actions(_alert(C), Role.ADMIN) == [Action.COMMENT]


@pytest.mark.parametrize(
    ("action", "from_state", "to_state", "kind"),
    [
        (Action.RAISE, None, R, ChangeKind.CREATED),
        (Action.ESCALATE, R, R, ChangeKind.LEVEL_CHANGED),
        (Action.DEESCALATE, A, A, ChangeKind.LEVEL_CHANGED),
        (Action.CLEAR, D, D, ChangeKind.CLEARED),
        (Action.REFIRE, V, R, ChangeKind.REFIRED),
        (Action.ACKNOWLEDGE, R, A, ChangeKind.STATE_CHANGED),
        (Action.AUTO_CLOSE, R, C, ChangeKind.STATE_CHANGED),
        (Action.ESCALATE_UNACKED, R, R, ChangeKind.ESCALATED),
        (Action.ASSIGN, A, A, ChangeKind.UPDATED),
        (Action.COMMENT, C, C, ChangeKind.UPDATED),
        (Action.DISPATCH, D, D, ChangeKind.UPDATED),
    ],
)
def test_change_kind(
    action: Action, from_state: State | None, to_state: State, kind: ChangeKind
) -> None:
    entry = AuditEntry(
        alert_id=1,
        seq=2,
        at_ms=0,
        actor="x",
        action=action,
        from_state=from_state,
        to_state=to_state,
        from_level=Level.RED,
        to_level=Level.RED,
    )
    assert entry.change is kind
