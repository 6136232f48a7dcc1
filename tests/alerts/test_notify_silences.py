"""Silences and inhibition: pure matching tables, and silences kept in SQL."""

from __future__ import annotations

from collections.abc import Iterator

import pytest
from pydantic import ValidationError

from alerts.errors import InvalidAlertRequestError, SilenceNotFoundError
from alerts.events import Level
from alerts.lifecycle import Alert, State
from alerts.silences import (
    AREA_DARK_MUTES_ITS_DEVICES,
    InhibitRule,
    Matcher,
    MuteReason,
    Silence,
    SilenceState,
    SilenceStore,
    mute_reason,
)


def alert(
    id: int = 1,
    *,
    source: str = "device:wl-00001",
    kind: str = "threshold",
    area: str | None = "sh/huangpu/bund",
    device: str | None = "wl-00001",
    level: Level = Level.ORANGE,
    state: State = State.RAISED,
    firing: bool = True,
) -> Alert:
    return Alert(
        id=id,
        rule="wl-high",
        source=source,
        kind=kind,
        level=level,
        state=state,
        firing=firing,
        summary="s",
        first_ms=0,
        last_ms=0,
        updated_ms=0,
        seq=1,
        state_ms=0,
        device=device,
        area=area,
    )


@pytest.mark.parametrize(
    ("name", "op", "value", "expected"),
    [
        ("device", "=", "wl-00001", True),
        ("device", "=", "wl-0000", False),
        ("device", "!=", "wl-00002", True),
        ("device", "=~", "wl-.*", True),
        ("device", "=~", "wl", False),  # anchored: the whole value must match
        ("device", "!~", "bin-.*", True),
        ("area", "=~", "sh/huangpu(/.*)?", True),
        ("area", "=~", "sh/xuhui(/.*)?", False),
        ("level", "=", "orange", True),
        ("level", "=~", "orange|red", True),
        ("level", "=", "red", False),
        ("metric", "=", "", True),  # a missing field is ""
        ("metric", "!=", "", False),
        ("kind", "=", "threshold", True),
        ("rule", "!~", "wl-.*", False),
    ],
)
def test_matchers(name: str, op: str, value: str, expected: bool) -> None:
    m = Matcher.model_validate({"name": name, "op": op, "value": value})
    assert m.matches(alert()) is expected


def test_a_matcher_refuses_a_bad_regex_and_an_unknown_field() -> None:
    with pytest.raises(ValidationError, match="not a regular expression"):
        Matcher.model_validate({"name": "device", "op": "=~", "value": "wl-("})
    with pytest.raises(ValidationError):
        Matcher.model_validate({"name": "vendor", "value": "acme"})
    assert Matcher.model_validate({"name": "device", "value": "wl-("}).value == "wl-("  # literal


def test_a_silence_has_a_window() -> None:
    s = Silence(1, (Matcher(name="device", value="wl-00001"),), 100, 200, "wang", "maintenance")
    assert [s.state(t) for t in (99, 100, 199, 200)] == [
        SilenceState.PENDING,
        SilenceState.ACTIVE,
        SilenceState.ACTIVE,
        SilenceState.EXPIRED,
    ]
    assert s.mutes(alert(), 150)
    assert not s.mutes(alert(), 250)
    assert not s.mutes(alert(device="wl-00002"), 150)


def area_dark(id: int = 100, **kw: object) -> Alert:
    return alert(
        id,
        source="area:sh/xuhui/street-0",
        kind="offline",
        area="sh/xuhui/street-0",
        device=None,
        **kw,  # type: ignore[arg-type]
    )


def device_offline(id: int, area: str) -> Alert:
    return alert(id, source=f"device:bin-{id:05d}", kind="offline", area=area, device=f"bin-{id}")


def test_an_area_gone_dark_mutes_its_devices_offline_alerts() -> None:
    rule = AREA_DARK_MUTES_ITS_DEVICES
    dark = area_dark()
    assert rule.inhibits(dark, device_offline(1, "sh/xuhui/street-0"))
    assert rule.inhibits(dark, device_offline(2, "sh/xuhui/street-0/grid-7"))
    assert not rule.inhibits(dark, device_offline(3, "sh/xuhui/street-01"))  # a path, not a prefix
    assert not rule.inhibits(dark, device_offline(4, "sh/huangpu/street-0"))
    assert not rule.inhibits(dark, alert(5, area="sh/xuhui/street-0"))  # not an offline alert
    assert not rule.inhibits(dark, dark)
    assert not rule.inhibits(area_dark(firing=False), device_offline(1, "sh/xuhui/street-0"))
    closed = area_dark(state=State.CLOSED)
    assert not rule.inhibits(closed, device_offline(1, "sh/xuhui/street-0"))


def test_inhibition_with_equal_fields() -> None:
    rule = InhibitRule(
        source=(Matcher(name="level", value="red"),),
        target=(Matcher(name="level", op="!=", value="red"),),
        equal=("device",),
    )
    red = alert(1, level=Level.RED)
    assert rule.inhibits(red, alert(2, level=Level.YELLOW))
    assert not rule.inhibits(red, alert(3, level=Level.YELLOW, device="wl-00002"))


def test_mute_reason_says_silenced_before_inhibited() -> None:
    dark = area_dark()
    target = device_offline(1, "sh/xuhui/street-0")
    rules = [AREA_DARK_MUTES_ITS_DEVICES]
    silence = Silence(1, (Matcher(name="kind", value="offline"),), 0, 1000, "wang", "power works")
    assert mute_reason(target, 10, [], rules, [dark, target]) is MuteReason.INHIBITED
    assert mute_reason(target, 10, [silence], rules, [dark, target]) is MuteReason.SILENCED
    assert mute_reason(target, 2000, [silence], [], [dark, target]) is None
    assert mute_reason(dark, 10, [], rules, [dark, target]) is None


@pytest.fixture
def silences(db_url: str) -> Iterator[SilenceStore]:
    store = SilenceStore(db_url)  # SQLite and PostgreSQL (tests/postgres.py), migrated by Alembic
    yield store
    store.dispose()


def test_the_silence_store(silences: SilenceStore) -> None:
    m = (Matcher(name="area", op="=~", value="sh/huangpu(/.*)?"),)
    a = silences.create(m, starts_ms=100, ends_ms=200, created_by="wang", comment="pump works")
    b = silences.create(m, starts_ms=500, ends_ms=900, created_by="wang", comment="later")
    assert silences.get(a.id) == a
    assert [s.id for s in silences.silences()] == [b.id, a.id]
    assert [s.id for s in silences.silences(current_at=150)] == [b.id, a.id]
    assert [s.id for s in silences.silences(current_at=200)] == [b.id]
    ended = silences.expire(a.id, 150)
    assert (ended.ends_ms, ended.state(150)) == (150, SilenceState.EXPIRED)
    assert silences.expire(a.id, 170) == ended  # expiring twice changes nothing
    never = silences.expire(b.id, 150)  # a pending silence never starts
    assert never.state(600) is SilenceState.EXPIRED
    assert silences.silences(current_at=150) == []
    with pytest.raises(SilenceNotFoundError):
        silences.get(999)


def test_a_silence_needs_matchers_and_a_window(silences: SilenceStore) -> None:
    with pytest.raises(InvalidAlertRequestError, match="at least one matcher"):
        silences.create((), starts_ms=0, ends_ms=10, created_by="x", comment="all")
    m = (Matcher(name="device", value="x"),)
    with pytest.raises(InvalidAlertRequestError, match="end after"):
        silences.create(m, starts_ms=10, ends_ms=10, created_by="x", comment="empty")


def test_the_indexed_inhibition_agrees_with_every_pair_checked() -> None:
    import random  # noqa: PLC0415

    from alerts.silences import inhibited  # noqa: PLC0415

    rng = random.Random(5)
    areas = [
        "sh",
        "sh/xuhui",
        "sh/xuhui/street-0",
        "sh/xuhui/street-0/g1",
        "sh/xuhui/street-01",
        "sh/huangpu/bund",
        None,
    ]
    rules = [
        AREA_DARK_MUTES_ITS_DEVICES,
        InhibitRule(
            source=(Matcher(name="level", value="red"),),
            target=(Matcher(name="level", value="yellow"),),
            equal=("device",),
        ),
    ]
    for _ in range(30):
        alerts = []
        for i in range(1, 60):
            area = rng.choice(areas)
            is_area = rng.random() < 0.2
            alerts.append(
                alert(
                    i,
                    source=f"area:{area}" if is_area else f"device:d{rng.randint(1, 8)}",
                    kind=rng.choice(["offline", "offline", "threshold"]),
                    area=area,
                    device=None if is_area else f"d{rng.randint(1, 8)}",
                    level=rng.choice([Level.YELLOW, Level.RED, Level.BLUE]),
                    state=rng.choice([State.RAISED, State.ACKNOWLEDGED, State.CLOSED]),
                    firing=rng.random() < 0.8,
                )
            )
        pairs = {t.id for t in alerts for r in rules for s in alerts if r.inhibits(s, t)}
        assert inhibited(alerts, rules) == pairs
