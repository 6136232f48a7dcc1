"""The duty roster: who is on duty up an area's chain, notices per person, and delivery to a real webhook."""

from __future__ import annotations

import json
import threading
import time
from collections.abc import Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any

import pytest

from alerts._response_tables import ResponseDb
from alerts.errors import InvalidAlertRequestError
from alerts.events import ConditionEvent, Level
from alerts.notify import AlertFeed
from alerts.roster import DutyNotifier, NewShift, Roster
from alerts.store import AlertStore
from alerts.webhook import WebhookNotifier
from devices.access import Role

T0 = 1_750_000_000_000
H = 3_600_000


class Gateway:
    """A real HTTP server standing in for an SMS gateway: it keeps what it is sent."""

    def __init__(self) -> None:
        self.received: list[dict[str, Any]] = []
        outer = self

        class Handler(BaseHTTPRequestHandler):
            def do_POST(self) -> None:
                body = self.rfile.read(int(self.headers["content-length"]))
                outer.received.append(json.loads(body))
                self.send_response(204)
                self.end_headers()

            def log_message(self, *args: object) -> None:
                pass

        self.server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.url = f"http://127.0.0.1:{self.server.server_address[1]}/sms"
        self.thread = threading.Thread(target=self.server.serve_forever, daemon=True)
        self.thread.start()

    def wait(self, n: int, timeout: float = 10) -> list[dict[str, Any]]:
        deadline = time.monotonic() + timeout
        while len(self.received) < n:
            assert time.monotonic() < deadline, self.received
            time.sleep(0.02)
        return self.received

    def stop(self) -> None:
        self.server.shutdown()
        self.server.server_close()


@pytest.fixture
def gateway() -> Iterator[Gateway]:
    g = Gateway()
    yield g
    g.stop()


@pytest.fixture
def db(db_url: str) -> Iterator[ResponseDb]:
    d = ResponseDb(db_url)  # SQLite and PostgreSQL (tests/postgres.py), migrated by Alembic
    yield d
    d.dispose()


CHAIN = ["demo/riverside/binjiang-rd", "demo/riverside", "demo", "dp"]


def test_on_duty_walks_up_to_the_first_area_with_someone(db: ResponseDb) -> None:
    roster = Roster(db, clock=lambda: T0)
    roster.add(
        [
            NewShift("demo/riverside", Role.OFFICER, "early", T0 - 8 * H, T0),
            NewShift("demo/riverside", Role.OFFICER, "late", T0, T0 + 8 * H),
            NewShift("demo", Role.COMMANDER, "chief", T0 - H, T0 + H),
            NewShift("demo", Role.VIEWER, "watcher", T0 - H, T0 + H),
        ],
        actor="admin",
    )
    area, shifts = roster.on_duty(CHAIN, T0)
    assert (area, [s.user for s in shifts]) == ("demo/riverside", ["late"])  # ends are exclusive
    area, shifts = roster.on_duty(CHAIN, T0 + 9 * H)
    assert (area, shifts) == (None, [])
    area, shifts = roster.on_duty(["demo"], T0, roles=(Role.VIEWER,))
    assert [s.user for s in shifts] == ["watcher"]
    with pytest.raises(InvalidAlertRequestError, match="takes no duty"):
        roster.add([NewShift("demo", Role.UNIT, "crew", T0, T0 + H)], actor="admin")
    with pytest.raises(InvalidAlertRequestError, match="within a week"):
        roster.add([NewShift("demo", Role.OFFICER, "x", T0, T0 + 8 * 24 * H)], actor="admin")
    assert [s.user for s in roster.shifts(within=("demo/riverside",))] == ["early", "late"]


def test_notices_are_kept_per_person_and_sent_to_the_gateway(
    db: ResponseDb, gateway: Gateway
) -> None:
    sender = WebhookNotifier(gateway.url, channel="duty")
    sender.start()
    try:
        roster = Roster(db, receivers=[sender], clock=lambda: T0)
        roster.add(
            [
                NewShift("demo", Role.COMMANDER, "chief", T0 - H, T0 + H, "tel:110"),
                NewShift("demo", Role.OFFICER, "duty", T0 - H, T0 + H, "im:duty"),
            ],
            actor="admin",
        )
        notices = roster.notify(
            CHAIN, subject="incident:7", reason="escalated", message="handed up"
        )
        assert sorted((n.user, n.area) for n in notices) == [("chief", "demo"), ("duty", "demo")]
        (sent,) = gateway.wait(1)
        assert sent["subject"] == "incident:7"
        assert sorted(t["contact"] for t in sent["to"]) == ["im:duty", "tel:110"]
    finally:
        sender.stop()
    assert [n.user for n in roster.notices(user="chief")] == ["chief"]


def test_an_alert_nobody_acknowledged_is_told_to_the_people_on_duty(db: ResponseDb) -> None:
    roster = Roster(db, clock=lambda: T0)
    roster.add([NewShift("demo/riverside", Role.OFFICER, "river", T0 - H, T0 + H)], actor="admin")
    feed = AlertFeed()
    url = db.writer.url.render_as_string(hide_password=False)  # the roster's database
    alerts = AlertStore(url, on_change=feed.publish)
    duty = DutyNotifier(roster, lambda area: [area, area.rpartition("/")[0]], min_level=Level.RED)
    feed.subscribe(duty.observe)

    def raise_(device: str, level: Level) -> int:
        return _raise(alerts, device, level)

    quiet = raise_("a", Level.YELLOW)  # below the level that wakes people at once
    loud = raise_("b", Level.RED)
    assert duty.flush() == 1
    alerts.escalate_unacked(quiet, at_ms=T0 + 1, note="not acknowledged within 15 min")
    assert duty.flush() == 1
    got = {(n.subject, n.reason) for n in roster.notices(user="river")}
    assert got == {(f"alert:{loud}", "alert_raised"), (f"alert:{quiet}", "alert_unacknowledged")}
    # A storm's burst is one notice per person and reason, not one per alert.
    burst = [raise_(f"c{i}", Level.RED) for i in range(7)]
    assert duty.flush() == 1
    (notice,) = roster.notices(user="river", limit=1)
    assert notice.subject == f"alert:{burst[0]}"
    assert notice.message.startswith("7 alerts raised: red alert")
    assert notice.message.endswith("(and 2 more)")
    alerts.dispose()


def test_a_node_taking_the_jobs_over_tells_what_the_last_holder_had_not(db: ResponseDb) -> None:
    """An api node standing by remembers recent changes; on taking the lease it adopts those
    that no notice covers yet (the dead holder's last ones), and skips the ones it told."""
    roster = Roster(db, clock=lambda: T0)
    roster.add([NewShift("demo/riverside", Role.OFFICER, "river", T0 - H, T0 + H)], actor="admin")
    url = db.writer.url.render_as_string(hide_password=False)
    holder_feed, standby_feed = AlertFeed(), AlertFeed()
    alerts = AlertStore(url, on_change=lambda c: (holder_feed.publish(c), standby_feed.publish(c)))
    chain = lambda area: [area, area.rpartition("/")[0]]  # noqa: E731
    holder = DutyNotifier(roster, chain, min_level=Level.RED)
    standby = DutyNotifier(roster, chain, min_level=Level.RED)
    holder_feed.subscribe(holder.observe)
    standby_feed.subscribe(standby.observe_standby)

    told = _raise(alerts, "a", Level.RED)
    assert holder.flush() == 1  # the holder told of a, then died before its next flush
    lost = _raise(alerts, "b", Level.RED)
    assert standby.flush() == 0  # standing by: it tells nobody
    assert standby.adopt(window_s=30) == 1  # it takes the lease: b only
    assert standby.flush() == 1
    subjects = [n.subject for n in roster.notices(user="river")]
    assert sorted(subjects) == sorted([f"alert:{told}", f"alert:{lost}"])
    assert standby.adopt(window_s=30) == 0  # nothing remembered twice
    alerts.dispose()


def _raise(alerts: AlertStore, device: str, level: Level) -> int:
    """A firing threshold condition on ``device`` in the riverside; the alert's id."""
    change = alerts.apply(
        ConditionEvent(
            rule="r",
            source=f"device:{device}",
            kind="threshold",
            level=level,
            firing=True,
            at_ms=T0,
            summary=f"{device} high",
            device=device,
            area="demo/riverside/x",
        )
    )
    assert change is not None
    return change.alert.id
