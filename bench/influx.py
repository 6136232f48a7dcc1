"""InfluxDB benchmark: readings through the hub's writer against raw line-protocol POSTs of the same points.

Method. A real InfluxDB 1.x (Debian's ``influxd``) on loopback with its data in a temporary directory,
stopped by PID at the end. Two databases get the same series first (one point each, untimed), so series
creation is not measured. Then, in alternating rounds on fresh timestamps:

- the hub: ``InfluxStore.write(batch)`` of a ``ReadingBatch`` (column-wise line protocol from a
  registry-like tag table: device, vendor, type, area, district, street, metric, point), with the
  store's default settings: 5,000 lines per request, 2 requests in flight, gzip, retries;
- the baseline: the same points as line protocol already built (not timed), POSTed to ``/write`` in
  the same 5,000-line requests, 2 in flight, uncompressed, by urllib3: the least a client can do.

Both wait until InfluxDB has acknowledged every request. The best round of each is kept. Prints
``influx_write_points_s``, ``influx_raw_points_s``, ``influx_ratio`` (target >= 0.8), and
``influx_build_points_s`` (line protocol built, no I/O). Without influxd it prints a skip line.
"""

from __future__ import annotations

import argparse
import shutil
import sys
import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import numpy as np
import urllib3

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from bench._influxd import BenchInfluxd
from ingest.batch import ReadingBatch
from ingest.store.influx import InfluxStore
from ingest.store.influxconf import InfluxSettings
from ingest.store.lineproto import DeviceLabels, SeriesTags, encode_readings

METRICS = ("water_level", "battery", "signal", "rainfall")
T0_MS = 1_763_798_400_000


def city_tags(devices: int) -> SeriesTags:
    """Tags like the demo city's: ~60-byte areas, four metrics."""
    labels = [
        DeviceLabels(
            i,
            f"wl-{i:05d}",
            "hydrox",
            "water_level",
            f"demo/district-{i % 7}/street-{i % 41}/g{i % 97:04d}",
        )
        for i in range(devices)
    ]
    return SeriesTags.build(labels, METRICS)


def make_batch(devices: int, steps: int, t0: int) -> ReadingBatch:
    """``devices x len(METRICS) x steps`` readings, one every 10 s per series."""
    rng = np.random.default_rng(7)
    n = devices * len(METRICS) * steps
    idx = np.arange(n)
    series = idx % (devices * len(METRICS))
    return ReadingBatch.from_columns(
        device=series // len(METRICS),
        metric=series % len(METRICS),
        ts=t0 + (idx // (devices * len(METRICS))) * 10_000,
        value=np.round(rng.normal(3.0, 1.0, n), 3),
        quality=np.zeros(n, dtype=np.uint8),
    )


class StaticTagStore(InfluxStore):
    """The hub's store with a fixed tag table (the hub builds its table from the registry)."""

    def __init__(self, settings: InfluxSettings, tags: SeriesTags) -> None:
        super().__init__(settings)
        self._tags = tags

    def series_tags(self) -> SeriesTags:
        return self._tags


def raw_post(url: str, database: str, chunks: list[bytes], concurrency: int) -> float:
    http = urllib3.PoolManager(maxsize=concurrency + 2)
    target = f"{url}/write?db={database}&rp=raw&precision=ms"

    def post(body: bytes) -> None:
        r = http.request("POST", target, body=body)
        if r.status != 204:
            raise SystemExit(f"raw write failed: {r.status} {r.data[:200]!r}")

    with ThreadPoolExecutor(concurrency) as pool:
        started = time.perf_counter()
        list(pool.map(post, chunks))
        return time.perf_counter() - started


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--devices", type=int, default=5000)
    ap.add_argument("--steps", type=int, default=5, help="readings per series per round")
    ap.add_argument("--rounds", type=int, default=5)
    ap.add_argument(
        "--gzip",
        action=argparse.BooleanOptionalAction,
        default=True,
        help="compress the hub's requests (its default setting)",
    )
    ap.add_argument(
        "--count-new",
        action="store_true",
        help="the writer first asks which keys exist, to count new readings exactly",
    )
    args = ap.parse_args()
    if shutil.which("influxd") is None and not Path("/usr/bin/influxd").exists():
        print("influx_bench=skipped (influxd is not installed: apt-get install influxdb)")
        return
    tags = city_tags(args.devices)
    per_round = args.devices * len(METRICS) * args.steps
    with BenchInfluxd() as server:
        hub_settings = InfluxSettings(
            url=server.url, database="bench_hub", gzip=args.gzip, count_new=args.count_new
        )
        raw_settings = InfluxSettings(url=server.url, database="bench_raw")
        hub = StaticTagStore(hub_settings, tags)
        raw = StaticTagStore(raw_settings, tags)  # creates the database and its policies
        warm = make_batch(args.devices, 1, T0_MS - 60_000)
        hub.write(warm)
        raw.write(warm)
        step = hub_settings.batch_lines
        hub_s, raw_s, build_s = [], [], []
        for r in range(args.rounds):
            batch = make_batch(args.devices, args.steps, T0_MS + r * 3_600_000)
            t = time.perf_counter()
            lines = encode_readings(batch, tags)
            build_s.append(time.perf_counter() - t)
            rows = lines[1:].split(b"\n")
            chunks = [b"\n".join(rows[i : i + step]) for i in range(0, len(rows), step)]
            # Alternate who goes first, so neither always meets a freshly compacted server.
            for who in ("raw", "hub") if r % 2 == 0 else ("hub", "raw"):
                if who == "raw":
                    raw_s.append(
                        raw_post(server.url, "bench_raw", chunks, hub_settings.concurrency)
                    )
                    continue
                t = time.perf_counter()
                if hub.write(batch) != len(batch):
                    raise SystemExit("the hub's writer did not take every reading")
                hub_s.append(time.perf_counter() - t)
        total = per_round * args.rounds + len(warm)
        for store in (hub, raw):
            if store.count() != total:
                raise SystemExit(f"{store.settings.database} holds {store.count()} of {total}")
        hub.close()
        raw.close()
        version = server.version
    hub_rate, raw_rate = per_round / min(hub_s), per_round / min(raw_s)
    print(f"influx_write_points_s={hub_rate:.0f}")
    print(f"influx_raw_points_s={raw_rate:.0f}")
    print(f"influx_ratio={hub_rate / raw_rate:.2f}")
    print(f"influx_build_points_s={per_round / min(build_s):.0f}", flush=True)
    print(
        f"# InfluxDB {version}: {args.rounds} rounds of {per_round} points "
        f"({args.devices} devices x {len(METRICS)} metrics x {args.steps}); "
        f"hub {[round(s, 2) for s in hub_s]} s, raw {[round(s, 2) for s in raw_s]} s",
        file=sys.stderr,
        flush=True,
    )


if __name__ == "__main__":
    main()
