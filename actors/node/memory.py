"""Hand freed heap back to the kernel after a burst.

glibc keeps memory a process has freed, in every arena that allocated it
(libzmq's I/O thread has its own), for reuse. After a flood of large frames
an idle node would go on holding its peak for the rest of its life, and
memory limits (cgroups) count it. `malloc_trim(0)` returns the free pages
of every arena; it costs well under a millisecond on an idle heap, so each
process calls it on a slow timer. Elsewhere than glibc it does nothing.
"""

from __future__ import annotations

import ctypes

from actors.node import libc

TRIM_EVERY_S = 10.0


_TRIM = libc.function("malloc_trim", [ctypes.c_size_t])


class Trimmer:
    """Call `tick(now)` from a loop: trims at most every `every_s` seconds."""

    def __init__(self, every_s: float = TRIM_EVERY_S) -> None:
        self.every_s = every_s
        self.next_at = 0.0
        self.trims = 0

    def tick(self, now: float) -> None:
        if now < self.next_at:
            return
        self.next_at = now + self.every_s
        if _TRIM is not None:
            _TRIM(0)
            self.trims += 1
