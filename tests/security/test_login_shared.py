"""Failed logins counted in the hub's database (devices/login_limit.py `SharedLoginLimiter`).

Two limiters on one database stand for two api nodes behind a load balancer: a guesser that
alternates between them gets no more tries than against one. On SQLite and PostgreSQL, migrated
as the hub migrates them.
"""

from __future__ import annotations

import threading

import pytest
import sqlalchemy as sa

from devices.login_limit import SharedLoginLimiter, TooManyAttemptsError, login_failures_table


def test_two_nodes_count_the_same_failures_and_a_success_forgets_them(db_url: str) -> None:
    now = [1_700_000_000.0]
    engine = sa.create_engine(db_url)
    a = SharedLoginLimiter(engine, max_failures=3, window_s=60, clock=lambda: now[0])
    b = SharedLoginLimiter(
        sa.create_engine(db_url), max_failures=3, window_s=60, clock=lambda: now[0]
    )
    a.failed("admin", "10.0.0.9")
    b.failed("admin", "10.0.0.9")
    a.check("admin", "10.0.0.9")  # two of three
    b.failed("admin", "10.0.0.9")
    for node in (a, b):
        with pytest.raises(TooManyAttemptsError) as refused:
            node.check("admin", "10.0.0.9")
        assert refused.value.retry_after_s == 60
    a.check("admin", "10.0.0.10")  # another address is not locked out
    a.check("operator", "10.0.0.9")  # nor another name
    now[0] += 30
    with pytest.raises(TooManyAttemptsError) as refused:
        b.check("admin", "10.0.0.9")
    assert refused.value.retry_after_s == 30
    now[0] += 30.5  # the window since the first failure is over: counting starts again
    b.check("admin", "10.0.0.9")
    a.failed("admin", "10.0.0.9")
    a.failed("admin", "10.0.0.9")
    b.succeeded("admin", "10.0.0.9")
    a.failed("admin", "10.0.0.9")
    a.failed("admin", "10.0.0.9")
    b.check("admin", "10.0.0.9")
    a.failed("x" * 5000, "10.0.0.9")  # an absurd name is counted, not an error
    with engine.connect() as conn:
        names = conn.execute(sa.select(login_failures_table.c.name)).scalars().all()
    assert max(len(n) for n in names) == 200


def test_concurrent_failures_on_two_nodes_are_all_counted(db_url: str) -> None:
    nodes = [SharedLoginLimiter(sa.create_engine(db_url), max_failures=1000) for _ in range(2)]

    def guess(node: SharedLoginLimiter) -> None:
        for _ in range(25):
            node.failed("admin", "10.0.0.9")

    threads = [threading.Thread(target=guess, args=(n,)) for n in nodes for _ in range(2)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    with nodes[0].engine.connect() as conn:
        count = conn.execute(sa.select(login_failures_table.c.failures)).scalar_one()
    assert count == 100


def test_expired_pairs_are_purged(db_url: str) -> None:
    now = [1_700_000_000.0]
    limiter = SharedLoginLimiter(sa.create_engine(db_url), window_s=60, clock=lambda: now[0])
    for i in range(5):
        limiter.failed(f"user{i}", "10.0.0.9")
    now[0] += 120
    limiter.failed("late", "10.0.0.9")
    with limiter.engine.connect() as conn:
        left = conn.execute(sa.select(login_failures_table.c.name)).scalars().all()
    assert left == ["late"]
