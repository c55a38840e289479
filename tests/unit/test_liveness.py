"""Liveness stamps written by a forked process are read by its parent."""

from __future__ import annotations

import os
import time

from actors.node.liveness import (
    BEAT_SLACK,
    MAX_ACTOR_BEAT_S,
    MAX_BEAT_S,
    WEDGED_TIMEOUTS,
    Stamps,
    actor_beat_interval,
    beat_interval,
    liveness_verdict,
    wake_at,
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


def test_an_actors_longest_beat_gap_leaves_room_for_a_late_wake_up() -> None:
    assert actor_beat_interval(5.0) == MAX_ACTOR_BEAT_S == 2.0
    assert actor_beat_interval(60.0) == 2.0
    for timeout in (0.2, 0.8, 1.0, 3.0, 5.0, 7.5, 60.0):
        longest_gap = actor_beat_interval(timeout) * (1 + BEAT_SLACK)
        assert timeout - longest_gap >= min(2.5, timeout * 3 / 4) - 1e-9


def test_a_beat_near_the_actors_own_deadline_shares_its_wake_up() -> None:
    slack = 0.5
    assert wake_at(None, 10.0, slack) == 10.0
    assert wake_at(9.0, 10.0, slack) == 9.0  # the beat runs early there if within slack
    assert wake_at(10.3, 10.0, slack) == 10.3  # the beat waits for the actor's deadline
    assert wake_at(10.6, 10.0, slack) == 10.0  # too late: the beat wakes the loop itself


def test_supervisor_checks_come_four_per_timeout_and_at_most_once_a_second() -> None:
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
