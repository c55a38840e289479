"""Liveness stamps written by a forked process are read by its parent."""

from __future__ import annotations

import os
import time

from actors.node.liveness import (
    MAX_BEAT_S,
    WEDGED_TIMEOUTS,
    Stamps,
    beat_interval,
    liveness_verdict,
)


def test_a_stamp_written_after_fork_is_seen_by_the_parent() -> None:
    stamps = Stamps(["membership", "anti_entropy"])
    assert stamps.read("membership") == 0.0
    mark = time.monotonic()
    pid = os.fork()
    if pid == 0:  # the child: an actor's loop turn
        stamps.stamp("anti_entropy", mark + 1.5)
        os._exit(0)
    _, status = os.waitpid(pid, 0)
    assert os.waitstatus_to_exitcode(status) == 0
    assert stamps.read("anti_entropy") == mark + 1.5
    assert stamps.read("membership") == 0.0


def test_verdicts() -> None:
    t = 5.0
    assert liveness_verdict(100.0, 99.5, 99.9, t) is None
    # a flood delays heartbeats, the loop still turns: not yet anything
    assert liveness_verdict(100.0, 100.0 - 2 * t, 99.9, t) is None
    # the loop stopped: neither sign for a timeout
    assert liveness_verdict(100.0, 100.0 - t - 0.1, 100.0 - t - 0.1, t) == "hung"
    # the loop turns but nothing it sends arrives
    assert liveness_verdict(100.0, 100.0 - WEDGED_TIMEOUTS * t - 0.1, 99.9, t) == "wedged"
    # before the first stamp (0.0) a recent heartbeat is enough
    assert liveness_verdict(100.0, 99.0, 0.0, t) is None


def test_idle_beats_come_four_per_timeout_and_at_most_once_a_second() -> None:
    assert beat_interval(1.0) == 0.25
    assert beat_interval(5.0) == MAX_BEAT_S == 1.0
    assert beat_interval(60.0) == 1.0


def test_an_actor_still_starting_gets_longer_before_it_counts_as_hung() -> None:
    from actors.node.liveness import STARTUP_TIMEOUTS, liveness_timeout

    assert liveness_timeout(True, 5.0) == 5.0
    assert liveness_timeout(False, 5.0) == 5.0 * STARTUP_TIMEOUTS
    starting = liveness_timeout(False, 5.0)
    assert liveness_verdict(20.0, 0.0, 0.0, starting) is None  # restoring a large mirror
    assert liveness_verdict(20.0, 0.0, 0.0, liveness_timeout(True, 5.0)) == "hung"
