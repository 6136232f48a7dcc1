"""schemathesis against the running hub's OpenAPI document, as the administrator: no 5xx, 4xx are problems.

Every operation (but the few that would end the fuzzing session, see ``API_EXCLUDED``) gets valid and
invalid data generated from its schema; each answer must be below 500, and each 4xx an RFC 9457 problem
(``application/problem+json`` with its status and title). ``HUB_API_FUZZ_EXAMPLES`` raises the number
of examples per operation and mode (the bench, ``bench/_faults_hostile.py``, runs more).
"""

from __future__ import annotations

import os

import pytest

from bench._faults_hostile import fuzz_api
from tests.hub.conftest import ServedHub

pytestmark = [pytest.mark.broker, pytest.mark.slow]

EXAMPLES = int(os.environ.get("HUB_API_FUZZ_EXAMPLES", "3"))


@pytest.mark.timeout(900)
def test_api_fuzz_finds_no_server_error_and_only_problem_details(hub: ServedHub):
    token = str(hub.http.headers["Authorization"]).split()[1]
    result = fuzz_api(hub.url, token, examples=EXAMPLES)
    assert result["requests"] > 200
    assert result["failures"] == []
    assert result["server_errors"] == 0
    assert result["not_problems"] == 0
    assert hub.thread.is_alive()


@pytest.mark.postgres
@pytest.mark.timeout(900)
def test_api_fuzz_on_postgresql(pg_hub: ServedHub):
    token = str(pg_hub.http.headers["Authorization"]).split()[1]
    result = fuzz_api(pg_hub.url, token, examples=EXAMPLES)
    assert result["failures"] == []
