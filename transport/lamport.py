"""The Lamport clock that stamps state versions; `transport.protocol` re-exports it.

Theory of operation (Lamport 1978; serf `lamport.go`): a local write ticks
the clock and takes the new time as its version; a received version is
witnessed, time = max(time, received), so the next local version is greater
than anything this node has seen. The time never goes backwards except
through an explicit `reset`, and stays below 2**63 (the protocol's version
range). The module-level default clock and its functions (`next_version`
and friends) stay in `transport.protocol`, as in the seed API.
"""

from __future__ import annotations

import threading

from transport.errors import ProtocolError
from transport.validate import MAX_U63, check_u63


class LamportClock:
    """A thread-safe Lamport clock.

    Rule: `next()` ticks and returns the new time; `update(v)` witnesses a
    received version, time = max(time, v), so the next local version is > v.
    The time never goes backwards except through an explicit `reset`.
    """

    def __init__(self, start: int = 0) -> None:
        self._time = check_u63(start, "start")
        # Guards _time: providers may stamp versions from several threads.
        self._lock = threading.Lock()

    def current(self) -> int:
        """The last issued or witnessed time, without ticking."""
        with self._lock:
            return self._time

    def next(self) -> int:
        """Tick and return the new time. Raises: ProtocolError at 2**63 - 1."""
        with self._lock:
            if self._time >= MAX_U63:
                raise ProtocolError("clock_exhausted", "version")
            self._time += 1
            return self._time

    def update(self, received: int) -> int:
        """Witness a received version; return the (possibly raised) time.

        Raises: ProtocolError if `received` is not an int in [0, 2**63).
        """
        check_u63(received, "received")
        with self._lock:
            if received > self._time:
                self._time = received
            return self._time

    def reset(self, to: int = 0) -> None:
        """Set the time (tests; restoring a persisted high-water mark)."""
        check_u63(to, "to")
        with self._lock:
            self._time = to
