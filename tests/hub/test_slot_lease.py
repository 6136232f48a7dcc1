"""Slot leases on SQLite (a file lock) and PostgreSQL (an advisory lock): one process per slot."""

from __future__ import annotations

import subprocess
import sys
import textwrap

import pytest

from hub.errors import HubError
from hub.slot_lease import take_slot


def test_a_slot_is_leased_once_and_a_standby_gets_the_first_free_one(db_url: str) -> None:
    first = take_slot(db_url, 3, 0)
    with pytest.raises(HubError, match="slot 0 is already running"):
        take_slot(db_url, 3, 0)
    standby = take_slot(db_url, 3, None, poll_s=0.05, timeout_s=5)
    assert standby.slot == 1
    second = take_slot(db_url, 3, None, poll_s=0.05, timeout_s=5)
    assert second.slot == 2
    with pytest.raises(HubError, match="no ingest worker slot came free"):
        take_slot(db_url, 3, None, poll_s=0.05, timeout_s=0.3)
    first.release()
    again = take_slot(db_url, 3, None, poll_s=0.05, timeout_s=5)
    assert again.slot == 0
    for lease in (again, standby, second):
        lease.release()


def test_a_process_that_dies_gives_its_slot_up(db_url: str) -> None:
    """SIGKILL releases a lease too: the kernel drops the file lock, PostgreSQL the session's lock."""
    holder = subprocess.Popen(
        [
            sys.executable,
            "-c",
            textwrap.dedent(
                f"""
                import sys, time
                from hub.slot_lease import take_slot
                lease = take_slot({db_url!r}, 2, 1)
                print("held", flush=True)
                time.sleep(60)
                """
            ),
        ],
        stdout=subprocess.PIPE,
        text=True,
    )
    try:
        assert holder.stdout is not None
        assert holder.stdout.readline().strip() == "held"
        with pytest.raises(HubError):
            take_slot(db_url, 2, 1)
        holder.kill()
        holder.wait(10)
        lease = take_slot(db_url, 2, 1)
        assert lease.slot == 1
        lease.release()
    finally:
        if holder.poll() is None:
            holder.kill()
            holder.wait(10)
        if holder.stdout is not None:
            holder.stdout.close()
