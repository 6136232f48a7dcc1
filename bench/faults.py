"""Fault suite figures (issue 10): the hub under process, broker, store, load and hostile-input faults.

Each part is a module with ``run(args) -> dict[str, float]`` (and, if it has options of its own,
``add_arguments(parser)``); this script runs those that exist and prints every figure as a
``name=value`` line:

- `bench/_faults_process.py` (always): the hub SIGKILLed during a 100,000-reading QoS 1 stream
  (``fault_kill_lost``, ``fault_kill_dup``), the broker stopped for 30 s (``fault_broker_resume_s``,
  ``fault_broker_lost``), the time-series store unavailable for 60 s, embedded and InfluxDB
  (``fault_store_outage_lost``, ``fault_influx_outage_lost``, what was spooled, the alert), and a full
  disk under store and spool (``fault_disk_full_*``). Its module docstring has the method;
- `bench/_faults_load.py` (flood, websocket churn, clock skew) and `bench/_faults_hostile.py`
  (payload and API fuzzing), when present.

Targets: every ``*_lost``, ``*_dup``, ``*_crashes`` and ``*_server_errors`` 0; ``fault_broker_resume_s``
at most 5. The process part needs root (it mounts tmpfs disks to fill them).
"""

from __future__ import annotations

import argparse
import importlib
import math
import sys
import time
from pathlib import Path
from types import ModuleType

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

PARTS = ("bench._faults_process", "bench._faults_load", "bench._faults_hostile")


def _format(value: float) -> str:
    if isinstance(value, bool):
        return str(int(value))
    if isinstance(value, int) or (math.isfinite(value) and float(value).is_integer()):
        return str(int(value))
    return f"{value:.3f}"


def _parts() -> list[ModuleType]:
    """The part modules present (a missing one is skipped; one that fails to import is an error)."""
    found = []
    for name in PARTS:
        try:
            found.append(importlib.import_module(name))
        except ModuleNotFoundError as exc:
            if exc.name != name:
                raise
            print(f"# {name} not present: skipped", file=sys.stderr)
    return found


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--readings", type=int, default=100_000, help="kill: readings streamed")
    parser.add_argument("--outage-s", type=float, default=30.0, help="broker outage, seconds")
    parser.add_argument("--store-outage-s", type=float, default=60.0, help="store outage, seconds")
    parser.add_argument("--disk-full-s", type=float, default=10.0, help="disk full, seconds")
    parser.add_argument("--rate", type=float, default=1000.0, help="msgs/s during store faults")
    parser.add_argument(
        "--only", choices=["process", "load", "hostile"], action="append", help="run only these"
    )
    parts = _parts()
    for module in parts:  # a part may add options of its own: add_arguments(parser)
        add = getattr(module, "add_arguments", None)
        if add is not None:
            add(parser)
    args = parser.parse_args()
    failed = []
    for module in parts:
        name = module.__name__
        if args.only and name.rsplit("_", 1)[-1] not in args.only:
            continue
        t0 = time.monotonic()
        try:
            figures = module.run(args)
        except Exception as exc:  # one part failing must not hide the others' figures
            print(f"# {name} failed: {exc!r}", file=sys.stderr)
            failed.append(name)
            continue
        for key, value in figures.items():
            print(f"{key}={_format(value)}", flush=True)
        print(f"# {name}: {time.monotonic() - t0:.0f} s", file=sys.stderr)
    if failed:
        raise SystemExit(f"failed: {', '.join(failed)}")


if __name__ == "__main__":
    main()
