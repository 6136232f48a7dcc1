"""The incident's pure core: the transition table, who may act, step deadlines, types and limits."""

from __future__ import annotations

from pathlib import Path

import pytest

from alerts.errors import ActionForbiddenError, InvalidTransitionError
from alerts.events import Level
from alerts.incident_rules import IncidentRules, IncidentRulesError
from alerts.incidents import (
    SYSTEM_ACTIONS,
    TRANSITIONS,
    Incident,
    IncidentAction,
    IncidentState,
    allowed_actions,
    check_role,
    deadline_ms,
    overdue,
    roles_for,
    transition,
)
from devices.access import Role

S, A = IncidentState, IncidentAction

ROWS = [
    (S.REPORTED, A.REGISTER, S.REGISTERED),
    (S.REPORTED, A.DISMISS, S.CLOSED),
    (S.REGISTERED, A.DISMISS, S.CLOSED),
    (S.REGISTERED, A.DISPATCH, S.DISPATCHED),
    (S.DISPATCHED, A.DISPATCH, S.DISPATCHED),
    (S.IN_PROGRESS, A.DISPATCH, S.IN_PROGRESS),
    (S.DISPATCHED, A.ARRIVE, S.IN_PROGRESS),
    (S.DISPATCHED, A.PROGRESS, S.DISPATCHED),
    (S.DISPATCHED, A.COMPLETE, S.IN_PROGRESS),
    (S.IN_PROGRESS, A.COMPLETE, S.IN_PROGRESS),
    (S.IN_PROGRESS, A.VERIFY, S.VERIFIED),
    (S.VERIFIED, A.REOPEN, S.IN_PROGRESS),
    (S.VERIFIED, A.CLOSE, S.CLOSED),
    (S.CLOSED, A.COMMENT, S.CLOSED),
    (S.REGISTERED, A.OVERDUE, S.REGISTERED),
    (S.DISPATCHED, A.ESCALATE, S.DISPATCHED),
]


@pytest.mark.parametrize(("state", "action", "after"), ROWS, ids=[f"{s}-{a}" for s, a, _ in ROWS])
def test_transition(state: IncidentState, action: IncidentAction, after: IncidentState) -> None:
    assert transition(state, action) is after


REFUSED = [
    (S.REPORTED, A.DISPATCH),  # 立案 before 派遣
    (S.REPORTED, A.CLOSE),
    (S.IN_PROGRESS, A.CLOSE),  # closing needs the check first
    (S.DISPATCHED, A.VERIFY),
    (S.CLOSED, A.REGISTER),
    (S.CLOSED, A.OVERDUE),
    (S.VERIFIED, A.DISMISS),
]


@pytest.mark.parametrize(("state", "action"), REFUSED, ids=[f"{s}-{a}" for s, a in REFUSED])
def test_refused_transition_names_what_is_allowed(
    state: IncidentState, action: IncidentAction
) -> None:
    with pytest.raises(InvalidTransitionError) as info:
        transition(state, action)
    assert info.value.status == 409
    assert info.value.allowed == [
        a.value for a in IncidentAction if (state, a) in TRANSITIONS and a not in SYSTEM_ACTIONS
    ]


@pytest.mark.parametrize(
    ("role", "action", "allowed"),
    [
        (Role.UNIT, A.CLOSE, False),
        (Role.UNIT, A.VERIFY, False),
        (Role.UNIT, A.DISMISS, False),
        (Role.UNIT, A.DISPATCH, False),
        (Role.UNIT, A.ARRIVE, True),
        (Role.UNIT, A.COMPLETE, True),
        (Role.OFFICER, A.REGISTER, True),
        (Role.OFFICER, A.VERIFY, True),
        (Role.OFFICER, A.DISPATCH, False),
        (Role.OFFICER, A.CLOSE, False),
        (Role.COMMANDER, A.CLOSE, True),
        (Role.VIEWER, A.COMMENT, False),
        (Role.VENDOR, A.OPEN, False),
        (Role.ADMIN, A.OVERDUE, False),  # nobody takes the hub's own actions
    ],
)
def test_who_may_act(role: Role, action: IncidentAction, allowed: bool) -> None:
    if allowed:
        check_role(role, action)
        assert role in roles_for(action)
    else:
        with pytest.raises(ActionForbiddenError, match="an incident"):
            check_role(role, action)


def _incident(state: IncidentState, entered: int, deadline: int | None, **kw: object) -> Incident:
    return Incident(
        id=1,
        title="t",
        type="waterlogging",
        level=Level.RED,
        state=state,
        area="demo/riverside",
        owner="demo/riverside",
        opened_ms=0,
        state_ms=entered,
        updated_ms=entered,
        seq=1,
        opened_by="officer",
        deadline_ms=deadline,
        **kw,  # type: ignore[arg-type]
    )


def test_a_step_is_overdue_once_past_its_deadline_and_flagged_once() -> None:
    i = _incident(S.REGISTERED, 1_000, deadline_ms(S.REGISTERED, 1_000, 600_000))
    assert i.deadline_ms == 601_000
    assert not overdue(i, 600_999)
    assert overdue(i, 601_000)
    flagged = _incident(S.REGISTERED, 1_000, 601_000, overdue_state=S.REGISTERED)
    assert not overdue(flagged, 10**9)
    # The next step is a new step: the flag of the last one does not cover it.
    moved = _incident(S.DISPATCHED, 700_000, 800_000, overdue_state=S.REGISTERED)
    assert overdue(moved, 800_000)
    assert deadline_ms(S.CLOSED, 1, 5) is None
    assert deadline_ms(S.REPORTED, 1, None) is None


def test_allowed_actions_for_a_unit_in_progress() -> None:
    i = _incident(S.IN_PROGRESS, 0, None)
    assert allowed_actions(i, Role.UNIT) == [A.COMMENT, A.ARRIVE, A.PROGRESS, A.COMPLETE]
    assert A.VERIFY in allowed_actions(i, Role.OFFICER)
    assert allowed_actions(i, Role.VIEWER) == []


def test_shipped_limits_and_type_overrides() -> None:
    rules = IncidentRules.load()
    # Waterlogging tightens red dispatch to 20 min; everything else follows the red defaults.
    assert rules.limit_ms("waterlogging", Level.RED, S.DISPATCHED) == 20 * 60_000
    assert rules.limit_ms("waterlogging", Level.RED, S.REPORTED) == 5 * 60_000
    assert rules.limit_ms("other", Level.RED, S.DISPATCHED) == 30 * 60_000
    assert rules.limit_ms("fire", Level.ORANGE, S.REGISTERED) == 5 * 60_000
    assert rules.limit_ms("other", Level.BLUE, S.CLOSED) is None
    assert rules.type_for(["battery-low"]) == "equipment"
    assert rules.type_for(["no-such-rule", "water-level-high"]) == "waterlogging"
    assert rules.type_for([]) == "other"
    assert rules.skills("waterlogging") == ("drainage",)
    described = rules.describe()["waterlogging"]["limits"]["red"]
    assert described["dispatched"] == 20.0


def test_a_city_file_merges_over_the_shipped_one(tmp_path: Path) -> None:
    city = tmp_path / "incidents.yaml"
    city.write_text(
        "limits:\n  red: {reported: 2}\n"
        "types:\n"
        "  waterlogging:\n    name: Flooding\n    skills: [drainage, pumps]\n"
        "    limits: {red: {in_progress: 90}}\n"
        "  landslide:\n    name: Landslide\n    skills: [rescue]\n    rules: [slope-move]\n"
    )
    rules = IncidentRules.load(city)
    assert rules.limit_ms("other", Level.RED, S.REPORTED) == 2 * 60_000
    assert rules.limit_ms("other", Level.RED, S.REGISTERED) == 10 * 60_000  # kept
    # The shipped red dispatch limit of waterlogging stays; the city adds one for handling.
    assert rules.limit_ms("waterlogging", Level.RED, S.DISPATCHED) == 20 * 60_000
    assert rules.limit_ms("waterlogging", Level.RED, S.IN_PROGRESS) == 90 * 60_000
    assert rules.skills("waterlogging") == ("drainage", "pumps")
    assert rules.type_for(["slope-move"]) == "landslide"


def test_a_bad_city_file_is_refused_with_its_name(tmp_path: Path) -> None:
    city = tmp_path / "bad.yaml"
    city.write_text("limits:\n  purple: {reported: 2}\n")
    with pytest.raises(IncidentRulesError, match="purple"):
        IncidentRules.load(city)
    city.write_text("limits:\n  red: {reported: -1}\n")
    with pytest.raises(IncidentRulesError, match=str(city)):
        IncidentRules.load(city)
    with pytest.raises(IncidentRulesError, match="no-such"):
        IncidentRules.load().check_type("no-such")
