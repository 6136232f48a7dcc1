"""Errors raised by the ingest package."""


class IngestError(Exception):
    """Root of every error the ingest package raises."""


class StoreError(IngestError):
    """The time-series store could not do what was asked (not a bad input: the store itself failed)."""
