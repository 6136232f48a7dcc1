"""Errors raised by the composition root."""


class HubError(Exception):
    """A start-up or configuration problem that stops the hub, with a sentence saying what to do."""
