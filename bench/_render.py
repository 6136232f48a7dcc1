"""The report's outputs under bench/results/: a Markdown table and a PNG plot (matplotlib, bench extra)."""

from __future__ import annotations

from pathlib import Path
from typing import Any

from bench._offered import Point

COLOURS = {"hub": "tab:blue", "nodered": "tab:red", "paho": "tab:green", "c": "tab:gray"}
LABELS = {
    "hub": "hub",
    "hub+decoders": "hub, decode workers",
    "nodered": "Node-RED",
    "paho": "paho counter",
    "c": "mosquitto_sub (C)",
}


def plot(points: list[Point], limit_c: float, path: Path) -> None:
    """Achieved throughput and p99 latency against offered load, one line per system."""
    import matplotlib as mpl

    mpl.use("Agg")
    import matplotlib.pyplot as plt

    fig, (ax1, ax2) = plt.subplots(1, 2, figsize=(12, 4.8))
    for system in ("paho", "nodered", "hub"):
        pts = sorted((p for p in points if p.system == system), key=lambda p: p.offered_msgs_s)
        if not pts:
            continue
        x = [p.offered_msgs_s for p in pts]
        colour = COLOURS[system]
        ax1.plot(x, [p.achieved_msgs_s for p in pts], "o-", color=colour, label=LABELS[system])
        kinds = sorted(pts[0].latency_ms)
        for kind in kinds:
            style = "s--" if kind == "stored" else "o-"
            ax2.plot(
                x,
                [p.pct(kind, 99) for p in pts],
                style,
                color=colour,
                label=f"{LABELS[system]}: publish → {kind}",
            )
    top = max([p.offered_msgs_s for p in points] + [1.0])
    ax1.plot([0, top], [0, top], ":", color="black", linewidth=0.8, label="achieved = offered")
    if limit_c > 0:
        ax1.axhline(
            limit_c, color=COLOURS["c"], linestyle="-.", label="mosquitto_sub (C) drain limit"
        )
    ax1.set_xlabel("offered load (single-reading messages/s, QoS 1)")
    ax1.set_ylabel("achieved (messages/s)")
    ax1.set_title("Throughput under offered load")
    ax1.legend(fontsize=8)
    ax2.set_xlabel("offered load (messages/s)")
    ax2.set_ylabel("p99 latency (ms, log)")
    ax2.set_yscale("log")
    ax2.set_title("p99 latency under offered load")
    ax2.legend(fontsize=8)
    for ax in (ax1, ax2):
        ax.grid(True, alpha=0.3)
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)


def markdown(
    meta: dict[str, Any],
    figures: dict[str, str],
    drains: list[dict[str, Any]],
    points: list[Point],
    loss: dict[str, dict[str, int]],
    queries: dict[str, float],
) -> str:
    """The report as Markdown."""
    out = [
        "# Hub benchmark report (`make bench-report`)",
        "",
        f"Run {meta['when']} on {meta['machine']}; mode: {meta['mode']}; {meta['seconds']:.0f} s. "
        "One Mosquitto with the hub's no-loss configuration for every system. The machine is shared "
        "and noisy: compare systems within one run, not across runs.",
        "",
        "## Figures",
        "",
        "| name | value |",
        "| --- | ---: |",
        *(f"| `{k}` | {v} |" for k, v in figures.items()),
        "",
        "## Saturation: every consumer drains the same backlog (QoS 1)",
        "",
        "| payload | devices | system | messages | readings | seconds | msgs/s | readings/s |",
        "| --- | ---: | --- | ---: | ---: | ---: | ---: | ---: |",
    ]
    out.extend(
        f"| {d['payload']} | {d['devices']:,} | {LABELS[d['system']]} | {d['messages']:,} | "
        f"{d['readings']:,} | {d['seconds']:.2f} | {d['msgs_s']:,.0f} | {d['readings_s']:,.0f} |"
        for d in drains
    )
    out += [
        "",
        "## Latency under offered load (single-reading messages, QoS 1)",
        "",
        "Offered: 25/50/75/100 % of the hub's saturation rate. Latency: publish → the system's answer, "
        "for probe readings over the threshold sent through the load. Achieved: what the system took "
        'from the load\'s start until it had taken everything (or gave up waiting). "≥": some probes '
        "were not answered within the wait and count with the time waited.",
        "",
        "| system | offered msgs/s | achieved msgs/s | path | probes | p50 ms | p99 ms |",
        "| --- | ---: | ---: | --- | ---: | ---: | ---: |",
    ]
    for p in points:
        for kind in p.latency_ms:
            answered = p.answered.get(kind, p.probes)
            # Unanswered probes count with the time waited: the percentiles are then lower bounds.
            at_least = "≥ " if answered < p.probes else ""
            out.append(
                f"| {LABELS[p.system]} | {p.offered_msgs_s:,.0f} | {p.achieved_msgs_s:,.0f} | "
                f"publish → {kind} | {answered}/{p.probes} | {at_least}{p.pct(kind, 50):.1f} | "
                f"{at_least}{p.pct(kind, 99):.1f} |"
            )
    out += [
        "",
        "![throughput and p99 latency against offered load](report.png)",
        "",
        "Drain and paced load can disagree for the counters and Node-RED: a backlog arrives as one "
        "burst (the broker sends an MQTT 3 client everything at once), paced load does not; the "
        "`*_live_max_msgs_s` figures are the most each took while paced. The hub's CPU profile at "
        "saturation (py-spy) is in `profile-single.txt` (`--profile batched`: the 100-reading drain).",
        "",
        "## Broker settings: no loss (issue 9 item 5)",
        "",
        "A persistent QoS 1 subscriber that is away while messages are published, then comes back:",
        "",
        "| Mosquitto configuration | published | acknowledged to the publisher | received |",
        "| --- | ---: | ---: | ---: |",
        *(
            f"| {name} | {r['published']:,} | {r['acked']:,} | {r['received']:,} |"
            for name, r in (
                ("defaults (max_queued_messages 1000)", loss["defaults"]),
                ("the hub's (hub/embedded_broker.py)", loss["shipped"]),
            )
        ),
        "",
        "## Queries against the embedded store",
        "",
        f"{queries['rows']:,.0f} readings prefilled ({queries['fill_s']:.1f} s): 10,000 devices hourly for "
        "30 days plus one series every 10 s. Median of 7 after a warm-up.",
        "",
        "| query | ms | rows |",
        "| --- | ---: | ---: |",
        f"| latest of every series (first call after open: scans) | {queries['latest_cold_ms']:.1f} | "
        f"{queries['latest_series']:,.0f} |",
        f"| latest of every series (`FileStore.latest`, then) | {queries['latest_ms']:.2f} | "
        f"{queries['latest_series']:,.0f} |",
        f"| 24 h of one series, 1-minute buckets | {queries['d24_ms']:.1f} | {queries['d24_buckets']:,.0f} |",
        f"| 30 days of one series, 1-hour buckets | {queries['d30_ms']:.1f} | {queries['d30_buckets']:,.0f} |",
        f"| readings per area, last 24 h (50 areas) | {queries['area_ms']:.1f} | "
        f"{queries['area_total']:,.0f} readings |",
        "",
    ]
    return "\n".join(out)
