"""The report's fleet: one registry of 100,000 devices plus probe devices, and the payloads they send.

Layout: ``d000000``-``d049999`` speak SenML (one record a message), ``d050000``-``d099999`` are behind a
gateway whose vendor JSON carries ``{"data": [{"id", "t", "wl"}]}`` records; ``p00000``... are SenML
probe devices used once each, so every probe raises a fresh alert. A run over ``n`` devices uses the
first ``n // 2`` of each half, so half its messages are SenML and half vendor JSON at every size.
Values are water levels in cm around 1-2 m; the threshold (rule and Node-RED switch) is 10 m.
"""

from __future__ import annotations

import json
from pathlib import Path

VENDOR = "bench"
REGISTERED = 100_000
HALF = REGISTERED // 2
PROBES = 4_000
THRESHOLD_M = 10.0
PROBE_CM = 2_000.0  # 20 m: over the threshold
RULE_ID = "bench-level-high"

RULES_YAML = f"""\
rules:
  - id: {RULE_ID}
    kind: threshold
    name: Bench water level over {THRESHOLD_M:g} m
    device_type: water_level
    metric: water_level
    direction: above
    levels: {{red: {THRESHOLD_M}}}
"""


def device_id(j: int, n: int) -> str:
    """The ``j``-th of ``n`` devices in a run (alternating SenML and gateway records)."""
    del n
    return f"d{(j % 2) * HALF + j // 2:06d}"


def probe_id(k: int) -> str:
    """The ``k``-th probe device."""
    return f"p{k:05d}"


def build_registry(path: Path, registered: int = REGISTERED) -> None:
    """Write the registry (SQLite) the hub runs with: vendor, two profiles, ``registered`` devices
    (the first ``registered // 2`` of each half) and the probe devices."""
    from devices.profiles import Device, DeviceProfile, MetricSpec, Vendor
    from devices.registry import Registry

    reg = Registry(f"sqlite:///{path}")
    reg.put_vendors([Vendor(id=VENDOR, name="Benchmark vendor")])
    metric = (MetricSpec(name="water_level", unit="m", min=-5, max=60),)
    reg.put_profiles(
        [
            DeviceProfile(
                id="bench-senml",
                name="bench SenML level",
                type="water_level",
                domain="water",
                metrics=metric,
                report_interval_s=60,
                codec={"codec": "senml"},
            ),
            DeviceProfile(
                id="bench-gw",
                name="bench gateway",
                type="water_level",
                domain="water",
                metrics=metric,
                report_interval_s=60,
                codec={
                    "codec": "mapping",
                    "records": "/data",
                    "device": "/id",
                    "time": {"path": "/t", "format": "epoch_s"},
                    "fields": [{"path": "/wl", "metric": "water_level", "unit": "cm"}],
                },
            ),
        ]
    )
    ids = [*range(registered // 2), *range(HALF, HALF + registered // 2)]
    devices = [
        Device(
            id=f"d{i:06d}",
            vendor=VENDOR,
            profile="bench-senml" if i < HALF else "bench-gw",
            area=f"bench/a{i % 50:02d}",
        )
        for i in ids
    ]
    devices += [
        Device(id=probe_id(k), vendor=VENDOR, profile="bench-senml", area="bench/probes")
        for k in range(PROBES)
    ]
    reg.put_devices(devices)
    reg.engine.dispose()


def topic(dev: str) -> bytes:
    """The uplink topic of a device."""
    return f"sensors/{VENDOR}/{dev}/up".encode()


def single_messages(count: int, n: int, t0_s: int) -> list[tuple[bytes, bytes]]:
    """``count`` one-reading messages over ``n`` devices; each device's n-th message is 1 s later."""
    out = []
    for i in range(count):
        j = i % n
        dev = device_id(j, n)
        ts = t0_s + i // n
        value = 100.0 + (i % 97)
        if j % 2 == 0:
            body: object = [{"bn": f"{dev}:", "bt": ts, "n": "water_level", "u": "cm", "v": value}]
        else:
            body = {"data": [{"id": dev, "t": ts, "wl": value}]}
        out.append((topic(dev), json.dumps(body, separators=(",", ":")).encode()))
    return out


def batched_messages(count: int, n: int, t0_s: int, per: int = 100) -> list[tuple[bytes, bytes]]:
    """``count`` gateway messages of ``per`` records each, over the gateway half of ``n`` devices."""
    gateways = max(n // 2, 1)
    out = []
    for i in range(count):
        base = (i * per) % gateways
        ts = t0_s + (i * per) // gateways
        data = [
            {"id": f"d{HALF + (base + k) % gateways:06d}", "t": ts, "wl": 100.0 + k}
            for k in range(per)
        ]
        gw = f"d{HALF + i % gateways:06d}"
        out.append((topic(gw), json.dumps({"data": data}, separators=(",", ":")).encode()))
    return out


def senml_template(dev: str) -> bytes:
    """A SenML one-reading payload with ``%.3f`` for the time (s), for paced live load."""
    return (
        '[{"bn":"%s:","bt":%%.3f,"n":"water_level","u":"cm","v":123.0}]' % dev  # noqa: UP031
    ).encode()


def probe_payload(dev: str, t_s: float) -> bytes:
    """A reading over the threshold."""
    body = [{"bn": f"{dev}:", "bt": round(t_s, 3), "n": "water_level", "u": "cm", "v": PROBE_CM}]
    return json.dumps(body, separators=(",", ":")).encode()
