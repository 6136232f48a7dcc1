"""Errors raised by the alert lifecycle, its store and its routes.

Each error carries the HTTP status and title it answers with, so the hub maps the whole family with
one RFC 9457 handler (`hub/app.py`) and a new leaf needs no new handler. Routers raise these, never
`HTTPException`.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any, ClassVar


class AlertError(Exception):
    """Root of every error the alerts package raises on purpose (a bug is a 500)."""

    status: ClassVar[int] = 500
    title: ClassVar[str] = "Internal error"

    def problem_extra(self) -> dict[str, Any]:
        """Members added to the problem details body beyond type/title/status/detail/instance."""
        return {}


class AlertNotFoundError(AlertError):
    """No such alert, or one the caller may not see (a vendor and another vendor's device): 404."""

    status = 404
    title = "Alert not found"

    def __init__(self, alert_id: int) -> None:
        self.alert_id = alert_id
        super().__init__(f"no alert {alert_id}")


class SilenceNotFoundError(AlertError):
    """No such silence (404)."""

    status = 404
    title = "Silence not found"

    def __init__(self, silence_id: int) -> None:
        self.silence_id = silence_id
        super().__init__(f"no silence {silence_id}")


class InvalidTransitionError(AlertError):
    """The action does not apply to the alert in its state (409); names what would apply.

    Two people acting on one alert at once meet this too: the second one's acknowledge finds the
    alert acknowledged already.
    """

    status = 409
    title = "Action not allowed in this state"

    def __init__(
        self, state: str, action: str, allowed: Sequence[str], *, reason: str | None = None
    ) -> None:
        self.state = state
        self.action = action
        self.allowed = list(allowed)
        options = ", ".join(self.allowed) or "none"
        why = reason or f"an alert in state {state!r} cannot be {_past(action)}"
        super().__init__(f"{why}; allowed now: {options}")

    def problem_extra(self) -> dict[str, Any]:
        """The state, the refused action and the actions that would be accepted."""
        return {"state": self.state, "action": self.action, "allowed": self.allowed}


class ActionForbiddenError(AlertError):
    """The caller's role may not take this action on any alert (403)."""

    status = 403
    title = "Forbidden"

    def __init__(
        self, role: str, action: str, roles: Sequence[str], *, subject: str = "an alert"
    ) -> None:
        self.role = role
        self.action = action
        needs = ", ".join(roles) or "nobody: the hub takes it itself"
        super().__init__(f"role {role!r} may not {action} {subject} (needs one of: {needs})")


class InvalidAlertRequestError(AlertError):
    """A query or action body that makes no sense (400): e.g. ``since`` after ``until``."""

    status = 400
    title = "Bad request"


class ResponseNotFoundError(AlertError):
    """No such incident, unit, warning, shift or photo, or one outside the caller's area (404)."""

    status = 404

    def __init__(self, kind: str, key: object) -> None:
        self.kind = kind
        self.key = key
        super().__init__(f"no {kind} {key}")

    @property
    def title(self) -> str:  # type: ignore[override]
        """Names what was not found, as the devices' 404s do."""
        return f"{self.kind.capitalize()} not found"


class ResponseConflictError(AlertError):
    """The request clashes with what exists: a second active warning of a kind for an area (409)."""

    status = 409
    title = "Conflict"


class PhotoRejectedError(AlertError):
    """A photo the hub does not keep: too large (413) or not a JPEG, PNG or WebP picture (415)."""

    title = "Photo rejected"

    def __init__(self, reason: str, *, too_large: bool) -> None:
        self.status = 413 if too_large else 415  # type: ignore[misc]
        super().__init__(reason)


class WebhookConfigError(AlertError):
    """A webhook target that cannot work (not http(s), or no host); raised at start-up."""


def _past(action: str) -> str:
    return {
        "acknowledge": "acknowledged",
        "assign": "assigned",
        "dispatch": "dispatched",
        "resolve": "resolved",
        "close": "closed",
        "comment": "commented on",
        "reopen": "reopened",
    }.get(action, f"given {action!r}")
