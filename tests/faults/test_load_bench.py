"""The load faults (flood, clock skew, websocket churn) of `bench/_faults_load.py`, at test scale.

What must hold is tested; how fast is a figure (``fault_flood_p99_delta_ms``), printed here and
judged in `bench/faults.py`'s report, not a pass mark on a shared, noisy machine.

Real processes: Mosquitto, the hub in a process of its own, a publisher process, 500 websocket clients.
"""

from __future__ import annotations

import argparse

import pytest

from bench._faults_load import run

pytestmark = [pytest.mark.broker, pytest.mark.slow, pytest.mark.timeout(400)]

SCALE = argparse.Namespace(
    flood_segments=12, flood_segment_s=1.5, flood_warmup_s=4.0, ws_clients=500, ws_rounds=2
)


def test_a_flood_does_not_slow_other_devices_and_websocket_churn_leaks_nothing() -> None:
    figures = run(SCALE)
    # The flooder (50/s against one a second expected) is cut back and flagged once.
    assert abs(figures["fault_flood_published"] - 6 * 1.5 * 50) <= 5, figures
    assert figures["fault_flood_rejected"] > 0, figures
    assert figures["fault_flood_flagged"] == 1, figures
    assert figures["fault_flood_normal_samples"] > 1000, figures
    # Clocks two hours ahead and behind: both devices flagged (and alerted), their readings counted.
    assert figures["fault_skew_devices_flagged"] == 2, figures
    assert figures["fault_skew_readings_flagged"] >= 2, figures
    # 1,500 connections later every screen is gone and the memory is back where it was.
    assert figures["fault_ws_churn_connections"] == 3 * 500, figures
    assert figures["fault_ws_churn_clients_left"] == 0, figures
    assert figures["fault_ws_churn_rss_growth_mb"] < 8, figures
    print(f"fault_flood_p99_delta_ms={figures['fault_flood_p99_delta_ms']:.1f} (test scale)")
