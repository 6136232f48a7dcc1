"""The cluster's periodic people's work runs on one api node at a time (hub/singleton_jobs.py).

Real ``hub run`` processes on one Mosquitto, InfluxDB and PostgreSQL (the cluster of
tests/hub/test_roles.py) plus a second api node: exactly one of the two holds the jobs lease; an
alert the ingest node raises (which no api node committed) becomes exactly one duty notice; a warning
that runs out is expired once; and when the holder is killed, the other api node takes the lease
and does the same work.
"""

from __future__ import annotations

import asyncio
import json
import os
import signal
import time
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import pytest
import sqlalchemy as sa

from hub.singleton_jobs import SingletonJobs, lease_taker
from tests.hub.test_roles import Cluster, Node, cluster, publish, wait_until

pytestmark = [pytest.mark.influx, pytest.mark.broker, pytest.mark.postgres]

__all__ = ["cluster"]  # the fixture, shared with tests/hub/test_roles.py


def holders(nodes: list[Node]) -> list[Node]:
    return [n for n in nodes if n.status()["jobs"]["held"]]


def red_water(device: str) -> tuple[str, str]:
    """Two readings in a row over the red line (6.0 m): the shipped rule raises a red alert."""
    t0 = time.time() - 120
    body = [
        {"bn": f"{device}:", "bt": t0, "n": "water_level", "u": "cm", "v": 620},
        {"n": "water_level", "u": "cm", "v": 625, "t": 60},
    ]
    return (f"sensors/hydrox/{device}/up", json.dumps(body))


def alert_of(node: Node, device: str) -> int | None:
    items = node.http.get("/api/v1/alerts").json()["items"]
    found = [a["id"] for a in items if a["device"] == device]
    return found[0] if found else None


def notices(node: Node, subject: str) -> list[dict[str, Any]]:
    # (the caller's own: admin, the one on duty)
    r = node.http.get("/api/v1/roster/notices", params={"subject": subject})
    r.raise_for_status()
    found: list[dict[str, Any]] = r.json()
    return found


def one_notice_for(cluster: Cluster, asked: Node, device: str) -> None:
    """The ingest node raises a red alert on ``device``: one duty notice, not none, not two."""
    publish(cluster.broker, [red_water(device)])
    alert: int | None = None

    def raised() -> bool:
        nonlocal alert
        alert = alert_of(asked, device)
        return alert is not None

    wait_until(raised, f"no alert for {device}")
    subject = f"alert:{alert}"
    wait_until(lambda: len(notices(asked, subject)) >= 1, f"nobody was told of {subject}")
    time.sleep(3 * 1.0)  # three more response ticks (tick_s = 1 s) of every node
    told = notices(asked, subject)
    assert [(n["user"], n["reason"]) for n in told] == [("admin", "alert_raised")], told


def one_expiry(asked: Node) -> None:
    """A warning that runs out in two seconds is expired once (one audit entry, one change)."""
    now = datetime.now(UTC)
    r = asked.http.post(
        "/api/v1/warnings",
        json={
            "area": "sh/huangpu",
            "kind": "rainstorm",
            "level": "yellow",
            "reason": "cloudburst over the river",
            "valid_until": (now + timedelta(seconds=2)).isoformat(),
        },
    )
    assert r.status_code == 201, r.text
    warning = r.json()["id"]

    def expired() -> bool:
        return bool(asked.http.get(f"/api/v1/warnings/{warning}").json()["state"] == "expired")

    wait_until(expired, f"warning {warning} was not expired")
    time.sleep(2.0)
    history = asked.http.get(f"/api/v1/warnings/{warning}").json()["history"]
    assert [h["action"] for h in history] == ["publish", "expire"], history


def test_one_api_node_runs_the_jobs_and_another_takes_over_when_it_dies(
    cluster: Cluster,
) -> None:
    first = cluster.api
    second = cluster.start("api", name="api-2")
    nodes = [first, second]
    wait_until(lambda: len(holders(nodes)) == 1, "no api node took the jobs lease")
    for _ in range(3):  # and it stays with one node
        time.sleep(1.0)
        assert len(holders(nodes)) == 1
    (holder,) = holders(nodes)
    standby = second if holder is first else first
    assert cluster.ingest.status()["jobs"] is None  # ingest workers run no people's ticks

    # Someone on duty for the riverside, for the next hours.
    now = datetime.now(UTC)
    shift = {
        "area": "sh/huangpu/bund",
        "role": "officer",
        "user": "admin",
        "starts_at": (now - timedelta(hours=1)).isoformat(),
        "ends_at": (now + timedelta(hours=4)).isoformat(),
    }
    assert standby.http.post("/api/v1/roster/shifts", json=[shift]).status_code == 201

    one_notice_for(cluster, standby, "wl-00005")
    one_expiry(standby)  # published on the standby, expired by the holder

    # The holder dies (no clean stop): the standby takes the lease and does the work. An alert
    # raised at that moment, before the standby holds the lease, is told of all the same (the
    # standby remembered it and adopts it on taking over: `DutyNotifier.adopt`).
    os.kill(holder.proc.pid, signal.SIGKILL)
    publish(cluster.broker, [red_water("wl-00007")])
    holder.proc.wait(10)
    taken = time.monotonic()
    wait_until(
        lambda: standby.status()["jobs"]["held"],
        "the standby did not take the jobs over",
        timeout=4 * SingletonJobs.POLL_S,
    )
    took_s = time.monotonic() - taken
    print(f"jobs_takeover_s={took_s:.2f}")
    assert took_s <= 2 * SingletonJobs.POLL_S + 1, took_s
    gap: int | None = None

    def raised_in_the_gap() -> bool:
        nonlocal gap
        gap = alert_of(standby, "wl-00007")
        return gap is not None

    wait_until(raised_in_the_gap, "no alert for wl-00007")
    wait_until(lambda: notices(standby, f"alert:{gap}"), "the alert of the takeover was not told")
    time.sleep(3.0)
    told = notices(standby, f"alert:{gap}")
    assert [(n["user"], n["reason"]) for n in told] == [("admin", "alert_raised")], told
    one_notice_for(cluster, standby, "wl-00006")
    one_expiry(standby)


@pytest.mark.parametrize("backend", ["sqlite", "postgresql"])
def test_the_jobs_lease_is_held_once_and_freed_with_its_holder(
    backend: str, postgres_url: str, tmp_path: Path
) -> None:
    url = f"sqlite:///{tmp_path / 'hub.db'}" if backend == "sqlite" else postgres_url
    take = lease_taker(url)
    first = take()
    assert first is not None
    assert first.alive()
    assert take() is None  # another process (or a second app in this one) stands by
    first.release()
    second = take()
    assert second is not None
    second.release()


def test_a_lost_database_connection_loses_the_lease(postgres_url: str) -> None:
    take = lease_taker(postgres_url)
    lease = take()
    assert lease is not None
    # The database ends the holder's session (as it would on a failover): the lock goes with it.
    engine = sa.create_engine(postgres_url)
    with engine.connect() as conn:
        ended = conn.execute(
            sa.text(
                "SELECT pg_terminate_backend(pid) FROM pg_locks "
                "WHERE locktype = 'advisory' AND classid::bigint = 0 AND objid::bigint = :key "
                "AND granted"
            ),
            {"key": 0x48554A00},
        ).all()
        conn.commit()
    engine.dispose()
    assert ended == [(True,)]
    assert not lease.alive()
    again = take()
    assert again is not None
    again.release()
    lease.release()


async def test_two_runners_on_one_database_run_the_jobs_once_and_hand_over(
    tmp_path: Path,
) -> None:
    url = f"sqlite:///{tmp_path / 'hub.db'}"
    ticks: dict[str, int] = {"a": 0, "b": 0}

    def ticker(name: str) -> Any:
        async def tick() -> None:
            while True:
                ticks[name] += 1
                await asyncio.sleep(0.05)

        return tick

    a = SingletonJobs(lease_taker(url), {"tick": ticker("a")}, poll_s=0.1)
    b = SingletonJobs(lease_taker(url), {"tick": ticker("b")}, poll_s=0.1)
    run_a = asyncio.create_task(a.run())
    await asyncio.sleep(0.3)  # a takes the lease first
    run_b = asyncio.create_task(b.run())
    await asyncio.sleep(1.0)
    assert (a.held, b.held) == (True, False)
    assert ticks["a"] > 5
    assert ticks["b"] == 0
    run_a.cancel()  # the holder stops: its jobs stop, its lease goes
    await asyncio.gather(run_a, return_exceptions=True)
    stopped_at = ticks["a"]
    await asyncio.sleep(0.5)
    assert b.held
    assert ticks["b"] > 0
    assert ticks["a"] == stopped_at
    run_b.cancel()
    await asyncio.gather(run_b, return_exceptions=True)
    assert b.status() == {"held": False, "jobs": ["tick"], "taken": 1, "lost": 0}
