"""The alert store on a real SQLite file: condition events, people's actions, audit, concurrency."""

from __future__ import annotations

import itertools
import threading

import pytest
import sqlalchemy as sa

from alerts.errors import ActionForbiddenError, AlertNotFoundError, InvalidTransitionError
from alerts.events import ConditionEvent, Evidence, Level
from alerts.lifecycle import SYSTEM_ACTOR, Action, AlertChange, ChangeKind, State
from alerts.store import AlertPolicy, AlertQuery, AlertStore
from devices.access import Role

VENDORS = {"wl-00001": "hydrox", "wl-00002": "hydrox", "bin-00001": "acme"}
_clock = itertools.count(1_000_000, 1000)


def event(
    level: Level = Level.ORANGE,
    *,
    firing: bool = True,
    rule: str = "wl-high",
    device: str = "wl-00001",
    area: str = "sh/huangpu/bund",
    at_ms: int | None = None,
    evidence: tuple[Evidence, ...] = (),
    kind: str = "threshold",
) -> ConditionEvent:
    return ConditionEvent(
        rule=rule,
        source=f"device:{device}",
        kind=kind,
        level=level,
        firing=firing,
        at_ms=at_ms if at_ms is not None else next(_clock),
        summary=f"water level {level.label}" if firing else "water level back to normal",
        device=device,
        area=area,
        metric="water_level",
        value=5.3,
        evidence=evidence,
    )


@pytest.fixture
def url(db_url: str) -> str:
    """Every test here runs on SQLite and on PostgreSQL (tests/postgres.py), migrated by Alembic."""
    return db_url


class Recorder:
    def __init__(self) -> None:
        self.changes: list[AlertChange] = []

    def __call__(self, change: AlertChange) -> None:
        self.changes.append(change)


@pytest.fixture
def seen() -> Recorder:
    return Recorder()


@pytest.fixture
def store(url: str, seen: Recorder) -> AlertStore:
    s = AlertStore(url, on_change=seen, vendor_of=VENDORS.get, clock=lambda: next(_clock))
    yield s
    s.dispose()


def test_firing_without_an_active_alert_raises_one(store: AlertStore, seen: Recorder) -> None:
    ev = (
        Evidence("wl-00001", "water_level", 990, 5.25),
        Evidence("wl-00001", "water_level", 999, 5.3),
    )
    change = store.apply(event(Level.ORANGE, evidence=ev, at_ms=1000))
    assert change is not None
    assert change.kind is ChangeKind.CREATED
    a = change.alert
    assert (a.state, a.level, a.firing, a.vendor, a.first_ms, a.seq) == (
        State.RAISED,
        Level.ORANGE,
        True,
        "hydrox",
        1000,
        1,
    )
    assert store.get(a.id) == a
    assert seen.changes == [change]
    assert [(e.device, e.ts_ms, e.value) for e in store.evidence(a.id)] == [
        ("wl-00001", 990, 5.25),
        ("wl-00001", 999, 5.3),
    ]
    assert store.history(a.id)[0].actor == SYSTEM_ACTOR


def test_level_changes_are_recorded_while_active(store: AlertStore) -> None:
    first = store.apply(event(Level.YELLOW))
    assert first is not None
    up = store.apply(event(Level.RED))
    down = store.apply(event(Level.ORANGE))
    assert up is not None
    assert down is not None
    assert (up.entry.action, up.entry.from_level, up.entry.to_level) == (
        Action.ESCALATE,
        Level.YELLOW,
        Level.RED,
    )
    assert (down.entry.action, down.alert.level) == (Action.DEESCALATE, Level.ORANGE)
    assert up.alert.id == down.alert.id == first.alert.id
    assert store.query(AlertQuery())[1] == 1


def test_a_repeat_refreshes_but_records_nothing(store: AlertStore, seen: Recorder) -> None:
    first = store.apply(event(Level.ORANGE, at_ms=1000))
    assert first is not None
    assert store.apply(event(Level.ORANGE, at_ms=5000)) is None
    alert = store.get(first.alert.id)
    assert alert.last_ms == 5000
    assert alert.seq == 1
    assert len(seen.changes) == 1


def test_clear_is_independent_of_acknowledgement(store: AlertStore) -> None:
    raised = store.apply(event(Level.RED))
    assert raised is not None
    cleared = store.apply(event(Level.RED, firing=False, at_ms=next(_clock)))
    assert cleared is not None
    assert cleared.kind is ChangeKind.CLEARED
    assert (cleared.alert.state, cleared.alert.firing) == (State.RAISED, False)  # CLEARED_UNACK
    assert cleared.alert.cleared_ms == cleared.entry.at_ms
    assert store.apply(event(Level.RED, firing=False)) is None  # a second clear changes nothing
    acked = store.act(raised.alert.id, Action.ACKNOWLEDGE, actor="li", role=Role.OFFICER)
    assert (acked.alert.state, acked.alert.firing) == (State.ACKNOWLEDGED, False)  # CLEARED_ACK


def test_acknowledged_then_cleared_stays_acknowledged(store: AlertStore) -> None:
    raised = store.apply(event())
    assert raised is not None
    store.act(raised.alert.id, Action.ACKNOWLEDGE, actor="li", role=Role.OFFICER)
    cleared = store.apply(event(firing=False))
    assert cleared is not None
    assert (cleared.alert.state, cleared.alert.firing) == (State.ACKNOWLEDGED, False)
    refired = store.apply(event(Level.RED))
    assert refired is not None
    assert refired.kind is ChangeKind.REFIRED
    assert (refired.alert.state, refired.alert.level, refired.alert.firing) == (
        State.ACKNOWLEDGED,
        Level.RED,
        True,
    )
    assert refired.alert.cleared_ms is None


def test_a_cleared_event_without_an_alert_does_nothing(store: AlertStore, seen: Recorder) -> None:
    assert store.apply(event(firing=False)) is None
    assert store.query(AlertQuery())[1] == 0
    assert seen.changes == []


def test_auto_close_policy_closes_only_unacknowledged_alerts(url: str) -> None:
    seen = Recorder()
    store = AlertStore(url, policy=AlertPolicy(auto_close_cleared_unacked=True), on_change=seen)
    a = store.apply(event(device="wl-00001"))
    b = store.apply(event(device="wl-00002"))
    assert a is not None
    assert b is not None
    store.act(b.alert.id, Action.ACKNOWLEDGE, actor="li", role=Role.OFFICER)
    closed = store.apply(event(device="wl-00001", firing=False))
    kept = store.apply(event(device="wl-00002", firing=False))
    assert closed is not None
    assert kept is not None
    assert (closed.entry.action, closed.alert.state, closed.entry.actor) == (
        Action.AUTO_CLOSE,
        State.CLOSED,
        SYSTEM_ACTOR,
    )
    assert "before anyone acknowledged" in closed.entry.note
    assert kept.alert.state is State.ACKNOWLEDGED
    # Both steps are in the history and went out as notifications, in order.
    assert [e.action for e in store.history(a.alert.id)] == [
        Action.RAISE,
        Action.CLEAR,
        Action.AUTO_CLOSE,
    ]
    assert [c.entry.action for c in seen.changes if c.alert.id == a.alert.id] == [
        Action.RAISE,
        Action.CLEAR,
        Action.AUTO_CLOSE,
    ]
    # Closed is not active: the next firing raises a new alert.
    again = store.apply(event(device="wl-00001"))
    assert again is not None
    assert again.kind is ChangeKind.CREATED
    assert again.alert.id != a.alert.id
    store.dispose()


def test_without_the_policy_a_cleared_unacknowledged_alert_waits(store: AlertStore) -> None:
    a = store.apply(event())
    store.apply(event(firing=False))
    assert a is not None
    assert store.get(a.alert.id).state is State.RAISED


def test_a_closed_alert_is_not_active(store: AlertStore) -> None:
    a = store.apply(event(Level.RED))
    assert a is not None
    aid = a.alert.id
    store.act(aid, Action.DISPATCH, actor="wang", role=Role.COMMANDER, target="drainage 3")
    store.act(aid, Action.RESOLVE, actor="wang", role=Role.COMMANDER)
    store.apply(event(Level.RED, firing=False))
    store.act(aid, Action.CLOSE, actor="wang", role=Role.COMMANDER, note="pumps ran")
    assert store.active("device:wl-00001", "wl-high") is None
    b = store.apply(event(Level.YELLOW))
    assert b is not None
    assert b.kind is ChangeKind.CREATED
    assert b.alert.id != aid
    assert store.active("device:wl-00001", "wl-high") == b.alert
    assert store.get(aid).state is State.CLOSED


def test_a_resolved_alert_reopens_when_its_condition_comes_back(store: AlertStore) -> None:
    a = store.apply(event(Level.ORANGE))
    assert a is not None
    aid = a.alert.id
    store.act(aid, Action.ACKNOWLEDGE, actor="li", role=Role.OFFICER)
    store.act(aid, Action.RESOLVE, actor="li", role=Role.OFFICER)
    store.apply(event(firing=False))
    back = store.apply(event(Level.ORANGE))
    assert back is not None
    assert (back.entry.action, back.entry.from_state, back.alert.state) == (
        Action.REFIRE,
        State.RESOLVED,
        State.RAISED,
    )
    assert back.alert.acknowledged_ms is None  # nobody has it now


def test_people_s_actions_and_their_errors(store: AlertStore) -> None:
    a = store.apply(event())
    assert a is not None
    aid = a.alert.id
    with pytest.raises(InvalidTransitionError) as err:
        store.act(aid, Action.RESOLVE, actor="li", role=Role.OFFICER)
    assert err.value.state == "raised"
    assert err.value.allowed == ["acknowledge", "assign", "dispatch", "comment"]
    with pytest.raises(ActionForbiddenError):
        store.act(aid, Action.DISPATCH, actor="li", role=Role.OFFICER, target="x")
    with pytest.raises(ActionForbiddenError):
        store.act(aid, Action.COMMENT, actor="v", role=Role.VIEWER, note="hi")
    with pytest.raises(AlertNotFoundError):
        store.act(aid + 100, Action.ACKNOWLEDGE, actor="li", role=Role.OFFICER)
    assigned = store.act(aid, Action.ASSIGN, actor="li", role=Role.OFFICER, target="zhao")
    assert (assigned.alert.assignee, assigned.alert.state, assigned.kind) == (
        "zhao",
        State.RAISED,
        ChangeKind.UPDATED,
    )
    sent = store.act(
        aid, Action.DISPATCH, actor="wang", role=Role.COMMANDER, target="pump team 2", note="go"
    )
    assert (sent.alert.state, sent.alert.unit) == (State.DISPATCHED, "pump team 2")
    assert sent.alert.acknowledged_ms is not None  # dispatching is acknowledging
    assert (sent.entry.target, sent.entry.note) == ("pump team 2", "go")
    # Two people acknowledging at once: the second one is told it is too late.
    with pytest.raises(InvalidTransitionError):
        store.act(aid, Action.ACKNOWLEDGE, actor="li", role=Role.OFFICER)


def test_close_while_firing_needs_force_and_says_so(store: AlertStore) -> None:
    a = store.apply(event())
    assert a is not None
    aid = a.alert.id
    store.act(aid, Action.ACKNOWLEDGE, actor="li", role=Role.OFFICER)
    store.act(aid, Action.RESOLVE, actor="li", role=Role.OFFICER)
    with pytest.raises(InvalidTransitionError, match="still holds"):
        store.act(aid, Action.CLOSE, actor="wang", role=Role.COMMANDER)
    closed = store.act(
        aid, Action.CLOSE, actor="wang", role=Role.COMMANDER, force=True, note="gauge broken"
    )
    assert closed.alert.state is State.CLOSED
    assert closed.entry.note == "closed while the condition still held. gauge broken"


def test_the_audit_is_complete_and_chained(store: AlertStore, seen: Recorder) -> None:
    a = store.apply(event(Level.YELLOW))
    assert a is not None
    aid = a.alert.id
    store.apply(event(Level.RED))
    store.act(aid, Action.ACKNOWLEDGE, actor="li", role=Role.OFFICER, note="seen")
    store.act(aid, Action.ASSIGN, actor="li", role=Role.OFFICER, target="zhao")
    store.act(aid, Action.DISPATCH, actor="wang", role=Role.COMMANDER, target="unit 4")
    store.act(aid, Action.COMMENT, actor="zhao", role=Role.OFFICER, note="on site")
    store.apply(event(Level.ORANGE))
    store.apply(event(Level.ORANGE, firing=False))
    store.act(aid, Action.RESOLVE, actor="zhao", role=Role.OFFICER, note="drained")
    store.act(aid, Action.CLOSE, actor="wang", role=Role.COMMANDER)
    store.act(aid, Action.COMMENT, actor="wang", role=Role.ADMIN, note="report filed")
    history = store.history(aid)
    assert [e.action for e in history] == [
        Action.RAISE,
        Action.ESCALATE,
        Action.ACKNOWLEDGE,
        Action.ASSIGN,
        Action.DISPATCH,
        Action.COMMENT,
        Action.DEESCALATE,
        Action.CLEAR,
        Action.RESOLVE,
        Action.CLOSE,
        Action.COMMENT,
    ]
    assert [e.seq for e in history] == list(range(1, len(history) + 1))
    for before, after in itertools.pairwise(history):
        assert after.from_state is before.to_state
        assert after.from_level is before.to_level
        assert after.at_ms >= before.at_ms
    assert all(e.actor for e in history)
    assert store.get(aid).seq == history[-1].seq
    # Every history line went out as a change, and only those.
    assert [c.entry for c in seen.changes] == history


def test_the_audit_refuses_update_and_delete(store: AlertStore, url: str) -> None:
    a = store.apply(event())
    assert a is not None
    engine = sa.create_engine(url)
    with pytest.raises(sa.exc.DBAPIError, match="append-only"), engine.begin() as conn:
        conn.exec_driver_sql("UPDATE alert_audit SET actor = 'someone else'")
    with pytest.raises(sa.exc.DBAPIError, match="append-only"), engine.begin() as conn:
        conn.exec_driver_sql("DELETE FROM alert_audit")
    engine.dispose()
    assert store.history(a.alert.id)[0].actor == SYSTEM_ACTOR


def test_the_database_refuses_a_second_active_alert(store: AlertStore, url: str) -> None:
    a = store.apply(event())
    assert a is not None
    engine = sa.create_engine(url)
    row = (
        "INSERT INTO alerts (rule, source, kind, level, state, firing, summary, first_ms, last_ms, "
        "updated_ms, seq, state_ms) VALUES ('wl-high', 'device:wl-00001', 'threshold', 3, '{}', "
        "TRUE, 's', 1, 1, 1, 1, 1)"
    )
    # SQLite says "UNIQUE constraint failed", PostgreSQL "violates unique constraint".
    with pytest.raises(sa.exc.IntegrityError, match=r"(?i)unique"), engine.begin() as conn:
        conn.exec_driver_sql(row.format("acknowledged"))
    with engine.begin() as conn:  # closed rows are history: any number of them
        conn.exec_driver_sql(row.format("closed"))
        conn.exec_driver_sql(row.format("closed"))
    engine.dispose()


@pytest.mark.parametrize("levels", ["same", "mixed"])
def test_concurrent_firings_create_exactly_one_alert(url: str, levels: str) -> None:
    # Two stores on one file are two hub workers: neither's in-process lock protects the other.
    stores = [AlertStore(url), AlertStore(url)]
    rules = [f"rule-{i}" for i in range(15)]
    threads_per_store = 4
    results: list[AlertChange | None] = []
    errors: list[BaseException] = []
    barrier = threading.Barrier(len(stores) * threads_per_store)
    lock = threading.Lock()

    def worker(store: AlertStore, n: int) -> None:
        level = Level.ORANGE if levels == "same" else Level(1 + n % 4)
        try:
            for rule in rules:
                barrier.wait(10)
                change = store.apply(event(level, rule=rule, at_ms=1000 + n))
                with lock:
                    results.append(change)
        except BaseException as exc:  # reported below
            errors.append(exc)
            barrier.abort()

    threads = [
        threading.Thread(target=worker, args=(s, i * len(stores) + j))
        for j, s in enumerate(stores)
        for i in range(threads_per_store)
    ]
    for t in threads:
        t.start()
    for t in threads:
        t.join(60)
    assert not errors, errors
    for rule in rules:
        found, total = stores[0].query(AlertQuery(rule=rule))
        assert total == 1, rule
        history = stores[0].history(found[0].id)
        assert [e.action for e in history].count(Action.RAISE) == 1
        assert [e.seq for e in history] == list(range(1, len(history) + 1))
    created = [c for c in results if c is not None and c.kind is ChangeKind.CREATED]
    assert len(created) == len(rules)
    if levels == "same":
        assert sum(c is not None for c in results) == len(rules)
    for s in stores:
        s.dispose()


def test_queries(store: AlertStore) -> None:
    store.apply(event(Level.BLUE, rule="r1", device="wl-00001", area="sh/huangpu/bund", at_ms=10))
    store.apply(event(Level.RED, rule="r2", device="wl-00002", area="sh/huangpu2/x", at_ms=20))
    c = store.apply(
        event(
            Level.ORANGE, rule="r3", device="bin-00001", area="sh/xuhui", kind="offline", at_ms=30
        )
    )
    assert c is not None
    store.apply(event(Level.ORANGE, rule="r3", device="bin-00001", firing=False, at_ms=40))

    def rules(**kw: object) -> list[str]:
        return [a.rule for a in store.query(AlertQuery(**kw))[0]]  # type: ignore[arg-type]

    assert rules() == ["r3", "r2", "r1"]
    assert rules(order="severity") == ["r2", "r3", "r1"]
    assert rules(order="updated") == ["r3", "r2", "r1"]
    assert rules(min_level=Level.ORANGE) == ["r3", "r2"]
    assert rules(area="sh/huangpu") == ["r1"]  # a path prefix, not a string prefix
    assert rules(area="sh/huangpu/") == ["r1"]
    assert rules(area="sh") == ["r3", "r2", "r1"]
    assert rules(kind="offline") == ["r3"]
    assert rules(device="wl-00002") == ["r2"]
    assert rules(firing=False) == ["r3"]
    assert rules(vendor="hydrox") == ["r2", "r1"]
    assert rules(states=(State.RAISED,)) == ["r3", "r2", "r1"]
    assert rules(until_ms=20) == ["r1"]
    assert rules(offset=1, limit=1) == ["r2"]
    assert store.query(AlertQuery(limit=1))[1] == 3
    store.act(c.alert.id, Action.ACKNOWLEDGE, actor="li", role=Role.OFFICER)
    store.act(c.alert.id, Action.RESOLVE, actor="li", role=Role.OFFICER)
    store.act(c.alert.id, Action.CLOSE, actor="wang", role=Role.COMMANDER)
    closed_at = store.get(c.alert.id).closed_ms
    assert closed_at is not None
    assert rules(active=True) == ["r2", "r1"]
    assert rules(active=False) == ["r3"]
    assert rules(since_ms=closed_at + 1) == ["r2", "r1"]  # closed before the window
    assert rules(since_ms=closed_at) == ["r3", "r2", "r1"]


def test_vendor_scope_on_get(store: AlertStore) -> None:
    a = store.apply(event(device="bin-00001"))
    area = store.apply(
        ConditionEvent(
            rule="dark",
            source="area:sh/xuhui",
            kind="offline",
            level=Level.ORANGE,
            firing=True,
            at_ms=5,
            summary="the area went dark",
            area="sh/xuhui",
        )
    )
    assert a is not None
    assert area is not None
    assert store.get(a.alert.id, vendor="acme").id == a.alert.id
    with pytest.raises(AlertNotFoundError):
        store.get(a.alert.id, vendor="hydrox")
    with pytest.raises(AlertNotFoundError):
        store.get(area.alert.id, vendor="acme")  # area alerts belong to no vendor


def test_a_failing_listener_does_not_undo_the_change(url: str) -> None:
    def broken(_change: AlertChange) -> None:
        raise RuntimeError("listener bug")

    store = AlertStore(url, on_change=broken)
    change = store.apply(event())
    assert change is not None
    assert store.get(change.alert.id).state is State.RAISED
    store.dispose()


def test_a_burst_of_events_is_applied_in_order_in_one_transaction(
    store: AlertStore, seen: Recorder, url: str
) -> None:
    burst = [
        event(Level.YELLOW),
        event(Level.YELLOW),  # a repeat: no change
        event(Level.RED),
        event(Level.BLUE, device="bin-00001", rule="bin-full"),
        event(Level.RED, firing=False),
    ]
    changes = store.apply_many(burst)
    assert [c.kind for c in changes] == [
        ChangeKind.CREATED,
        ChangeKind.LEVEL_CHANGED,
        ChangeKind.CREATED,
        ChangeKind.CLEARED,
    ]
    assert [c.kind for c in seen.changes] == [c.kind for c in changes]
    wl = store.active("device:wl-00001", "wl-high")
    assert wl is not None
    assert wl.level is Level.RED
    assert not wl.firing
    assert store.apply_many([]) == []


def test_a_failing_burst_applies_none_of_its_events(store: AlertStore, url: str) -> None:
    engine = sa.create_engine(url)
    with engine.begin() as conn:  # make the second event's insert fail inside the transaction
        if engine.dialect.name == "postgresql":  # SQLSTATE 23000: an IntegrityError, like ABORT
            conn.exec_driver_sql(
                "CREATE FUNCTION no_bins() RETURNS trigger LANGUAGE plpgsql AS $$ BEGIN "
                "IF NEW.device = 'bin-00001' THEN "
                "RAISE EXCEPTION 'no bins today' USING ERRCODE = '23000'; END IF; "
                "RETURN NEW; END $$"
            )
            conn.exec_driver_sql(
                "CREATE TRIGGER no_bins BEFORE INSERT ON alerts "
                "FOR EACH ROW EXECUTE FUNCTION no_bins()"
            )
        else:
            conn.exec_driver_sql(
                "CREATE TRIGGER no_bins BEFORE INSERT ON alerts WHEN NEW.device = 'bin-00001' "
                "BEGIN SELECT RAISE(ABORT, 'no bins today'); END"
            )
    engine.dispose()
    with pytest.raises(sa.exc.IntegrityError):
        store.apply_many([event(Level.YELLOW), event(Level.BLUE, device="bin-00001", rule="bf")])
    assert store.active("device:wl-00001", "wl-high") is None
