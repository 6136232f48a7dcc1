"""Rule engine micro-benchmark: readings evaluated per second by `RuleEngine.evaluate`, engine alone.

Method. A real registry (SQLite file, shipped profiles) with 10,000 devices in the demo city's mix of
types, spread over districts and streets; 50 rules: the 28 shipped ones plus per-district variants of
threshold rules (their own bounds for one district's devices, as a city would write them). Batches of
5,000 readings are generated up front (every metric of ~1,700 devices per batch, values in each
metric's normal range, each series near its own level, about 1 % of devices in an incident that breaches a rule), one batch per 20 ms
of a virtual clock. The engine evaluates them all; the timer (`tick`) runs once per virtual second
and is timed apart.

Baseline, in the same run over the same batches: one numpy comparison per batch of every value
against a per-device bound (``value >= bound[device]``), i.e. what a single vectorised threshold rule
costs at the least. ``alerts_eval_ratio`` is engine / baseline throughput.

Prints name=value lines: alerts_eval_readings_s, alerts_eval_baseline_readings_s, alerts_eval_ratio,
alerts_eval_batch_ms_p50, alerts_eval_batch_ms_p99, alerts_tick_ms, alerts_events,
alerts_snapshot_ms, alerts_snapshot_kb, alerts_restore_ms (rule state to bytes and back, a restart's
cost, restore including compiling the rules), alerts_rules, alerts_devices, every run's figure, and alerts_eval_cpu_readings_s (readings per second of the
process's CPU time: steadier than the wall clock on a shared machine). Each side runs ``--repeats``
times, interleaved; medians count.
"""

from __future__ import annotations

import argparse
import sys
import tempfile
import time
from dataclasses import dataclass
from pathlib import Path

import numpy as np
from numpy.typing import NDArray

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from alerts.engine import RuleEngine
from alerts.rules import Rule
from alerts.ruleset import parse_text, shipped_rules
from devices.loader import load_shipped
from devices.profiles import Device
from devices.registry import Registry
from ingest.batch import ReadingBatch

T0_MS = 1_767_225_600_000
BATCH_MS = 20  # one batch per 20 ms, as the ingest pipeline cuts them

# Device mix (profile, vendor, share), as in the demo city.
MIX = [
    ("hydrox-wl", "hydrox", 0.05),
    ("hydrox-rg", "hydrox", 0.02),
    ("rainco-rg", "rainco", 0.02),
    ("hydrox-pp", "hydrox", 0.05),
    ("hydrox-wq", "hydrox", 0.02),
    ("trafix-flow", "trafix", 0.25),
    ("acme-mc", "acme", 0.18),
    ("acme-smoke", "acme", 0.08),
    ("acme-gas", "acme", 0.06),
    ("acme-bin", "acme", 0.09),
    ("acme-noise", "acme", 0.04),
    ("acme-light", "acme", 0.10),
    ("acme-tilt", "acme", 0.04),
    ("trafix-gw", "trafix", 0.02),
]
DISTRICTS = ["northhill", "eastlake", "riverside", "oldtown", "harbor", "hightech"]

# Per metric: normal low, normal high, incident value (breaches a shipped rule, or is just odd).
VALUES: dict[str, tuple[float, float, float]] = {
    "water_level": (1.5, 4.0, 5.8),
    "battery": (40, 100, 8),
    "signal": (-100, -65, -120),
    "rainfall": (0.0, 0.0, 12.0),
    "rain_rate": (0.0, 2.0, 80.0),
    "pressure": (0.25, 0.42, 0.08),
    "ph": (6.9, 7.7, 5.5),
    "turbidity": (3, 15, 150),
    "dissolved_oxygen": (6, 9, 2.5),
    "conductivity": (250, 650, 2000),
    "water_temperature": (8, 25, 30),
    "vehicle_count": (0, 60, 120),
    "average_speed": (20, 60, 5),
    "occupancy": (0, 40, 95),
    "tilt_angle": (0, 0.8, 20),
    "cover_open": (0, 0, 1),
    "water_detected": (0, 0, 1),
    "smoke_obscuration": (0, 1, 12),
    "smoke_alarm": (0, 0, 1),
    "gas_lel": (0, 3, 30),
    "fill_level": (5, 70, 97),
    "temperature": (5, 30, 80),
    "noise_laeq": (50, 65, 88),
    "noise_lamax": (60, 80, 100),
    "lamp_on": (0, 1, 1),
    "power": (0, 150, 900),
    "displacement_x": (-0.002, 0.002, 0.05),
    "displacement_y": (-0.002, 0.002, 0.05),
}


def build_registry(path: Path, devices: int) -> Registry:
    registry = Registry(f"sqlite:///{path}")
    load_shipped(registry)
    rng = np.random.default_rng(7)
    shares = np.array([m[2] for m in MIX])
    kinds = rng.choice(len(MIX), size=devices, p=shares / shares.sum())
    rows = []
    for i, k in enumerate(kinds.tolist()):
        profile, vendor, _ = MIX[k]
        d = DISTRICTS[i % len(DISTRICTS)]
        street = (i // len(DISTRICTS)) % 12
        rows.append(
            Device(
                id=f"{profile}-{i:05d}",
                vendor=vendor,
                profile=profile,
                area=f"demo/{d}/st{street:02d}/g{(i // 72) % 20:02d}",
                lat=float(30.25 + rng.random() * 0.05),
                lon=float(120.05 + rng.random() * 0.25),
            )
        )
    registry.put_devices(rows)
    return registry


def build_rules(target: int) -> list[Rule]:
    rules = list(shipped_rules())
    variants = [
        ("water_level", "water_level", "levels: {yellow: 4.6, orange: 5.1, red: 5.6}\n  repeat: 2"),
        (
            "pipe_pressure",
            "pressure",
            "direction: below\n  levels: {yellow: 0.22, red: 0.12}\n  for_s: 300",
        ),
        ("noise", "noise_laeq", "levels: {blue: 65, yellow: 70}\n  for_s: 600"),
        ("bin_fill", "fill_level", "levels: {blue: 75, yellow: 90}\n  clear_below: 20"),
    ]
    text: list[str] = []
    k = 0
    while len(rules) + len(text) < target:
        dtype, metric, body = variants[k % len(variants)]
        district = DISTRICTS[(k // len(variants)) % len(DISTRICTS)]
        text.append(
            f"- id: {metric}-{district}-{k}\n  kind: threshold\n  device_type: {dtype}\n"
            f"  metric: {metric}\n  areas: [demo/{district}]\n  {body}\n"
        )
        k += 1
    return rules + parse_text("".join(text), "bench rules")


def build_batches(registry: Registry, count: int, size: int) -> list[ReadingBatch]:
    interner = registry.interner
    profiles = {p.id: p for p in registry.profiles()}
    rng = np.random.default_rng(11)
    # Flatten every (device, metric) series once.
    series_dev: list[int] = []
    series_metric: list[int] = []
    lows: list[float] = []
    highs: list[float] = []
    odd: list[float] = []
    for device_id, entry in interner.devices.items():
        del device_id
        for m in profiles[entry.profile].metrics:
            series_dev.append(entry.index)
            series_metric.append(interner.metrics[m.name])
            low, high, incident_value = VALUES[m.name]
            lows.append(low)
            highs.append(high)
            odd.append(incident_value)
    dev = np.array(series_dev, dtype=np.int32)
    met = np.array(series_metric, dtype=np.int16)
    lo, hi, bad = np.array(lows), np.array(highs), np.array(odd)
    n_dev = int(dev.max()) + 1
    incident = rng.random(n_dev) < 0.01  # about 1 % of devices are in trouble
    # Each series wanders a little around its own level (a real water level is smooth).
    level = lo + rng.random(len(dev)) * (hi - lo)
    wobble = (hi - lo) * 0.01
    by_device = np.argsort(dev, kind="stable")
    starts = np.searchsorted(dev[by_device], np.arange(n_dev))
    ends = np.searchsorted(dev[by_device], np.arange(n_dev), side="right")
    per_device = ends - starts
    batches = []
    for b in range(count):
        # Whole messages (every metric of a device) until the batch holds ``size`` readings.
        order = rng.permutation(n_dev)
        take = np.cumsum(per_device[order]) <= size
        chosen = order[take]
        rows = np.concatenate([by_device[starts[d] : ends[d]] for d in chosen.tolist()])
        values = np.clip(
            level[rows] + rng.normal(0, 1, len(rows)) * wobble[rows], lo[rows], hi[rows]
        )
        trouble = incident[dev[rows]]
        values = np.where(trouble, bad[rows], values)
        ts = np.full(len(rows), T0_MS + b * BATCH_MS, dtype=np.int64) - rng.integers(
            0, 15, len(rows)
        )
        batches.append(ReadingBatch.from_columns(dev[rows], met[rows], ts, values))
    return batches


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--devices", type=int, default=10_000)
    parser.add_argument("--rules", type=int, default=50)
    parser.add_argument("--batch", type=int, default=5_000)
    parser.add_argument("--batches", type=int, default=400)
    parser.add_argument(
        "--repeats",
        type=int,
        default=3,
        help="runs of each side; the median counts (busy machines)",
    )
    parser.add_argument("--profile", action="store_true", help="print a cProfile of the engine run")
    args = parser.parse_args()

    with tempfile.TemporaryDirectory() as tmp:
        registry = build_registry(Path(tmp) / "hub.db", args.devices)
        rules = build_rules(args.rules)
        batches = build_batches(registry, args.batches, args.batch)

        runs: list[Run] = []
        baselines: list[float] = []
        for k in range(args.repeats):  # interleaved, so both sides see the same machine
            runs.append(run(registry, rules, batches, args.profile and k == 0))
            baselines.append(baseline(batches, args.devices))

    readings = sum(len(b) for b in batches[1:])
    middle = sorted(runs, key=lambda r: r.seconds)[len(runs) // 2]
    rate = readings / middle.seconds
    base_rate = sum(len(b) for b in batches) / float(np.median(baselines))
    times: NDArray[np.float64] = np.array(middle.per_batch) * 1000
    print(f"alerts_eval_readings_s={rate:.0f}")
    print(f"alerts_eval_baseline_readings_s={base_rate:.0f}")
    print(f"alerts_eval_ratio={rate / base_rate:.3f}")
    print(f"alerts_eval_batch_ms_p50={np.percentile(times, 50):.3f}")
    print(f"alerts_eval_batch_ms_p99={np.percentile(times, 99):.3f}")
    print(f"alerts_tick_ms={middle.tick_ms:.3f}")
    print(f"alerts_events={middle.events}")
    print(f"alerts_snapshot_ms={middle.snapshot_ms:.1f}")
    print(f"alerts_snapshot_kb={middle.snapshot_kb:.0f}")
    print(f"alerts_restore_ms={middle.restore_ms:.1f}")
    print(f"alerts_rules={len(rules)}")
    print(f"alerts_devices={args.devices}")
    print(f"alerts_eval_runs_readings_s={','.join(f'{readings / r.seconds:.0f}' for r in runs)}")
    cpu = float(np.median([r.cpu_seconds for r in runs]))
    print(f"alerts_eval_cpu_readings_s={readings / cpu:.0f}")


@dataclass
class Run:
    seconds: float
    cpu_seconds: float
    per_batch: list[float]
    tick_ms: float
    events: int
    snapshot_ms: float
    snapshot_kb: float
    restore_ms: float


def baseline(batches: list[ReadingBatch], devices: int) -> float:
    """Seconds for one comparison per batch of every value against a per-device bound."""
    bound = np.random.default_rng(3).uniform(0, 100, devices + 1)
    hits = 0
    t0 = time.perf_counter()
    for b in batches:
        hits += int(np.count_nonzero(b.value >= bound[b.device]))
    return time.perf_counter() - t0


def run(registry: Registry, rules: list[Rule], batches: list[ReadingBatch], profile: bool) -> Run:
    """A fresh engine over every batch (the first untimed); ticks once per virtual second."""
    now = [T0_MS]
    engine = RuleEngine(registry, rules, lambda: now[0])
    engine.evaluate(batches[0])
    events = 0
    per_batch: list[float] = []
    tick_s = 0.0
    ticks = 0
    profiler = None
    if profile:
        import cProfile

        profiler = cProfile.Profile()
        profiler.enable()
    cpu = 0.0
    for i, b in enumerate(batches[1:], start=1):
        now[0] = T0_MS + i * BATCH_MS
        c = time.process_time()
        s = time.perf_counter()
        events += len(engine.evaluate(b))
        per_batch.append(time.perf_counter() - s)
        cpu += time.process_time() - c
        if i % (1000 // BATCH_MS) == 0:
            s = time.perf_counter()
            events += len(engine.tick(now[0]))
            tick_s += time.perf_counter() - s
            ticks += 1
    if profiler is not None:
        import pstats

        profiler.disable()
        pstats.Stats(profiler).sort_stats("tottime").print_stats(20)
    s = time.perf_counter()
    blob = engine.state_snapshot()
    saved = time.perf_counter() - s
    s = time.perf_counter()
    RuleEngine.restore(blob, registry, rules, lambda: now[0])
    restored = time.perf_counter() - s
    return Run(
        sum(per_batch),
        cpu,
        per_batch,
        tick_s / max(ticks, 1) * 1000,
        events,
        saved * 1000,
        len(blob) / 1024,
        restored * 1000,
    )


if __name__ == "__main__":
    main()
