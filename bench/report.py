"""The whole pipeline against its limits and its peer, side by side, in one run (issue 9): `make bench-report`.

One machine, one Mosquitto with the hub's no-loss configuration, the same payloads for every system:
one-reading messages (half SenML, half a gateway's vendor JSON) over 5,000 and 100,000 devices, and
100-reading gateway messages over 100,000 devices, all QoS 1. Systems, in turn:

- the limit: ``mosquitto_sub`` (C) counting, and a paho-mqtt subscriber that only counts;
- the peer: Node-RED (npm, cached in ~/.cache/hub-bench) with ``mqtt in -> json -> switch -> count``;
- the hub: ``python -m hub run`` (decode, normalise, embedded store, rules, live state, feed).

Phases (see each helper's docstring for its method):
1. saturation (bench/_drain.py): every consumer drains the same backlog;
2. latency under offered load (bench/_offered.py) at 25/50/75/100 % of the hub's saturation rate;
3. queries against the embedded store (bench/_queries.py);
4. broker settings: Mosquitto's defaults lose QoS 1 messages, the hub's configuration does not
   (bench/_loss.py).

Prints name=value lines and writes bench/results/report.md and report.png. ``--quick``: small sizes,
for development (about a minute).
"""

from __future__ import annotations

import argparse
import platform
import shutil
import sys
import tempfile
import time
from collections.abc import Callable
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from bench import _drain, _fleet, _loss, _offered, _profile, _queries, _render
from bench._broker import BenchBroker
from bench._hubproc import HubProcess
from bench._nodered import NodeRed

RESULTS = Path(__file__).resolve().parent / "results"


POOLED = "hub+decoders"
"""The drains' name for the hub with decode worker processes (``--decode-workers``)."""


def _fresh_hub_dir(root: Path, template: Path, name: str) -> Path:
    """A data directory with the prebuilt registry and the bench rule, for one hub run."""
    data = root / name
    data.mkdir()
    shutil.copy(template, data / "hub.db")
    (data / "bench-rules.yaml").write_text(_fleet.RULES_YAML)
    return data


def saturation(
    broker: BenchBroker, root: Path, registry: Path, args: argparse.Namespace
) -> list[dict[str, Any]]:
    """Phase 1: the same backlog drained by each consumer, for each payload set."""

    # Device times end about now: the hub flags a device whose readings lag by an hour or more
    # (clock behind) and raises an alert for it, which is not what this phase measures.
    def single(n: int) -> Callable[[int], list[tuple[bytes, bytes]]]:
        return lambda now: _fleet.single_messages(args.messages, n, now - args.messages // n)

    sets: list[tuple[str, int, Callable[[int], list[tuple[bytes, bytes]]], int]] = [
        ("single", n, single(n), 1) for n in args.devices
    ]
    big = args.devices[-1]
    span = args.batched * 100 // (big // 2)
    sets.append(
        (
            "100-reading",
            big,
            lambda now: _fleet.batched_messages(args.batched, big, now - span),
            100,
        )
    )
    rows: list[dict[str, Any]] = []
    for k, (payload, devices, make, per) in enumerate(sets):
        messages = make(int(time.time()))
        n, t_set = len(messages), time.perf_counter()
        _drain.make_sessions(broker.port)
        data = _fresh_hub_dir(root, registry, f"hub-drain-{k}")
        # The hub publishes the backlog (for every session) while it is paused, then drains first.
        # py-spy on the hub while it drains one-reading messages over the fewest devices (not the
        # headline set: py-spy's own CPU would be taken from it on this 2-core machine), or with
        # --profile batched the 100-reading messages (then hub_batched_readings_s pays for it).
        if args.profile == "single":
            profiled = payload == "single" and devices == args.devices[0]
        else:
            profiled = payload == "100-reading"
        raw = root / "hub-profile.raw" if profiled else None
        results = {"hub": _drain.drain_hub(broker, data, messages, n * per, raw)}
        if raw is not None and raw.exists():
            summary = _profile.summarise(raw)
            name = f"profile-{args.profile}" + ("-quick" if args.quick else "")
            (args.out / f"{name}.txt").write_text(
                f"# py-spy: the hub draining {n:,} {payload} messages over {devices:,} devices\n"
                + summary
            )
        print(f"# {payload} x {n} messages over {devices} devices", file=sys.stderr)
        results["c"] = _drain.drain_c(broker.port, n)
        results["paho"] = _drain.drain_paho(broker.port, n)
        results["nodered"] = _drain.drain_nodered(broker.port, n, args.nodered_s)
        if per > 1 and args.decode_workers:
            # The same backlog again, for the hub with its decoding in worker processes alone.
            _drain.clear_sessions(broker.port, *_drain.ALL)
            results[POOLED] = _drain.drain_hub(
                broker,
                _fresh_hub_dir(root, registry, f"hub-drain-{k}-decoders"),
                messages,
                n * per,
                env={"HUB_INGEST__DECODE_WORKERS": str(args.decode_workers)},
            )
        print(f"#   ({time.perf_counter() - t_set:.0f} s)", file=sys.stderr)
        for system, d in results.items():
            readings = d.readings if system.startswith("hub") else d.messages * per
            rows.append(
                {
                    "payload": payload,
                    "devices": devices,
                    "system": system,
                    "messages": d.messages,
                    "readings": readings,
                    "seconds": d.seconds,
                    "msgs_s": d.messages / d.seconds,
                    "readings_s": readings / d.seconds,
                    "cpu_us_per_reading": d.cpu_s / max(d.readings, 1) * 1e6,
                    "rss_mb": d.rss_mb,
                    "stored": d.stored,
                    "expected": n * per,
                }
            )
            print(
                f"#   {system:8s} {d.messages / d.seconds:>10,.0f} msgs/s {readings / d.seconds:>12,.0f} readings/s"
                + (f" {d.rss_mb:>5.0f} MB" if system.startswith("hub") else ""),
                file=sys.stderr,
            )
    return rows


def offered(
    broker: BenchBroker, root: Path, registry: Path, saturated: float, args: argparse.Namespace
) -> list[_offered.Point]:
    """Phase 2: each system at 25/50/75/100 % of the hub's saturation rate."""
    rates = [saturated * f for f in (0.25, 0.5, 0.75, 1.0)]
    offer = _offered.Offer(
        broker.port, args.devices[-1], args.seconds, args.probe_rate, args.drain_s
    )
    points: list[_offered.Point] = []

    def show(p: _offered.Point) -> None:
        lat = ", ".join(
            f"{k} p50 {p.pct(k, 50):.0f} p99 {p.pct(k, 99):.0f} ms" for k in p.latency_ms
        )
        print(
            f"#   {p.system:8s} offered {p.offered_msgs_s:>8,.0f} achieved {p.achieved_msgs_s:>8,.0f}: {lat}",
            file=sys.stderr,
        )
        points.append(p)

    # Persistent sessions left from phase 1 (or by a system stopped here) would queue this load.
    _drain.clear_sessions(broker.port, *_drain.ALL)
    for rate in rates:
        show(_offered.paho_point(offer, rate))
    for rate in rates:
        # A fresh Node-RED and session per point: an overloaded one keeps a backlog in its own memory.
        _drain.clear_sessions(broker.port, *_drain.ALL)
        with NodeRed(broker.port) as red:
            show(_offered.nodered_point(offer, rate, red.counts))
    _drain.clear_sessions(broker.port, *_drain.ALL)
    data = _fresh_hub_dir(root, registry, "hub-offered")
    with HubProcess(data, broker.port, data / "bench-rules.yaml") as hub:
        hub.wait_ready()
        time.sleep(1.0)  # the hub's start-up work (live state, rules) done
        for rate in rates:
            show(_offered.hub_point(offer, rate, hub.http))
    return points


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--quick", action="store_true", help="small sizes, for development")
    parser.add_argument("--out", type=Path, default=RESULTS)
    parser.add_argument(
        "--decode-workers",
        type=int,
        default=2,
        help="also drain the 100-reading backlog with this many decode worker processes (0: not)",
    )
    parser.add_argument(
        "--profile",
        choices=["single", "batched"],
        default="single",
        help="which drain py-spy records (default: one-reading messages over the fewest devices)",
    )
    args = parser.parse_args()
    if args.quick:
        args.devices, args.messages, args.batched, args.registered = [5000], 10_000, 200, 10_000
        args.seconds, args.probe_rate, args.drain_s, args.nodered_s = 2.0, 5.0, 4.0, 10.0
        args.query_devices, args.loss = 1000, 2000
    else:
        # 30,000 100-reading messages (3 M readings, a drain of about 3 s). With 10,000 the drain
        # lasted about a second and what each drain pays once weighed on the rate: the hub's CPU
        # per reading was 1.27-1.56 us against 1.03-1.30 over 30,000 (alternate runs, 2026-12-01),
        # and the end of a drain waits for the last store write (up to 50 ms after the last
        # message) and the next 50 ms poll of the stored count.
        args.devices, args.messages, args.batched, args.registered = (
            [5000, 100_000],
            100_000,
            30_000,
            100_000,
        )
        args.seconds, args.probe_rate, args.drain_s, args.nodered_s = 6.0, 10.0, 10.0, 25.0
        args.query_devices, args.loss = 10_000, 5000
    started = time.perf_counter()
    args.out.mkdir(parents=True, exist_ok=True)

    with tempfile.TemporaryDirectory(prefix="bench-report-") as tmp, BenchBroker() as broker:
        root = Path(tmp)
        registry = root / "registry.db"
        t = time.perf_counter()
        _fleet.build_registry(registry, args.registered)
        print(
            f"# registry of {args.registered + _fleet.PROBES:,} devices in {time.perf_counter() - t:.1f} s",
            file=sys.stderr,
        )
        print("# phase 1: saturation (drain the same backlog)", file=sys.stderr)
        drains = saturation(broker, root, registry, args)
        hub_single = [d for d in drains if d["system"] == "hub" and d["payload"] == "single"]
        saturated = hub_single[-1]["msgs_s"]
        print(
            f"# phase 2: latency under offered load ({time.perf_counter() - started:.0f} s)",
            file=sys.stderr,
        )
        points = offered(broker, root, registry, saturated, args)
    print(f"# phase 3: queries ({time.perf_counter() - started:.0f} s)", file=sys.stderr)
    queries = _queries.run(args.query_devices, 30)
    print("# phase 4: broker settings", file=sys.stderr)
    loss = _loss.run(args.loss)

    def pick(system: str, payload: str, devices: int) -> dict[str, Any]:
        return next(
            d
            for d in drains
            if d["system"] == system and d["payload"] == payload and d["devices"] == devices
        )

    big = args.devices[-1]
    c, paho, red, hub = (pick(s, "single", big) for s in ("c", "paho", "nodered", "hub"))
    hub_b = pick("hub", "100-reading", big)
    lost = sum(d["expected"] - d["stored"] for d in drains if d["system"] in ("hub", POOLED))
    figures: dict[str, str] = {
        "limit_c_msgs_s": f"{c['msgs_s']:.0f}",
        "limit_paho_msgs_s": f"{paho['msgs_s']:.0f}",
        "peer_nodered_msgs_s": f"{red['msgs_s']:.0f}",
        "hub_msgs_s": f"{hub['msgs_s']:.0f}",
        "hub_vs_paho": f"{hub['msgs_s'] / paho['msgs_s']:.2f}",
        "hub_vs_nodered": f"{hub['msgs_s'] / red['msgs_s']:.2f}",
        "hub_vs_c": f"{hub['msgs_s'] / c['msgs_s']:.3f}",
        # The most each took under paced live load (phase 2): another view of the same limits.
        **{
            f"{name}_live_max_msgs_s": f"{max(p.achieved_msgs_s for p in points if p.system == system):.0f}"
            for name, system in (
                ("limit_paho", "paho"),
                ("peer_nodered", "nodered"),
                ("hub", "hub"),
            )
        },
        "hub_batched_readings_s": f"{hub_b['readings_s']:.0f}",
        # The same backlog drained by the paho counter in the same run: the figure above depends
        # on how busy the shared host is, this ratio much less.
        "hub_batched_vs_paho": f"{hub_b['readings_s'] / pick('paho', '100-reading', big)['readings_s']:.2f}",
        "hub_cpu_us_per_reading": f"{hub['cpu_us_per_reading']:.1f}",
        "hub_cpu_us_per_reading_batched": f"{hub_b['cpu_us_per_reading']:.2f}",
        **_pooled_figures(drains, args.decode_workers, big),
        f"hub_rss_mb_{args.registered // 1000}k": f"{max(d['rss_mb'] for d in drains if d['system'] == 'hub'):.0f}",
        "hub_readings_lost": str(lost),
    }
    for small in args.devices[:-1]:
        h, p = pick("hub", "single", small), pick("paho", "single", small)
        figures[f"hub_msgs_s_{small // 1000}k"] = f"{h['msgs_s']:.0f}"
        figures[f"hub_vs_paho_{small // 1000}k"] = f"{h['msgs_s'] / p['msgs_s']:.2f}"
    for k, point in enumerate(points):
        share = (25, 50, 75, 100)[k % 4]  # each system ran the four rates in this order
        for kind in point.latency_ms:
            prefix = f"{point.system}_{kind}_{share}pct"
            figures[f"{prefix}_p50_ms"] = f"{point.pct(kind, 50):.1f}"
            figures[f"{prefix}_p99_ms"] = f"{point.pct(kind, 99):.1f}"
    figures.update(
        {
            "query_latest_10k_ms": f"{queries['latest_ms']:.2f}",
            "query_latest_10k_first_ms": f"{queries['latest_cold_ms']:.0f}",
            "query_24h_ms": f"{queries['d24_ms']:.1f}",
            "query_30d_ms": f"{queries['d30_ms']:.1f}",
            "query_area_counts_ms": f"{queries['area_ms']:.1f}",
            "broker_defaults_received": f"{loss['defaults']['received']}/{loss['defaults']['published']}",
            "broker_shipped_received": f"{loss['shipped']['received']}/{loss['shipped']['published']}",
        }
    )
    for name, value in figures.items():
        print(f"{name}={value}")

    seconds = time.perf_counter() - started
    meta = {
        "when": datetime.now(tz=UTC).strftime("%Y-%m-%d %H:%M UTC"),
        "machine": f"{platform.machine()}, {_cpus()} CPUs, Python {platform.python_version()}",
        "mode": "quick" if args.quick else "full",
        "seconds": seconds,
    }
    name = "report-quick" if args.quick else "report"
    _render.plot(points, c["msgs_s"], args.out / f"{name}.png")
    text = _render.markdown(meta, figures, drains, points, loss, queries)
    (args.out / f"{name}.md").write_text(text.replace("(report.png)", f"({name}.png)"))
    print(f"# wrote {args.out / name}.md and .png in {seconds:.0f} s", file=sys.stderr)


def _pooled_figures(drains: list[dict[str, Any]], workers: int, devices: int) -> dict[str, str]:
    """The 100-reading drain by the hub with ``workers`` decode processes (ingest/decodepool.py).

    Its CPU time and memory include the workers'. Not in ``hub_rss_mb_*``, which is the hub as
    shipped (decoding in its network thread).
    """
    row = next(
        (d for d in drains if d["system"] == POOLED and d["devices"] == devices and workers), None
    )
    if row is None:
        return {}
    return {
        "hub_decode_workers": str(workers),
        "hub_batched_readings_s_decode_workers": f"{row['readings_s']:.0f}",
        "hub_cpu_us_per_reading_batched_decode_workers": f"{row['cpu_us_per_reading']:.2f}",
        "hub_rss_mb_decode_workers": f"{row['rss_mb']:.0f}",
    }


def _cpus() -> int:
    import os

    return os.cpu_count() or 0


if __name__ == "__main__":
    main()
