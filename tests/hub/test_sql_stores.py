"""The stores without a store-level suite of their own, on SQLite and on PostgreSQL.

The registry, credentials, alerts, incidents, areas, units, roster, warnings, silences and cameras
run their own modules over ``db_url``; the rule book's edits and history, the dead letters and the
accounts are checked here against the same two databases, migrated by Alembic.
"""

from __future__ import annotations

from pathlib import Path

import pytest
import sqlalchemy as sa

from alerts.rulebook import RuleBook, RuleConflictError
from alerts.rules import ThresholdRule
from devices.access import Role
from devices.users import UserStore
from ingest.codecs.base import DecodeError, DecodeReason, RawMessage
from ingest.columns import Rejection
from ingest.deadletter import DeadLetterQuery, DeadLetterStore

RULES = """
- id: cover-open
  kind: threshold
  device_type: manhole_cover
  metric: cover_open
  levels: {orange: 1}
"""
GAS = {"id": "gas", "kind": "threshold", "metric": "gas_lel", "levels": {"red": 50}}


def test_rule_edits_and_their_history_survive_reopening(db_url: str, tmp_path: Path) -> None:
    path = tmp_path / "rules.yaml"
    path.write_text(RULES)
    now = [1_000]
    book = RuleBook(db_url, paths=[path], shipped=False, clock=lambda: now[0])
    book.put(GAS, actor="chief", note="new sensor")
    now[0] += 1
    book.put({**GAS, "levels": {"red": 40}}, actor="chief")
    with pytest.raises(RuleConflictError):
        book.delete("cover-open", actor="chief")  # a file rule: edit the file
    book.dispose()
    again = RuleBook(db_url, paths=[path], shipped=False)
    try:
        assert [r.id for r in again.rules()] == ["cover-open", "gas"]
        gas = again.get("gas").rule
        assert isinstance(gas, ThresholdRule)
        assert gas.levels["red"].above == 40
        history = again.history("gas")
        assert [(h.action, h.actor, h.at_ms) for h in reversed(history)] == [
            ("put", "chief", 1_000),
            ("put", "chief", 1_001),
        ]
        assert history[-1].note == "new sensor"
        again.delete("gas", actor="chief")
        assert [r.id for r in again.rules()] == ["cover-open"]
        assert again.history("gas")[0].action == "delete"
    finally:
        again.dispose()


def test_dead_letters_are_kept_counted_and_paged(db_url: str) -> None:
    store = DeadLetterStore(db_url)
    rejections = [
        Rejection(
            RawMessage(
                topic=f"sensors/acme/d{i % 3}/up",
                payload=b"{" * 10,
                vendor="acme",
                device_id=f"d{i % 3}",
                received_ms=1_000 + i,
            ),
            DecodeError(DecodeReason.MALFORMED_JSON, "not JSON", None),
        )
        for i in range(30)
    ]
    store.write(rejections)
    assert store.total() == 30
    assert store.count_for("d1") == {"malformed_json": 10}
    page, matching = store.list(DeadLetterQuery(device="d2", limit=4))
    assert matching == 10
    assert [round(d.ts.timestamp() * 1000) for d in page] == [1_029, 1_026, 1_023, 1_020]
    store.engine.dispose()
    assert DeadLetterStore(db_url).count_for("d0") == {"malformed_json": 10}  # counts come back


def test_accounts_and_sessions(db_url: str) -> None:
    users = UserStore(db_url)
    users.create_user("chief", Role.ADMIN, password="a long enough password")
    token = users.login("chief", "a long enough password")
    assert token is not None
    assert users.login("chief", "wrong password here") is None
    principal = users.authenticate(token.token)
    assert principal is not None
    assert (principal.user, principal.role) == ("chief", Role.ADMIN)
    # The name is the key, in the database too.
    with pytest.raises(sa.exc.IntegrityError), users.engine.begin() as conn:
        conn.execute(
            sa.text(
                "INSERT INTO users (name, role, password_hash, disabled, created) "
                "VALUES ('chief', 'viewer', 'x', FALSE, CURRENT_TIMESTAMP)"
            )
        )


def test_rules_edited_on_another_node_come_into_force_on_refresh(
    db_url: str, tmp_path: Path
) -> None:
    """Two hub nodes share the edit tables: one edits, the other refreshes (hub: registry watch)."""
    path = tmp_path / "rules.yaml"
    path.write_text(RULES)
    api_node = RuleBook(db_url, paths=[path], shipped=False)
    worker = RuleBook(db_url, paths=[path], shipped=False)
    heard: list[list[str]] = []
    worker.subscribe(lambda rules: heard.append([r.id for r in rules]))
    assert worker.refresh() is False  # nothing changed since it opened
    api_node.put(GAS, actor="chief")
    assert worker.refresh() is True
    assert [r.id for r in worker.rules()] == ["cover-open", "gas"]
    assert heard == [["cover-open", "gas"]]
    assert worker.refresh() is False  # once per change
    api_node.delete("gas", actor="chief")
    assert worker.refresh() is True
    assert heard[-1] == ["cover-open"]
    api_node.dispose()
    worker.dispose()
