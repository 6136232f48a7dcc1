"""InfluxDB bytes on disk per reading, for the sizing in docs/scaleout.md.

Starts Debian's InfluxDB 1.6 (TSM engine, the same storage format as 2.x) on free loopback ports
(`bench/_influxd.py`) with
compactions told to run seconds after the last write, writes one day of readings of the hub's schema
(measurement ``readings``, its tags, fields ``value`` and ``q``; ms timestamps with device-clock jitter),
waits until the write-ahead log is folded into fully compacted TSM files, and prints the TSM bytes per
reading. Values follow three shapes seen in city sensors: slow random walks (levels, pressure),
noisy readings (counts, noise, speed) and near-constant states (battery, on/off, alarms).

    .venv/bin/python bench/influx_disk.py [--devices 2000] [--reports 288]

Prints ``influx_disk_bytes_per_reading=``, ``influx_disk_readings=``, ``influx_disk_tsm_bytes=``,
``influx_series=`` (devices x metrics) and ``influx_rss_mb=`` (influxd's resident memory after the
compaction: with many devices and few reports, what the series index costs; 1.6's default in-memory
index, so an upper bound for 2.x's disk-based TSI).
"""

from __future__ import annotations

import argparse
import http.client
import shutil
import sys
import time
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from bench._influxd import BenchInfluxd

INTERVAL_MS = 300_000  # one report every 5 minutes, the water profiles' interval
METRICS = ("level", "rate", "battery")  # walk, noisy, near-constant
T0_MS = 1_767_225_600_000  # 2026-01-01T00:00:00Z


# Compactions right after the writes stop, so the figure is of fully compacted TSM files.
COMPACT_SOON = """
cache-snapshot-write-cold-duration = "1s"
compact-full-write-cold-duration = "2s"
"""


def values(rng: np.random.Generator, kind: str, shape: tuple[int, int]) -> np.ndarray:
    """Readings of one metric for every (device, report): as sensors round them."""
    if kind == "level":
        return np.round(2.0 + np.cumsum(rng.normal(0.0, 0.01, shape), axis=1), 3)
    if kind == "rate":
        return np.round(rng.gamma(2.0, 10.0, shape), 1)
    steps = rng.random(shape) < 0.01  # battery: a step down now and then
    return np.round(100.0 - np.cumsum(steps, axis=1) * 0.5, 1)


def lines(devices: int, reports: int, seed: int = 7) -> list[bytes]:
    """Line protocol of the hub's shape, in requests of 5,000 lines (the hub's batch)."""
    rng = np.random.default_rng(seed)
    jitter = rng.integers(-2_000, 2_000, (devices, reports))
    times = (T0_MS + np.arange(reports) * INTERVAL_MS + jitter).tolist()
    out: list[str] = []
    for metric in METRICS:
        v = values(rng, metric, (devices, reports)).tolist()  # Python floats: repr() is exact
        for d in range(devices):
            district = f"demo-city/district-{d % 12}"
            tags = (
                f"readings,area={district}/street-{d % 97}/block-{d % 7},device=dev-{d:06d},"
                f"district={district},metric={metric},point={d},street={district}/street-{d % 97},"
                f"type=water_level,vendor=hydrox value="
            )
            out.extend(f"{tags}{x!r},q=0i {t}" for x, t in zip(v[d], times[d], strict=True))
    return ["\n".join(out[i : i + 5000]).encode() for i in range(0, len(out), 5000)]


def post(port: int, path: str, body: bytes) -> None:
    """POST to influxd on 127.0.0.1; anything but 2xx stops the run."""
    conn = http.client.HTTPConnection("127.0.0.1", port, timeout=60)
    try:
        conn.request("POST", path, body)
        resp = conn.getresponse()
        text = resp.read()
        if resp.status // 100 != 2:
            raise SystemExit(f"influxd answered {resp.status} to {path}: {text[:200]!r}")
    finally:
        conn.close()


def tsm_bytes(data_dir: Path) -> tuple[int, int]:
    """Bytes and count of TSM files under ``data_dir``."""
    files = list(data_dir.rglob("*.tsm"))
    return sum(f.stat().st_size for f in files), len(files)


def rss_mb(pid: int) -> float:
    """Resident memory of a process, in MB (Linux /proc)."""
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1]) / 1024
    return float("nan")


def main() -> None:
    """Write, wait for the full compaction, print the figures."""
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--devices", type=int, default=2000)
    ap.add_argument("--reports", type=int, default=288, help="reports per device (288: one day)")
    args = ap.parse_args()
    if shutil.which("influxd") is None:
        print("influx_disk_skipped=influxd not installed")
        return
    with BenchInfluxd(data_settings=COMPACT_SOON) as server:
        assert server.proc is not None  # noqa: S101 - started by the `with`
        post(server.port, "/query?q=CREATE+DATABASE+cityhub", b"")
        bodies = lines(args.devices, args.reports)
        readings = args.devices * args.reports * len(METRICS)
        for body in bodies:
            post(server.port, "/write?db=cityhub&precision=ms", body)
        # Wait until the WAL is empty and the TSM files stop changing (fully compacted).
        data_dir, wal_dir = server.dir / "data" / "cityhub", server.dir / "wal" / "cityhub"
        last, stable_since = (-1, -1), time.monotonic()
        deadline = time.monotonic() + 120
        while time.monotonic() < deadline:
            now = tsm_bytes(data_dir)
            wal = sum(f.stat().st_size for f in wal_dir.rglob("*.wal"))
            if now != last:
                last, stable_since = now, time.monotonic()
            elif wal == 0 and now[1] <= 2 and time.monotonic() - stable_since > 5:
                break
            time.sleep(1)
        size, files = last
        print(f"influx_disk_readings={readings}")
        print(f"influx_disk_tsm_files={files}")
        print(f"influx_disk_tsm_bytes={size}")
        print(f"influx_disk_bytes_per_reading={size / readings:.2f}")
        print(f"influx_series={args.devices * len(METRICS)}")
        print(f"influx_rss_mb={rss_mb(server.proc.pid):.0f}")


if __name__ == "__main__":
    main()
