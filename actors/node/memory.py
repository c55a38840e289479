"""Hand freed heap back to the kernel after a burst; keep large tables out of the
cyclic collector's walks.

glibc keeps memory a process has freed, in every arena that allocated it
(libzmq's I/O thread has its own), for reuse. After a flood of large frames
an idle node would go on holding its peak for the rest of its life, and
memory limits (cgroups) count it. `malloc_trim(0)` returns the free pages
of every arena; it costs well under a millisecond on an idle heap, so each
process calls it on a slow timer. Elsewhere than glibc it does nothing.
"""

from __future__ import annotations

import ctypes
import gc
import time
from collections.abc import Callable
from typing import Any

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


# A full collection slower than this is walking a large heap that nothing else needs
# it to walk (a small actor's takes well under a millisecond).
SLOW_FULL_COLLECTION_S = 0.05


class Freezer:
    """Freeze what survives a slow full collection (`gc.freeze()`), at the loop's next turn.

    A full (generation 2) collection walks every object the cyclic collector
    tracks. An anti-entropy actor holding 1M states spent 0.3-1.3 s in each, every
    few seconds while writes arrived; in one benchmark run, three such actors ran
    142 full collections and none freed anything. States hold no reference
    cycles, and reference counting frees them. Right after a full collection
    every survivor is reachable, so freezing them then loses nothing, and later
    collections walk only what came after.
    A frozen object is still freed when its last reference goes. The cost: one
    that later becomes part of an unreachable cycle is never reclaimed.
    """

    def __init__(self, slow_s: float = SLOW_FULL_COLLECTION_S,
                 clock: Callable[[], float] = time.perf_counter) -> None:
        self.slow_s, self.clock = slow_s, clock
        self.due = False
        self.freezes = 0
        self._started = 0.0
        gc.callbacks.append(self._observe)

    def _observe(self, phase: str, info: dict[str, Any]) -> None:
        if info["generation"] != 2:
            return
        if phase == "start":
            self._started = self.clock()
        elif self.clock() - self._started > self.slow_s:
            self.due = True  # not from inside the collection: at the next tick

    def tick(self) -> bool:
        """Freeze if a slow full collection ran since the last tick; True if it froze."""
        if not self.due:
            return False
        self.due = False
        gc.freeze()
        self.freezes += 1
        return True

    def close(self) -> None:
        gc.callbacks.remove(self._observe)
