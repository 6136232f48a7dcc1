"""py-spy on the hub at saturation (issue 9 item 3): record while it drains, summarise the top costs.

py-spy samples the hub's Python stacks from outside (no code in the hub), 100 times a second, all
threads, without pausing it (``--nonblocking``); the raw output is collapsed stacks, one line per
distinct stack with its sample count. The summary ranks functions by self time (the frame on top)
and by inclusive time (anywhere on the stack), in per cent of all samples.
"""

from __future__ import annotations

import shutil
import signal
import subprocess
import sys
from collections import Counter
from pathlib import Path


def start(pid: int, raw: Path) -> subprocess.Popen[bytes] | None:
    """Start recording ``pid`` into ``raw``; None when py-spy is not installed."""
    exe = shutil.which("py-spy") or str(Path(sys.executable).with_name("py-spy"))
    if not Path(exe).exists():
        print("# py-spy not found: no profile", file=sys.stderr)
        return None
    return subprocess.Popen(
        [
            *(exe, "record", "-p", str(pid), "-r", "100", "-f", "raw", "-o", str(raw)),
            *("--threads", "--nonblocking", "-d", "600"),
        ],
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )


def stop(proc: subprocess.Popen[bytes]) -> None:
    """Stop recording; py-spy writes its output on SIGINT."""
    proc.send_signal(signal.SIGINT)
    try:
        proc.wait(30)
    except subprocess.TimeoutExpired:
        proc.kill()
        proc.wait()


def _frame(text: str) -> str:
    name, _, rest = text.partition(" (")
    return f"{name} ({rest.split(':')[0]})" if rest else name


def summarise(raw: Path, top: int = 25) -> str:
    """Self and inclusive time per function from py-spy's collapsed stacks."""
    own: Counter[str] = Counter()
    incl: Counter[str] = Counter()
    total = 0
    for line in raw.read_text().splitlines():
        stack, _, count = line.rpartition(" ")
        if not stack or not count.isdigit():
            continue
        n = int(count)
        total += n
        frames = [_frame(f) for f in stack.split(";")[1:]]  # the first is the thread
        if not frames:
            continue
        own[frames[-1]] += n
        for f in set(frames):
            incl[f] += n
    lines = [f"samples: {total} (100 Hz, all threads, idle excluded)", "", "self time:"]
    lines += [f"  {v / total * 100:5.1f}%  {k}" for k, v in own.most_common(top)]
    lines += ["", "inclusive time:"]
    lines += [f"  {v / total * 100:5.1f}%  {k}" for k, v in incl.most_common(top * 2)]
    return "\n".join(lines) + "\n"
