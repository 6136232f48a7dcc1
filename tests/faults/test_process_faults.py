"""Process, broker and store faults against a real hub process (`python -m hub run`) on loopback.

The scenarios are `bench/_faults_process.py`'s, which `bench/faults.py` runs at full length and
prints as figures; here they run shorter where the issue allows it (the broker outage,
``FAULTS_BROKER_OUTAGE_S``, default 5 s; the store outages, ``FAULTS_STORE_OUTAGE_S``, default 15 s)
and every figure is asserted. Readings are counted in the store itself after the hub has stopped.
"""

from __future__ import annotations

import os
from pathlib import Path

import pytest

from bench import _faults_process as faults
from tests.faults.conftest import require_root
from tests.influxd import Influxd

pytestmark = [pytest.mark.broker, pytest.mark.slow]

BROKER_OUTAGE_S = float(os.environ.get("FAULTS_BROKER_OUTAGE_S", "5"))
STORE_OUTAGE_S = float(os.environ.get("FAULTS_STORE_OUTAGE_S", "15"))


@pytest.mark.timeout(400)
def test_a_hub_killed_mid_stream_loses_nothing_and_stores_nothing_twice(tmp_path: Path) -> None:
    figures = faults.kill_restart(tmp_path, readings=100_000)
    assert figures["fault_kill_accepted"] == 100_000
    assert 0 < figures["fault_kill_stored_at_kill"] < 100_000  # killed mid-stream, really
    assert figures["fault_kill_lost"] == 0
    assert figures["fault_kill_dup"] == 0


@pytest.mark.timeout(300)
def test_a_broker_restart_loses_nothing_and_the_hub_resumes_within_5_s(tmp_path: Path) -> None:
    figures = faults.broker_outage(tmp_path, outage_s=BROKER_OUTAGE_S, readings=20_000)
    assert figures["fault_broker_accepted"] > 10_000
    assert figures["fault_broker_lost"] == 0
    assert figures["fault_broker_dup"] == 0
    assert figures["fault_broker_resume_s"] <= 5.0


@pytest.mark.timeout(300)
def test_an_embedded_store_outage_is_spooled_alerted_and_written_after(tmp_path: Path) -> None:
    require_root()
    figures = faults.store_outage_file(tmp_path, outage_s=STORE_OUTAGE_S, rate=500)
    assert figures["fault_store_outage_spooled"] > 0  # the spool took the outage, not the broker
    assert figures["fault_store_outage_blocked"] == 0
    assert figures["fault_store_outage_lost"] == 0
    assert figures["fault_store_outage_dup"] == 0
    assert figures["fault_store_outage_alert_level"] == 3  # orange: spooling, nothing lost yet
    assert figures["fault_store_outage_alert_cleared"] == 1


@pytest.mark.influx
@pytest.mark.timeout(300)
def test_an_influxdb_outage_is_spooled_alerted_and_written_after(
    tmp_path: Path, influxd: Influxd
) -> None:
    figures = faults.store_outage_influx(
        tmp_path, influxd.url, faults.sigstop(influxd.proc), outage_s=STORE_OUTAGE_S, rate=500
    )
    assert figures["fault_influx_outage_spooled"] > 0
    assert figures["fault_influx_outage_lost"] == 0
    assert figures["fault_influx_outage_alert_level"] == 3
    assert figures["fault_influx_outage_alert_cleared"] == 1


@pytest.mark.timeout(300)
def test_a_full_disk_holds_acknowledgements_raises_red_and_corrupts_nothing(
    tmp_path: Path,
) -> None:
    require_root()
    figures = faults.disk_full(tmp_path, full_s=8, rate=500)
    assert figures["fault_disk_full_blocked"] == 1  # neither store nor spool: back-pressure
    assert figures["fault_disk_full_logged"] == 1  # the error names the cause
    assert figures["fault_disk_full_alert_level"] == 4  # red: the hub is blind until it clears
    assert figures["fault_disk_full_alert_cleared"] == 1
    assert figures["fault_disk_full_lost"] == 0
    assert figures["fault_disk_full_dup"] == 0
    assert figures["fault_disk_full_reopened"] == 1


@pytest.mark.timeout(300)
def test_a_full_spool_falls_back_to_back_pressure_raises_red_and_loses_nothing(
    tmp_path: Path,
) -> None:
    require_root()
    figures = faults.store_outage_file(
        tmp_path, outage_s=STORE_OUTAGE_S, rate=500, spool_max_mb=0.05, prefix="spool_full"
    )
    assert figures["spool_full_spooled"] > 0  # the spool took what it could
    assert figures["spool_full_blocked"] == 1  # then the broker kept the rest
    assert figures["spool_full_alert_level"] == 4
    assert figures["spool_full_alert_cleared"] == 1
    assert figures["spool_full_lost"] == 0
    assert figures["spool_full_dup"] == 0


@pytest.mark.timeout(300)
def test_readings_spooled_then_killed_are_replayed_by_the_next_process(tmp_path: Path) -> None:
    require_root()
    figures = faults.kill_while_spooling(tmp_path, rate=500)
    assert figures["fault_kill_spooling_segments_left"] > 0  # the crash left a spool behind
    assert figures["fault_kill_spooling_lost"] == 0
    assert figures["fault_kill_spooling_dup"] == 0
