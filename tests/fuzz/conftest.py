"""Fixtures for the hostile-input tests: the codec tests' registry (shipped profiles, test devices)."""

from __future__ import annotations

from collections.abc import Iterator

import pytest

from devices.registry import Registry
from tests.ingest.codecs.conftest import make_test_registry


@pytest.fixture(scope="session")
def fuzz_registry(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Registry]:
    """A registry on a SQLite file with every shipped profile and one test device per profile."""
    reg = make_test_registry(tmp_path_factory.mktemp("fuzz-registry") / "registry.db")
    yield reg
    reg.engine.dispose()


# The served hub (real uvicorn, real Mosquitto) of the hub tests.
from tests.hub.conftest import hub  # noqa: E402, F401
