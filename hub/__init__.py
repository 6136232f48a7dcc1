"""Composition root: settings, app wiring, live state, CLI, demo."""
