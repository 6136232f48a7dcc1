"""Words for duty officers: numbers, durations and metric names as they appear in event summaries."""

from __future__ import annotations

import math


def number(value: float) -> str:
    """A reading as people write it: ``5.32``, ``0.3``, ``120`` (at most three decimals)."""
    if not math.isfinite(value):
        return str(value)
    text = f"{value:.3f}".rstrip("0").rstrip(".")
    return "0" if text in ("", "-0") else text


def quantity(value: float, unit: str) -> str:
    """``5.32 m``, ``12 %``; no unit for unitless states."""
    if not unit or unit == "state":
        return number(value)
    return f"{number(value)} {unit}"


def duration(seconds: float) -> str:
    """``45 s``, ``17 min``, ``3 h``, ``1 h 20 min``, ``2 d 4 h``."""
    s = max(0, round(seconds))
    if s < 60:
        return f"{s} s"
    minutes = s // 60
    if minutes < 60:
        return f"{minutes} min"
    hours, minutes = divmod(minutes, 60)
    if hours < 24:
        return f"{hours} h {minutes} min" if minutes else f"{hours} h"
    days, hours = divmod(hours, 24)
    return f"{days} d {hours} h" if hours else f"{days} d"


def metric_label(metric: str) -> str:
    """``water_level`` -> ``water level``."""
    return metric.replace("_", " ")
