"""Liveness stamps: each actor's last loop turn, in memory shared with the supervisor.

Why not the heartbeat messages alone: they share ZeroMQ pipes with everything
else, and under a flood they arrive late enough for a healthy actor to look
hung (docs/design-notes.md). A stamp is a plain store into a page mapped
before the zygote forks (MAP_SHARED, so every actor writes the same page the
supervisor reads): no queue, no I/O thread, nothing to fall behind. The
heartbeat messages still carry counters and status, late or not.

The stamp alone is not enough: a loop can turn while nothing it sends leaves
the process (libzmq's I/O thread blocked). Heartbeat messages missing for
`WEDGED_TIMEOUTS` timeouts while the stamp stays fresh mark such an actor
*wedged*, and it is restarted like a hung one.

Stamps are `time.monotonic()` values (CLOCK_MONOTONIC is one clock for every
process of the machine), one aligned 8-byte slot per actor name.
"""

from __future__ import annotations

import mmap
import struct
from collections.abc import Sequence

__all__ = ["BEAT_SLACK", "WEDGED_TIMEOUTS", "Stamps", "actor_beat_interval", "beat_interval",
           "liveness_verdict", "wake_at"]

_SLOT = struct.Struct("d")
# Heartbeats travel their own pipe, apart from gossip and state traffic, so even a
# flooded node delivers them within seconds; this many timeouts without one is no delay.
WEDGED_TIMEOUTS = 4
# Each beat wakes an idle process: at twice a second, beats and the supervisor's
# checks were half of an idle node's CPU.
MAX_BEAT_S = 1.0


def beat_interval(timeout_s: float) -> float:
    """How often the supervisor checks its actors' stamps: four times per timeout, and
    at most once a second."""
    return min(MAX_BEAT_S, timeout_s / 4)


# An idle actor's loop turns (stamp, heartbeat message) at most every 2 s: beats were
# most of an idle node's wake-ups (an A/B in docs/perf/issue15-fifth.md).
MAX_ACTOR_BEAT_S = 2.0
# A beat may run this fraction of its period early or late, at a wake-up the actor
# has anyway (a probe, a repair round), rather than wake the process on its own.
BEAT_SLACK = 0.25
# However the timeout is set, a stamp is at least this long (or 3/4 of the timeout,
# when that is shorter) from being read as a hang: room for a late wake-up.
LATE_MARGIN_S = 2.5


def actor_beat_interval(timeout_s: float) -> float:
    """How often an idle actor's loop turns. The longest gap between two beats is the
    period plus its slack (`BEAT_SLACK`); it stays `LATE_MARGIN_S`, or 3/4 of the
    timeout when that is less, short of the timeout."""
    margin = min(LATE_MARGIN_S, timeout_s * 3 / 4)
    return min(MAX_ACTOR_BEAT_S, (timeout_s - margin) / (1 + BEAT_SLACK))


def wake_at(due: float | None, beat_at: float, slack_s: float) -> float:
    """When an actor's loop wakes: its own deadline `due`, or the beat. A beat within
    `slack_s` after `due` runs at that wake-up, late, instead of on its own."""
    return due if due is not None and due <= beat_at + slack_s else beat_at


# An actor still in `setup` (restoring a large snapshot, a provider replaying its journal)
# has this many heartbeat timeouts before it counts as hung: killing it there would only
# start the same restore again, and a node whose mirror takes 6 s to load would crash-loop.
STARTUP_TIMEOUTS = 12


def liveness_timeout(ready: bool, heartbeat_timeout_s: float) -> float:
    """How long an actor may be silent: longer while it has not reported ready."""
    return heartbeat_timeout_s if ready else heartbeat_timeout_s * STARTUP_TIMEOUTS


def liveness_verdict(now: float, heartbeat_at: float, stamp_at: float,
                     timeout_s: float) -> str | None:
    """Why an actor must be restarted, or None: "hung" when its loop stopped turning,
    "wedged" when it turns but its heartbeat messages stopped arriving."""
    if now - max(heartbeat_at, stamp_at) > timeout_s:
        return "hung"
    if now - heartbeat_at > WEDGED_TIMEOUTS * timeout_s:
        return "wedged"
    return None


class Stamps:
    """One slot per actor name; create before forking, use in every process."""

    def __init__(self, names: Sequence[str]) -> None:
        self._slots = {name: i * _SLOT.size for i, name in enumerate(names)}
        self._mm = mmap.mmap(-1, max(1, len(names)) * _SLOT.size)  # shared, anonymous

    def stamp(self, name: str, now: float) -> None:
        _SLOT.pack_into(self._mm, self._slots[name], now)

    def read(self, name: str) -> float:
        """The last stamp of `name` (0.0 before its first)."""
        offset = self._slots[name]
        while True:  # a torn read of a concurrent store would differ between reads
            first = _SLOT.unpack_from(self._mm, offset)[0]
            if _SLOT.unpack_from(self._mm, offset)[0] == first:
                return float(first)
