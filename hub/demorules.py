"""The demo's rules: the shipped ones, with offline limits fitted to simulated sensors that report every few seconds."""

from __future__ import annotations

from alerts.rulebook import RuleBook
from alerts.rules import OfflineRule
from hub.settings import HubSettings


def tighten_offline_rules(settings: HubSettings, period_s: float, minimum_s: float = 30.0) -> None:
    """Tighten the shipped offline rules to the simulator's pace, as edits anyone can see and undo.

    Real gauges report every 5-60 minutes and the shipped rules wait three of those intervals; the
    demo's sensors report every ``period_s`` (about 10 s), so waiting for their profiles' intervals
    would hide the storm's dark street for an hour. The edits show in ``GET /api/v1/rules`` as
    overrides by user ``demo``; deleting them brings the shipped rules back.
    """
    book = RuleBook(settings.registry, paths=settings.rules.paths, shipped=settings.rules.shipped)
    after_s = max(minimum_s, round(6 * period_s))
    try:
        for entry in book.entries():
            rule = entry.rule
            if isinstance(rule, OfflineRule) and entry.origin != "api":
                body = rule.model_dump(mode="json")
                body.update(after_s=after_s, remind_s=600.0)
                book.put(
                    body,
                    actor="demo",
                    note=f"demo sensors report every {period_s:.0f} s: offline after {after_s:.0f} s",
                )
    finally:
        book.dispose()
