"""CPU and memory of a process, for `lbcluster status` (psutil)."""

from __future__ import annotations

from typing import Any

import psutil

_UNKNOWN: dict[str, Any] = {"cpu_percent": None, "rss_bytes": None, "pss_bytes": None}


def process_of(pid: int) -> psutil.Process | None:
    try:
        return psutil.Process(pid)
    except psutil.Error:
        return None


def usage_of(proc: psutil.Process | None) -> dict[str, Any]:
    """CPU % since the previous call on the same Process object, RSS and PSS.
    PSS shares the pages the actors inherit from the zygote fairly among them."""
    if proc is None:
        return dict(_UNKNOWN)
    try:
        with proc.oneshot():
            mem = proc.memory_full_info()
            return {"cpu_percent": proc.cpu_percent(None), "rss_bytes": mem.rss,
                    "pss_bytes": getattr(mem, "pss", None)}
    except psutil.Error:
        return dict(_UNKNOWN)
