"""HTTP routes of the alert lifecycle: alerts (``/api/v1/alerts``) and silences (``/api/v1/silences``).

Everyone logged in reads; a vendor reads only alerts about its own devices (any other answers 404,
as for devices). Officers acknowledge, assign, comment, resolve and reopen; commanders also dispatch
and close; administrators do everything (`alerts.lifecycle.ROLE_ACTIONS`). An action the alert's
state does not accept answers 409 with the state and the actions it would accept. Staff read
silences; commanders and administrators create and expire them.
"""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Annotated, Literal

from fastapi import APIRouter, Body, Depends, Path, Query, Request
from pydantic import BaseModel, Field

from alerts.errors import AlertNotFoundError, InvalidAlertRequestError
from alerts.events import Level
from alerts.lifecycle import Action, Alert, AuditEntry, State, allowed_actions, roles_for
from alerts.silences import Matcher, Silence, SilenceState, SilenceStore
from alerts.store import AlertQuery, AlertStore, EvidenceRow, Order
from alerts.webhook import Delivery
from devices.access import Principal, ReadAny, Role, StaffOnly, require
from devices.errors import NotFoundError
from devices.users import UserStore

LevelName = Literal["info", "blue", "yellow", "orange", "red"]
ASSIGNABLE = (Role.ADMIN, Role.COMMANDER, Role.OFFICER)
SILENCERS = (Role.ADMIN, Role.COMMANDER)
"""Who silences: hiding alerts from people is a commander's decision, as closing them is."""


def _at(ms: int) -> datetime:
    return datetime.fromtimestamp(ms / 1000, tz=UTC)


def _ts(ms: int | None) -> datetime | None:
    return _at(ms) if ms is not None else None


def _at_ms(t: datetime) -> int:
    if t.tzinfo is None:  # a time without a zone on the wire is UTC (DESIGN: UTC on the wire)
        t = t.replace(tzinfo=UTC)
    return int(t.timestamp() * 1000)


def _ms(t: datetime | None) -> int | None:
    return None if t is None else _at_ms(t)


class AlertView(BaseModel):
    """An alert as the API shows it."""

    id: int
    rule: str
    source: str = Field(description="device:<id>, area:<path> or cluster:<rule>:<device>")
    kind: str = Field(description="The rule kind: threshold, rate, offline, ...")
    level: LevelName
    state: State
    condition: Literal["firing", "cleared"] = Field(description="The rule's condition right now")
    summary: str
    device: str | None
    area: str | None
    metric: str | None
    value: float | None
    first_at: datetime = Field(description="Raised")
    last_at: datetime = Field(description="Newest condition event")
    updated_at: datetime
    state_at: datetime = Field(description="Entered its current state")
    cleared_at: datetime | None
    acknowledged_at: datetime | None
    closed_at: datetime | None
    assignee: str | None
    unit: str | None = Field(description="The unit it was dispatched to")
    escalated_at: datetime | None = Field(description="Escalated: nobody acknowledged it in time")
    allowed_actions: list[Action] = Field(description="What the caller may do with it now")

    @classmethod
    def of(cls, a: Alert, role: Role) -> AlertView:
        """The API view of ``a`` for a caller of ``role``."""
        return cls(
            id=a.id,
            rule=a.rule,
            source=a.source,
            kind=a.kind,
            level=a.level.label,
            state=a.state,
            condition="firing" if a.firing else "cleared",
            summary=a.summary,
            device=a.device,
            area=a.area,
            metric=a.metric,
            value=a.value,
            first_at=_at(a.first_ms),
            last_at=_at(a.last_ms),
            updated_at=_at(a.updated_ms),
            state_at=_at(a.state_ms),
            escalated_at=_ts(a.escalated_ms),
            cleared_at=_ts(a.cleared_ms),
            acknowledged_at=_ts(a.acknowledged_ms),
            closed_at=_ts(a.closed_ms),
            assignee=a.assignee,
            unit=a.unit,
            allowed_actions=allowed_actions(a, role),
        )


class AuditView(BaseModel):
    """One line of an alert's history."""

    seq: int
    at: datetime
    actor: str
    action: Action
    from_state: State | None
    to_state: State
    from_level: LevelName | None
    to_level: LevelName
    note: str
    target: str | None = Field(description="The assignee of an assignment, the unit of a dispatch")

    @classmethod
    def of(cls, e: AuditEntry) -> AuditView:
        """The API view of ``e``."""
        return cls.model_validate(
            {
                "seq": e.seq,
                "at": _ts(e.at_ms),
                "actor": e.actor,
                "action": e.action,
                "from_state": e.from_state,
                "to_state": e.to_state,
                "from_level": e.from_level.label if e.from_level is not None else None,
                "to_level": e.to_level.label,
                "note": e.note,
                "target": e.target,
            }
        )


class EvidenceView(BaseModel):
    """A reading that triggered (or re-triggered, or changed the level of) the alert."""

    seq: int = Field(description="The history line whose condition event brought it")
    device: str
    metric: str
    ts: datetime
    value: float

    @classmethod
    def of(cls, e: EvidenceRow) -> EvidenceView:
        """The API view of ``e``."""
        return cls.model_validate(
            {
                "seq": e.audit_seq,
                "device": e.device,
                "metric": e.metric,
                "ts": _ts(e.ts_ms),
                "value": e.value,
            }
        )


class DeliveryView(BaseModel):
    """How a notification of the alert went out."""

    seq: int
    channel: str
    target: str
    outcome: str
    attempts: int
    status: int | None
    error: str
    at: datetime

    @classmethod
    def of(cls, d: Delivery) -> DeliveryView:
        """The API view of ``d``."""
        return cls.model_validate(
            {
                "seq": d.seq,
                "channel": d.channel,
                "target": d.target,
                "outcome": d.outcome.value,
                "attempts": d.attempts,
                "status": d.status,
                "error": d.error,
                "at": _ts(d.at_ms),
            }
        )


class AlertDetail(AlertView):
    """An alert with its whole history, its evidence and its notification deliveries."""

    history: list[AuditView]
    evidence: list[EvidenceView]
    deliveries: list[DeliveryView]


class AlertPage(BaseModel):
    """One page of an alert listing."""

    items: list[AlertView]
    total: int
    offset: int
    limit: int


class Note(BaseModel):
    """An optional note for the audit trail."""

    note: str = Field("", max_length=2000)


class Comment(BaseModel):
    """A comment: the note is the point."""

    note: str = Field(min_length=1, max_length=2000)


class Assignment(Note):
    """Whom to assign the alert to: an officer, commander or administrator."""

    assignee: str = Field(min_length=1, max_length=64)


class Dispatch(Note):
    """Which unit goes, and what it is told."""

    unit: str = Field(min_length=1, max_length=128, description="e.g. 'drainage team 3'")


class Closing(Note):
    """Close; ``force`` closes even while the condition still holds (recorded in the history)."""

    force: bool = False


def get_alert_store(request: Request) -> AlertStore:
    """The alert store the app was started with."""
    store: AlertStore = request.app.state.alert_store
    return store


def _get_users(request: Request) -> UserStore:
    users: UserStore = request.app.state.users
    return users


AlertStoreDep = Annotated[AlertStore, Depends(get_alert_store)]
AlertId = Annotated[int, Path(ge=1)]


# One dependency per action, admitting exactly the roles `ROLE_ACTIONS` gives it (403 for others).
Acknowledger = Annotated[Principal, Depends(require(*roles_for(Action.ACKNOWLEDGE)))]
Assigner = Annotated[Principal, Depends(require(*roles_for(Action.ASSIGN)))]
Dispatcher = Annotated[Principal, Depends(require(*roles_for(Action.DISPATCH)))]
Resolver = Annotated[Principal, Depends(require(*roles_for(Action.RESOLVE)))]
Closer = Annotated[Principal, Depends(require(*roles_for(Action.CLOSE)))]
Commenter = Annotated[Principal, Depends(require(*roles_for(Action.COMMENT)))]
Reopener = Annotated[Principal, Depends(require(*roles_for(Action.REOPEN)))]
UsersDep = Annotated[UserStore, Depends(_get_users)]

router = APIRouter(prefix="/api/v1/alerts", tags=["alerts"])


def _scope(principal: Principal) -> str | None:
    return principal.vendor if principal.role is Role.VENDOR else None


def _area_scope(principal: Principal, requested: str | None) -> str | None:
    """The area filter a listing must use: an area-bound account's own area, or within it."""
    if principal.area is None:
        return requested
    if requested is None:
        return principal.area
    if not principal.sees_area(requested.rstrip("/")):
        raise NotFoundError(kind="area", key=requested)
    return requested


def _visible(store: AlertStore, principal: Principal, alert_id: int) -> Alert:
    """The alert if the caller may see it (vendor and area scope); other alerts are 404."""
    alert = store.get(alert_id, vendor=_scope(principal))
    if not principal.sees_area(alert.area):
        raise AlertNotFoundError(alert_id)
    return alert


@router.get(
    "", response_model=AlertPage, summary="List alerts, filtered, newest or most severe first"
)
def list_alerts(
    principal: ReadAny,
    store: AlertStoreDep,
    state: Annotated[list[State] | None, Query(description="Any of these states")] = None,
    level: Annotated[LevelName | None, Query(description="This level or more severe")] = None,
    area: Annotated[str | None, Query(description="Area path prefix, e.g. sh/huangpu")] = None,
    kind: Annotated[str | None, Query(description="Rule kind (the alert type)")] = None,
    rule: str | None = None,
    device: str | None = None,
    condition: Literal["firing", "cleared"] | None = None,
    active: Annotated[bool | None, Query(description="true: not closed; false: closed")] = None,
    since: Annotated[datetime | None, Query(description="Alive at or after this time")] = None,
    until: Annotated[datetime | None, Query(description="Raised before this time")] = None,
    sort: Annotated[
        Order, Query(description="newest raised, most severe, or last changed")
    ] = "newest",
    offset: Annotated[int, Query(ge=0)] = 0,
    limit: Annotated[int, Query(ge=1, le=500)] = 100,
) -> AlertPage:
    """Alerts matching every filter given; a vendor sees only its own devices' alerts."""
    since_ms, until_ms = _ms(since), _ms(until)
    if since_ms is not None and until_ms is not None and since_ms >= until_ms:
        msg = "since must be before until"
        raise InvalidAlertRequestError(msg)
    query = AlertQuery(
        states=tuple(state or ()),
        min_level=Level.parse(level) if level is not None else None,
        area=_area_scope(principal, area),
        kind=kind,
        rule=rule,
        device=device,
        firing=None if condition is None else condition == "firing",
        active=active,
        since_ms=since_ms,
        until_ms=until_ms,
        vendor=_scope(principal),
        order=sort,
        offset=offset,
        limit=limit,
    )
    alerts, total = store.query(query)
    items = [AlertView.of(a, principal.role) for a in alerts]
    return AlertPage(items=items, total=total, offset=offset, limit=limit)


@router.get(
    "/{alert_id}", response_model=AlertDetail, summary="One alert with history and evidence"
)
def get_alert(principal: ReadAny, store: AlertStoreDep, alert_id: AlertId) -> AlertDetail:
    """The alert, every line of its history, the readings that triggered it, its deliveries."""
    alert = _visible(store, principal, alert_id)
    view = AlertView.of(alert, principal.role)
    return AlertDetail(
        **view.model_dump(),
        history=[AuditView.of(e) for e in store.history(alert_id)],
        evidence=[EvidenceView.of(e) for e in store.evidence(alert_id)],
        deliveries=[DeliveryView.of(d) for d in store.deliveries(alert_id)],
    )


def _act(
    store: AlertStore,
    principal: Principal,
    alert_id: int,
    action: Action,
    note: str,
    *,
    target: str | None = None,
    force: bool = False,
) -> AlertView:
    _visible(store, principal, alert_id)  # an area-bound officer acts only on its area's alerts
    change = store.act(
        alert_id,
        action,
        actor=principal.user,
        role=principal.role,
        note=note,
        target=target,
        force=force,
    )
    return AlertView.of(change.alert, principal.role)


NoteBody = Annotated[Note, Body()]


@router.post("/{alert_id}/ack", response_model=AlertView, summary="Acknowledge: someone has it")
def acknowledge(
    principal: Acknowledger, store: AlertStoreDep, alert_id: AlertId, body: NoteBody
) -> AlertView:
    """``raised -> acknowledged``."""
    return _act(store, principal, alert_id, Action.ACKNOWLEDGE, body.note)


@router.post("/{alert_id}/assign", response_model=AlertView, summary="Assign to a person")
def assign(
    principal: Assigner,
    store: AlertStoreDep,
    users: UsersDep,
    alert_id: AlertId,
    body: Annotated[Assignment, Body()],
) -> AlertView:
    """Name who handles the alert (an officer, commander or administrator); the state stays."""
    try:
        user = users.user(body.assignee)
    except NotFoundError:
        msg = f"no user {body.assignee!r} to assign the alert to"
        raise InvalidAlertRequestError(msg) from None
    if user.disabled or user.role not in ASSIGNABLE:
        roles = ", ".join(r.value for r in ASSIGNABLE)
        msg = f"user {body.assignee!r} cannot take alerts (needs an enabled {roles} account)"
        raise InvalidAlertRequestError(msg)
    return _act(store, principal, alert_id, Action.ASSIGN, body.note, target=user.name)


@router.post("/{alert_id}/dispatch", response_model=AlertView, summary="Send a unit")
def dispatch(
    principal: Dispatcher,
    store: AlertStoreDep,
    alert_id: AlertId,
    body: Annotated[Dispatch, Body()],
) -> AlertView:
    """``raised | acknowledged | dispatched -> dispatched``: a unit goes, with the note as orders."""
    return _act(store, principal, alert_id, Action.DISPATCH, body.note, target=body.unit)


@router.post("/{alert_id}/resolve", response_model=AlertView, summary="The situation is handled")
def resolve(
    principal: Resolver, store: AlertStoreDep, alert_id: AlertId, body: NoteBody
) -> AlertView:
    """``acknowledged | dispatched -> resolved``."""
    return _act(store, principal, alert_id, Action.RESOLVE, body.note)


@router.post("/{alert_id}/close", response_model=AlertView, summary="Close a resolved alert")
def close(
    principal: Closer,
    store: AlertStoreDep,
    alert_id: AlertId,
    body: Annotated[Closing, Body()],
) -> AlertView:
    """``resolved -> closed`` once the condition cleared (or with ``force``).

    The next firing of its rule on its source raises a new alert.
    """
    return _act(store, principal, alert_id, Action.CLOSE, body.note, force=body.force)


@router.post("/{alert_id}/reopen", response_model=AlertView, summary="Take a resolved alert back")
def reopen(
    principal: Reopener, store: AlertStoreDep, alert_id: AlertId, body: NoteBody
) -> AlertView:
    """``resolved -> acknowledged``: it was not resolved after all."""
    return _act(store, principal, alert_id, Action.REOPEN, body.note)


@router.post("/{alert_id}/comment", response_model=AlertView, summary="Add a note to the history")
def comment(
    principal: Commenter,
    store: AlertStoreDep,
    alert_id: AlertId,
    body: Annotated[Comment, Body()],
) -> AlertView:
    """A note in the history, in any state (closed alerts take post-incident notes)."""
    return _act(store, principal, alert_id, Action.COMMENT, body.note)


# -- silences -----------------------------------------------------------------------------------


class SilenceView(BaseModel):
    """A silence and where it is in its window."""

    id: int
    matchers: list[Matcher]
    starts_at: datetime
    ends_at: datetime
    state: SilenceState
    created_by: str
    comment: str

    @classmethod
    def of(cls, s: Silence, now_ms: int) -> SilenceView:
        """The API view of ``s`` at ``now_ms``."""
        return cls(
            id=s.id,
            matchers=list(s.matchers),
            starts_at=_at(s.starts_ms),
            ends_at=_at(s.ends_ms),
            state=s.state(now_ms),
            created_by=s.created_by,
            comment=s.comment,
        )


class NewSilence(BaseModel):
    """Mute matching alerts' notifications to people for a time window (maintenance, known faults)."""

    matchers: list[Matcher] = Field(min_length=1, description="All must match")
    starts_at: datetime | None = Field(None, description="Default: now")
    ends_at: datetime
    comment: str = Field(min_length=1, max_length=2000, description="Why, for the next shift")


def get_silence_store(request: Request) -> SilenceStore:
    """The silence store the app was started with."""
    store: SilenceStore = request.app.state.silence_store
    return store


SilenceStoreDep = Annotated[SilenceStore, Depends(get_silence_store)]
SilenceKeeper = Annotated[Principal, Depends(require(*SILENCERS))]

silences_router = APIRouter(prefix="/api/v1/silences", tags=["alerts"])


def _now() -> int:
    return int(datetime.now(tz=UTC).timestamp() * 1000)


@silences_router.get("", response_model=list[SilenceView], summary="Silences, newest first")
def list_silences(
    _: StaffOnly,
    store: SilenceStoreDep,
    current: Annotated[bool, Query(description="Only pending and active ones")] = False,
) -> list[SilenceView]:
    """Every silence (or only those not expired); vendors have no business here."""
    now = _now()
    return [SilenceView.of(s, now) for s in store.silences(current_at=now if current else None)]


@silences_router.post("", response_model=SilenceView, status_code=201, summary="Create a silence")
def create_silence(
    principal: SilenceKeeper, store: SilenceStoreDep, body: Annotated[NewSilence, Body()]
) -> SilenceView:
    """Alerts matching every matcher are not notified to people in the window (still listed)."""
    now = _now()
    starts = _ms(body.starts_at)
    silence = store.create(
        body.matchers,
        starts_ms=now if starts is None else starts,
        ends_ms=_at_ms(body.ends_at),
        created_by=principal.user,
        comment=body.comment,
    )
    return SilenceView.of(silence, now)


@silences_router.delete("/{silence_id}", response_model=SilenceView, summary="Expire a silence")
def expire_silence(
    _: SilenceKeeper, store: SilenceStoreDep, silence_id: Annotated[int, Path(ge=1)]
) -> SilenceView:
    """End the silence now; it stays listed, as expired."""
    now = _now()
    return SilenceView.of(store.expire(silence_id, now), now)
