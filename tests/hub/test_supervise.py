"""A hub task that stops by itself stops the hub with a non-zero exit, instead of leaving it half alive."""

from __future__ import annotations

import asyncio
import os
import socket
import subprocess
import sys
from pathlib import Path

import pytest

from hub.supervise import TaskWatch
from tests.conftest import Broker, free_port


async def _forever() -> None:
    await asyncio.Event().wait()


async def _fails() -> None:
    await asyncio.sleep(0.01)
    raise OSError("the disk went away (the test's)")


async def _returns() -> None:
    await asyncio.sleep(0.01)


async def test_the_first_task_to_fail_is_reported_once() -> None:
    reported: list[str] = []
    watch = TaskWatch(reported.append)
    steady = asyncio.create_task(_forever(), name="steady")
    done = asyncio.create_task(_returns(), name="nothing-to-do")  # returning is not failing
    doomed = [asyncio.create_task(_fails(), name=f"doomed-{k}") for k in range(2)]
    watch.watch([steady, done, *doomed])
    await asyncio.wait([done, *doomed])
    await asyncio.sleep(0)  # done callbacks run on the next loop turn
    steady.cancel()
    await asyncio.gather(steady, return_exceptions=True)
    reason = "task doomed-0 failed: OSError: the disk went away (the test's)"
    assert reported == [reason]
    assert watch.failure == reason


async def test_cancelled_tasks_and_a_shutdown_are_not_failures() -> None:
    reported: list[str] = []
    watch = TaskWatch(reported.append)
    a = asyncio.create_task(_forever(), name="a")
    b = asyncio.create_task(_fails(), name="b")
    watch.watch([a, b])
    watch.stopping()
    a.cancel()
    await asyncio.gather(a, b, return_exceptions=True)
    await asyncio.sleep(0)
    assert reported == []


@pytest.mark.broker
def test_a_hub_whose_station_server_cannot_listen_exits_non_zero(
    private_broker: Broker, tmp_path: Path
) -> None:
    # The SL 651 port is taken by someone else: its task fails at start. The hub must not go on
    # serving HTTP as if it received stations' data.
    with socket.socket() as taken:
        taken.bind(("127.0.0.1", 0))
        taken.listen()
        env = {
            **os.environ,
            "HUB_DATA_DIR": str(tmp_path / "data"),
            "HUB_MQTT__EMBEDDED": "false",
            "HUB_MQTT__HOST": private_broker.host,
            "HUB_MQTT__PORT": str(private_broker.port),
            "HUB_HTTP__PORT": str(free_port()),
            "HUB_SL651__ENABLED": "true",
            "HUB_SL651__PORT": str(taken.getsockname()[1]),
        }
        env.pop("HUB_CONFIG", None)
        done = subprocess.run(
            [sys.executable, "-m", "hub", "run"],
            env=env,
            capture_output=True,
            text=True,
            timeout=120,
            check=False,
        )
    out = done.stdout + done.stderr
    assert done.returncode == 70, out[-3000:]
    assert "task ingest.sl651 failed" in out, out[-3000:]
