"""Which rule-state checkpoints an ingest worker starts from.

A worker continues from its own slot's checkpoint (``rule-state-w1of4.npz``; ``rule-state.npz`` for
the only worker). When it has none and the deployment ran another number of workers before (one
worker grown to four, four shrunk to two), the districts it owns now were watched by the old
workers: it then starts from every checkpoint of the most recent other layout and takes its share
of each (`alerts.engine.RuleEngine.restore_many`), so pending ``for`` windows, counters, rings and
active conditions move with their districts. The checkpoints must be on a volume every worker
reads (``rules.state_file`` on a shared path), as for a standby taking over a dead slot.
"""

from __future__ import annotations

import logging
import re
from collections import defaultdict
from pathlib import Path

from alerts.statefile import StateFileError, read_header
from devices.partitions import Slot

logger = logging.getLogger(__name__)

_SLOT_SUFFIX = re.compile(r"-w\d+of\d+$")


def base_path(own: Path, slot: Slot | None) -> Path:
    """The only worker's file name, from a slot's (``rule-state-w1of4.npz`` -> ``rule-state.npz``)."""
    if slot is None or slot.alone:
        return own
    return own.with_name(_SLOT_SUFFIX.sub("", own.stem) + own.suffix)


def read_layout(path: Path) -> tuple[tuple[int, int], int] | None:
    """A checkpoint's layout (workers, partitions) and when it was saved; None if unreadable."""
    try:
        header = read_header(path.read_bytes())
        slot = header.get("slot")
        layout = (int(slot[1]), int(slot[2])) if slot else (1, 0)
        return layout, int(header["saved_ms"])
    except (OSError, StateFileError, KeyError, TypeError, IndexError, ValueError) as exc:
        logger.warning("rule state checkpoint %s is unreadable (%s): not used", path, exc)
        return None


def checkpoint_sources(own: Path, slot: Slot | None) -> list[Path]:
    """The checkpoints to start from: ``own`` if it exists, else those of the newest other layout.

    Args:
        own: this slot's checkpoint path.
        slot: this worker's slot (None: the only worker).

    Returns:
        ``[own]``; or every checkpoint of the most recently saved layout other than this one (one
        worker's file, or all the files of N workers); or nothing (a fresh start).
    """
    mine = (slot.workers, slot.partitions) if slot is not None and not slot.alone else (1, 0)
    if own.exists():
        found = read_layout(own)
        if found is None or found[0] == mine:
            return [own]  # unreadable: the caller keeps it aside and starts afresh
    base = base_path(own, slot)
    candidates = [base, *sorted(base.parent.glob(f"{base.stem}-w*of*{base.suffix}"))]
    layouts: dict[tuple[int, int], list[tuple[int, Path]]] = defaultdict(list)
    for path in candidates:
        if not path.is_file() or (path != base and not _SLOT_SUFFIX.search(path.stem)):
            continue
        found = read_layout(path)
        if found is not None and found[0] != mine:
            layouts[found[0]].append((found[1], path))
    if not layouts:
        return []
    newest = max(layouts.values(), key=lambda files: max(saved for saved, _ in files))
    return [path for _, path in sorted(newest, key=lambda f: f[1])]
