"""CPU and memory of a process, for `lbcluster status` (psutil).

psutil is imported at the first status call, not at startup: only the supervisor
asks, and importing it before the zygote forks would put ~2 MiB into the image
every actor inherits and none uses.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    import psutil

_UNKNOWN: dict[str, Any] = {"cpu_percent": None, "rss_bytes": None, "pss_bytes": None}


def process_of(pid: int) -> psutil.Process | None:
    import psutil

    try:
        return psutil.Process(pid)
    except psutil.Error:
        return None


def usage_of(proc: psutil.Process | None) -> dict[str, Any]:
    """CPU % since the previous call on the same Process object, RSS and PSS.
    PSS shares the pages the actors inherit from the zygote fairly among them."""
    if proc is None:
        return dict(_UNKNOWN)
    import psutil

    try:
        with proc.oneshot():
            mem = proc.memory_full_info()
            return {"cpu_percent": proc.cpu_percent(None), "rss_bytes": mem.rss,
                    "pss_bytes": getattr(mem, "pss", None)}
    except psutil.Error:
        return dict(_UNKNOWN)
