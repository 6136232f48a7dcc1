"""The load-fault figures of `bench/_faults_load.py`, at test scale, against their targets.

Real processes: Mosquitto, the hub in a process of its own, a publisher process, 500 websocket clients.
"""

from __future__ import annotations

import argparse

import pytest

from bench._faults_load import run

pytestmark = [pytest.mark.broker, pytest.mark.slow, pytest.mark.timeout(300)]


def test_a_flood_does_not_slow_other_devices_and_websocket_churn_leaks_nothing() -> None:
    figures = run(
        argparse.Namespace(segments=12, segment_s=1.5, warmup_s=4.0, ws_clients=500, ws_rounds=2)
    )
    # The flooder (50/s against one a second expected) is cut back and flagged once.
    assert abs(figures["fault_flood_published"] - 6 * 1.5 * 50) <= 5  # 6 flood segments
    assert figures["fault_flood_rejected"] > 0
    assert figures["fault_flood_flagged"] == 1
    # Other devices' p99 publish->stored moves by at most 10 ms (the issue's target).
    assert figures["fault_flood_normal_samples"] > 1000
    assert figures["fault_flood_p99_delta_ms"] <= 10, figures
    # 1,500 connections later every screen is gone and the memory is back where it was.
    assert figures["fault_ws_churn_connections"] == 3 * 500
    assert figures["fault_ws_churn_clients_left"] == 0
    assert figures["fault_ws_churn_rss_growth_mb"] < 8, figures
