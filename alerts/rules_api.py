"""HTTP routes of the rules (``/api/v1/rules``): read, validate, edit, delete, reload, history.

Staff read rules (vendors do not: thresholds are the city's business). Commanders and
administrators change them, as they decide what the city is warned about. An edit goes in force at
once: the engine keeps the state of unchanged rules, and the conditions of a removed rule clear.
A rule a file defines can be *overridden* by an edit (PUT with its id); deleting the edit brings the
file's version back. Every edit is kept with who and when (`GET /api/v1/rules/history`).
"""

from __future__ import annotations

from collections.abc import Callable
from datetime import UTC, datetime
from typing import Annotated, Any

from fastapi import APIRouter, Body, Depends, Path, Query, Request
from pydantic import BaseModel, Field

from alerts.engine import RuleEngine
from alerts.rulebook import RuleBook, RuleChange, RuleConflictError, RuleEntry
from devices.access import Principal, Role, StaffOnly, require

RULE_EDITORS = (Role.ADMIN, Role.COMMANDER)
RuleEditor = Annotated[Principal, Depends(require(*RULE_EDITORS))]

router = APIRouter(prefix="/api/v1/rules", tags=["rules"])

_RULE_EXAMPLE = {
    "id": "pipe-pressure-low-east",
    "kind": "threshold",
    "name": "Pipe pressure low in the east district",
    "device_type": "pipe_pressure",
    "metric": "pipe_pressure",
    "direction": "below",
    "areas": ["demo/east"],
    "levels": {"yellow": 0.2, "orange": 0.15, "red": 0.1},
    "for_s": 120,
}


def get_rule_book(request: Request) -> RuleBook:
    """The rule book the app was started with."""
    book: RuleBook = request.app.state.rule_book
    return book


RuleCounts = Callable[[], tuple[dict[str, int], dict[str, int]]]
"""By rule id: the sources on which its condition holds now, and its evaluation errors."""


def get_rule_counts(request: Request) -> RuleCounts:
    """The running hub's counts (its engine's; on an api node, the alert store's and the workers')."""
    counts: RuleCounts = request.app.state.rule_counts
    return counts


def engine_counts(engine: RuleEngine) -> tuple[dict[str, int], dict[str, int]]:
    """A process's own engine's counts (a hub that evaluates the readings)."""
    active: dict[str, int] = {}
    for a in engine.active():
        active[a.rule] = active.get(a.rule, 0) + 1
    return active, dict(engine.failures)


BookDep = Annotated[RuleBook, Depends(get_rule_book)]
CountsDep = Annotated[RuleCounts, Depends(get_rule_counts)]


def _at(ms: int | None) -> datetime | None:
    return None if ms is None else datetime.fromtimestamp(ms / 1000, tz=UTC)


class RuleView(BaseModel):
    """A rule in force, where it comes from, and how it is doing."""

    id: str
    kind: str
    enabled: bool
    origin: str = Field(description="The rule file, or 'api' for a rule edited over the API")
    overrides: str | None = Field(
        None, description="The file whose rule of this id the edit replaces"
    )
    updated_by: str | None = None
    updated_at: datetime | None = None
    active_conditions: int = Field(description="Sources on which the condition holds now")
    failures: int = Field(description="Evaluation errors since start (a bug in the rule's kind)")
    definition: dict[str, Any]

    @classmethod
    def of(cls, entry: RuleEntry, active: dict[str, int], failures: dict[str, int]) -> RuleView:
        """The view of one entry."""
        rule = entry.rule
        return cls(
            id=rule.id,
            kind=rule.kind,
            enabled=rule.enabled,
            origin=entry.origin,
            overrides=entry.overrides,
            updated_by=entry.updated_by,
            updated_at=_at(entry.updated_ms),
            active_conditions=active.get(rule.id, 0),
            failures=failures.get(rule.id, 0),
            definition=rule.model_dump(mode="json"),
        )


class RuleChangeView(BaseModel):
    """One line of the rules' edit history."""

    seq: int
    rule: str = Field(description="The rule id, or '*' for a reload of the files")
    action: str
    actor: str
    at: datetime
    note: str
    definition: dict[str, Any] | None

    @classmethod
    def of(cls, c: RuleChange) -> RuleChangeView:
        """The view of one history line."""
        return cls(
            seq=c.seq,
            rule=c.rule,
            action=c.action,
            actor=c.actor,
            at=datetime.fromtimestamp(c.at_ms / 1000, tz=UTC),
            note=c.note,
            definition=c.body,
        )


class Validated(BaseModel):
    """The result of a dry run: the rules as they would be in force."""

    valid: bool
    rules: list[dict[str, Any]]


@router.get("", response_model=list[RuleView], summary="Rules in force")
def list_rules(
    _: StaffOnly,
    book: BookDep,
    counts: CountsDep,
    kind: Annotated[str | None, Query(description="Only rules of this kind")] = None,
) -> list[RuleView]:
    """Every rule in force, in evaluation order, with its origin and live condition count."""
    active, failures = counts()
    return [
        RuleView.of(e, active, failures)
        for e in book.entries()
        if kind is None or e.rule.kind == kind
    ]


@router.get("/history", response_model=list[RuleChangeView], summary="Edits and reloads")
def rule_history(
    _: StaffOnly,
    book: BookDep,
    rule: Annotated[str | None, Query(description="Only this rule's edits")] = None,
    limit: Annotated[int, Query(ge=1, le=1000)] = 200,
) -> list[RuleChangeView]:
    """Who changed which rule when, newest first (append-only)."""
    return [RuleChangeView.of(c) for c in book.history(rule, limit)]


@router.post("/validate", response_model=Validated, summary="Check rules without saving them")
def validate_rules(
    _: StaffOnly,
    book: BookDep,
    body: Annotated[dict[str, Any] | list[dict[str, Any]], Body(examples=[_RULE_EXAMPLE])],
) -> Validated:
    """A rule or a list of rules, checked alone and together with the rules in force (422 names the field)."""
    rules = book.validate(body)
    return Validated(valid=True, rules=[r.model_dump(mode="json") for r in rules])


@router.post("/reload", response_model=list[RuleView], summary="Read the rule files again")
def reload_rules(principal: RuleEditor, book: BookDep, counts: CountsDep) -> list[RuleView]:
    """Re-read the shipped and configured rule files; on any error nothing changes (422)."""
    entries = book.reload(actor=principal.user)
    active, failures = counts()
    return [RuleView.of(e, active, failures) for e in entries]


@router.get("/{rule_id}", response_model=RuleView, summary="One rule")
def get_rule(
    _: StaffOnly, book: BookDep, counts: CountsDep, rule_id: Annotated[str, Path(max_length=64)]
) -> RuleView:
    """One rule in force."""
    return RuleView.of(book.get(rule_id), *counts())


@router.post("", response_model=RuleView, status_code=201, summary="Add a rule")
def create_rule(
    principal: RuleEditor,
    book: BookDep,
    counts: CountsDep,
    body: Annotated[dict[str, Any], Body(examples=[_RULE_EXAMPLE])],
) -> RuleView:
    """A new rule, in force at once; an id already in use is a conflict (PUT replaces or overrides)."""
    rule_id = body.get("id")
    if isinstance(rule_id, str) and any(e.rule.id == rule_id for e in book.entries()):
        msg = f"rule {rule_id!r} exists: PUT /api/v1/rules/{rule_id} replaces it"
        raise RuleConflictError(msg)
    entry = book.put(body, actor=principal.user)
    return RuleView.of(entry, *counts())


@router.put("/{rule_id}", response_model=RuleView, summary="Replace or override a rule")
def put_rule(
    principal: RuleEditor,
    book: BookDep,
    counts: CountsDep,
    rule_id: Annotated[str, Path(max_length=64)],
    body: Annotated[dict[str, Any], Body(examples=[_RULE_EXAMPLE])],
    note: Annotated[str, Query(max_length=500, description="Why, for the history")] = "",
) -> RuleView:
    """Create or replace the edited rule ``rule_id``; for a file's rule, an override of it."""
    entry = book.put(body, actor=principal.user, rule_id=rule_id, note=note)
    return RuleView.of(entry, *counts())


@router.delete("/{rule_id}", response_model=RuleView | None, summary="Delete an edited rule")
def delete_rule(
    principal: RuleEditor,
    book: BookDep,
    counts: CountsDep,
    rule_id: Annotated[str, Path(max_length=64)],
    note: Annotated[str, Query(max_length=500, description="Why, for the history")] = "",
) -> RuleView | None:
    """Delete an edit; answers the file's rule now back in force, or null if the rule is gone."""
    restored = book.delete(rule_id, actor=principal.user, note=note)
    return None if restored is None else RuleView.of(restored, *counts())
