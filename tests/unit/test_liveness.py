"""Liveness stamps written by a forked process are read by its parent."""

from __future__ import annotations

import os
import time

from actors.liveness import Stamps


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
