"""Where the rules in force come from: rule files (shipped and the city's own) and rules edited over the API.

Two layers. **Files** are read at start and on `reload` (`alerts/data/rules.yaml` unless turned off,
then the configured paths, in order); one bad file loads nothing and the rules in force stay.
**Edited** rules live in the database, written by people through ``/api/v1/rules``: a new id adds a
rule; an id a file defines *overrides* that file's rule (a commander raising a gauge's warning level
during a flood season without shell access to the machine room), and deleting the edit brings the
file's version back. Every edit is kept in an append-only history with who and when.

Whatever the layers give is checked as one set (`check_rule_set`) before it is committed or put in
force, so an edit that would leave a composite rule naming a missing rule is refused, with the field.
"""

from __future__ import annotations

import json
import logging
import threading
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import sqlalchemy as sa
from sqlalchemy.engine import Connection, Engine

from alerts._tables import sqlite_autocommit_driver, sqlite_begin_immediate
from alerts.errors import AlertError
from alerts.rules import Rule, RuleError
from alerts.ruleset import check_rule_set, load_rules, parse_rules, shipped_rules

SHIPPED = "alerts/data/rules.yaml"
EDITED = "api"

_metadata = sa.MetaData()

logger = logging.getLogger(__name__)

edited_rules = sa.Table(
    "rules_edited",
    _metadata,
    sa.Column("id", sa.String(64), primary_key=True),
    sa.Column("body", sa.Text, nullable=False),  # the rule as JSON, validated on the way in
    sa.Column("position", sa.Integer, nullable=False),  # the order edits were first made in
    sa.Column("updated_by", sa.String(64), nullable=False),
    sa.Column("updated_ms", sa.BigInteger, nullable=False),
)

rule_history = sa.Table(
    "rules_history",
    _metadata,
    sa.Column("seq", sa.Integer, primary_key=True, autoincrement=True),
    sa.Column("rule", sa.String(64), nullable=False, index=True),
    sa.Column("action", sa.String(16), nullable=False),  # put, delete, reload
    sa.Column("body", sa.Text, nullable=True),
    sa.Column("actor", sa.String(64), nullable=False),
    sa.Column("at_ms", sa.BigInteger, nullable=False),
    sa.Column("note", sa.Text, nullable=False, server_default=""),
)

_APPEND_ONLY = (
    "CREATE TRIGGER IF NOT EXISTS rules_history_no_update BEFORE UPDATE ON rules_history "
    "BEGIN SELECT RAISE(ABORT, 'rule history is append-only'); END",
    "CREATE TRIGGER IF NOT EXISTS rules_history_no_delete BEFORE DELETE ON rules_history "
    "BEGIN SELECT RAISE(ABORT, 'rule history is append-only'); END",
)


class RuleConflictError(AlertError):
    """An edit that cannot be made in the rule book's current state (409)."""

    status = 409
    title = "Conflict"


class RuleNotFoundError(AlertError):
    """No such rule (404)."""

    status = 404
    title = "Rule not found"

    def __init__(self, rule_id: str) -> None:
        super().__init__(f"no rule {rule_id!r}")


class InvalidRuleError(AlertError):
    """A rule or rule set that does not validate; the message names the rule and field (422)."""

    status = 422
    title = "Invalid rule"


@dataclass(frozen=True, slots=True)
class RuleEntry:
    """One rule in force, and where it comes from."""

    rule: Rule
    origin: str  # a file path, or "api"
    overrides: str | None = None  # the file whose rule of the same id this edit replaces
    updated_by: str | None = None
    updated_ms: int | None = None


@dataclass(frozen=True, slots=True)
class RuleChange:
    """One line of the append-only edit history."""

    seq: int
    rule: str
    action: str
    body: dict[str, Any] | None
    actor: str
    at_ms: int
    note: str


OnChange = Callable[[list[Rule]], None]


def _now_ms() -> int:
    return int(time.time() * 1000)


class RuleBook:
    """The rule layers, their union in force, and the hook that puts a new union in force."""

    def __init__(
        self,
        url: str,
        *,
        paths: Sequence[str | Path] = (),
        shipped: bool = True,
        clock: Callable[[], int] = _now_ms,
    ) -> None:
        """Open the edit tables at a SQLAlchemy URL (the registry's) and read the rule files.

        Raises:
            RuleError: a rule file is invalid, or files and edits do not form a valid set.
        """
        self._paths = [Path(p) for p in paths]
        self._shipped = shipped
        self._clock = clock
        self._lock = threading.RLock()
        self._on_change: list[OnChange] = []
        self._db: Engine = sa.create_engine(url)
        if self._db.dialect.name == "sqlite":
            sa.event.listen(self._db, "connect", sqlite_autocommit_driver)
            sa.event.listen(self._db, "begin", sqlite_begin_immediate)
        _metadata.create_all(self._db)
        if self._db.dialect.name == "sqlite":
            with self._db.begin() as conn:
                for ddl in _APPEND_ONLY:
                    conn.exec_driver_sql(ddl)
        self._seen = self._newest_change()
        self._files = self._read_files()
        self._edits = self._read_edits()
        self._check(self._files, self._edits)

    def dispose(self) -> None:
        """Close the database connections."""
        self._db.dispose()

    def subscribe(self, callback: OnChange) -> None:
        """Call ``callback`` with the whole rule set whenever it changes (edit or reload)."""
        self._on_change.append(callback)

    # -- reading --------------------------------------------------------------------------------

    def rules(self) -> list[Rule]:
        """The rules in force: file rules in file order (edited where overridden), then new edits."""
        return [e.rule for e in self.entries()]

    def entries(self) -> list[RuleEntry]:
        """The rules in force with where each comes from."""
        with self._lock:
            return self._union(self._files, self._edits)

    def get(self, rule_id: str) -> RuleEntry:
        """One rule in force.

        Raises:
            RuleNotFoundError: no rule has that id.
        """
        for entry in self.entries():
            if entry.rule.id == rule_id:
                return entry
        raise RuleNotFoundError(rule_id)

    def history(self, rule_id: str | None = None, limit: int = 200) -> list[RuleChange]:
        """Edits and reloads, newest first; of one rule if given."""
        q = sa.select(rule_history).order_by(rule_history.c.seq.desc()).limit(limit)
        if rule_id is not None:
            q = q.where(rule_history.c.rule == rule_id)
        with self._db.connect() as conn:
            rows = conn.execute(q).all()
        return [
            RuleChange(
                seq=r.seq,
                rule=r.rule,
                action=r.action,
                body=json.loads(r.body) if r.body else None,
                actor=r.actor,
                at_ms=r.at_ms,
                note=r.note,
            )
            for r in rows
        ]

    # -- changing -------------------------------------------------------------------------------

    def validate(self, items: Any) -> list[Rule]:  # noqa: ANN401 - raw JSON
        """Rules parsed from raw JSON and checked together with the rules in force (a dry run).

        Raises:
            InvalidRuleError: naming the rule and field.
        """
        try:
            rules = parse_rules(items if isinstance(items, list) else [items], "request")
        except RuleError as exc:
            raise InvalidRuleError(str(exc)) from exc
        with self._lock:
            edits = dict(self._edits)
            for r in rules:
                edits[r.id] = _Edit(r, "validate", 0, position=len(edits))
            self._check(self._files, edits)
        return rules

    def put(
        self,
        body: Any,  # noqa: ANN401 - raw JSON
        *,
        actor: str,
        rule_id: str | None = None,
        note: str = "",
    ) -> RuleEntry:
        """Create or replace an edited rule (``rule_id``, when given, must match the body's id).

        Raises:
            InvalidRuleError: the rule, or the set with it, does not validate.
        """
        try:
            (rule,) = parse_rules([body], "request")
        except RuleError as exc:
            raise InvalidRuleError(str(exc)) from exc
        if rule_id is not None and rule.id != rule_id:
            msg = f"request, field id: {rule.id!r} does not match the rule in the path, {rule_id!r}"
            raise InvalidRuleError(msg)
        at = self._clock()
        with self._lock:
            edits = dict(self._edits)
            old = edits.get(rule.id)
            position = (
                old.position if old else (max((e.position for e in edits.values()), default=-1) + 1)
            )
            edits[rule.id] = _Edit(rule, actor, at, position)
            self._check(self._files, edits)
            text = rule.model_dump_json()
            with self._db.begin() as conn:
                conn.execute(sa.delete(edited_rules).where(edited_rules.c.id == rule.id))
                conn.execute(
                    sa.insert(edited_rules).values(
                        id=rule.id, body=text, position=position, updated_by=actor, updated_ms=at
                    )
                )
                self._log(conn, rule.id, "put", text, actor, at, note)
            self._edits = edits
            self._changed()
            return self.get(rule.id)

    def delete(self, rule_id: str, *, actor: str, note: str = "") -> RuleEntry | None:
        """Delete an edited rule; returns the file rule now in force again, if any.

        Raises:
            RuleNotFoundError: no such rule.
            RuleConflictError: the rule comes from a file only (edit the file and reload).
            InvalidRuleError: other rules name it (a composite or cluster rule).
        """
        at = self._clock()
        with self._lock:
            if rule_id not in self._edits:
                entry = self.get(rule_id)  # raises 404 for an unknown id
                msg = f"rule {rule_id!r} is defined in {entry.origin}: change that file and reload"
                raise RuleConflictError(msg)
            edits = {k: v for k, v in self._edits.items() if k != rule_id}
            self._check(self._files, edits)
            with self._db.begin() as conn:
                conn.execute(sa.delete(edited_rules).where(edited_rules.c.id == rule_id))
                self._log(conn, rule_id, "delete", None, actor, at, note)
            self._edits = edits
            self._changed()
        restored = [f for f in self._files if f.rule.id == rule_id]
        return restored[0] if restored else None

    def reload(self, *, actor: str) -> list[RuleEntry]:
        """Read the rule files again and put the result in force; the rules in force stay on error.

        Raises:
            InvalidRuleError: a file is invalid or the files with the edits do not form a valid set.
        """
        with self._lock:
            try:
                files = self._read_files()
                self._check(files, self._edits)
            except RuleError as exc:
                raise InvalidRuleError(str(exc)) from exc
            with self._db.begin() as conn:
                self._log(conn, "*", "reload", None, actor, self._clock(), self._sources())
            self._files = files
            self._changed()
            return self.entries()

    def refresh(self) -> bool:
        """Put in force what other processes changed (several hub nodes share the edit tables).

        An edit or reload made on one node (an api node, usually) is in the shared history; the
        others see its newest entry move and read the edits (and the files, in case of a reload)
        again. Returns whether the rules changed; on a set that does not validate here (a node
        with other rule files), logs it and keeps the rules in force.
        """
        try:
            newest = self._newest_change()
        except sa.exc.SQLAlchemyError:
            logger.warning("could not read the rule history; trying again later", exc_info=True)
            return False
        with self._lock:
            if newest == self._seen:
                return False
            self._seen = newest
            try:
                files, edits = self._read_files(), self._read_edits()
                self._check(files, edits)
            except RuleError:
                logger.exception("rules changed elsewhere do not validate here; keeping these")
                return False
            self._files, self._edits = files, edits
            self._changed()
            return True

    # -- inside ---------------------------------------------------------------------------------

    def _newest_change(self) -> int:
        with self._db.connect() as conn:
            return int(conn.execute(sa.select(sa.func.max(rule_history.c.seq))).scalar() or 0)

    def _sources(self) -> str:
        names = ([SHIPPED] if self._shipped else []) + [str(p) for p in self._paths]
        return ", ".join(names)

    def _read_files(self) -> list[RuleEntry]:
        entries: list[RuleEntry] = []
        if self._shipped:
            entries += [RuleEntry(r, SHIPPED) for r in shipped_rules()]
        for path in self._paths:
            files = sorted(path.glob("*.y*ml")) if path.is_dir() else [path]
            for f in files:
                entries += [RuleEntry(r, str(f)) for r in load_rules([f])]
        check_rule_set([e.rule for e in entries], self._sources() or "rules")
        return entries

    def _read_edits(self) -> dict[str, _Edit]:
        with self._db.connect() as conn:
            rows = conn.execute(sa.select(edited_rules).order_by(edited_rules.c.position)).all()
        edits: dict[str, _Edit] = {}
        for r in rows:
            (rule,) = parse_rules([json.loads(r.body)], f"edited rule {r.id}")
            edits[r.id] = _Edit(rule, r.updated_by, r.updated_ms, r.position)
        return edits

    @staticmethod
    def _union(files: list[RuleEntry], edits: dict[str, _Edit]) -> list[RuleEntry]:
        out: list[RuleEntry] = []
        for f in files:
            e = edits.get(f.rule.id)
            out.append(
                f if e is None else RuleEntry(e.rule, EDITED, f.origin, e.updated_by, e.updated_ms)
            )
        in_files = {f.rule.id for f in files}
        news = sorted((e for k, e in edits.items() if k not in in_files), key=lambda e: e.position)
        out += [RuleEntry(e.rule, EDITED, None, e.updated_by, e.updated_ms) for e in news]
        return out

    def _check(self, files: list[RuleEntry], edits: dict[str, _Edit]) -> None:
        try:
            check_rule_set([e.rule for e in self._union(files, edits)], "rules")
        except RuleError as exc:
            raise InvalidRuleError(str(exc)) from exc

    def _changed(self) -> None:
        rules = [e.rule for e in self._union(self._files, self._edits)]
        for callback in self._on_change:
            callback(rules)

    @staticmethod
    def _log(
        conn: Connection,
        rule_id: str,
        action: str,
        body: str | None,
        actor: str,
        at: int,
        note: str,
    ) -> None:
        conn.execute(
            sa.insert(rule_history).values(
                rule=rule_id, action=action, body=body, actor=actor, at_ms=at, note=note
            )
        )


@dataclass(frozen=True, slots=True)
class _Edit:
    rule: Rule
    updated_by: str
    updated_ms: int
    position: int
