"""A handler's runner: bounded queue, one command at a time, killed at its timeout."""

from __future__ import annotations

import sys
import time
from collections import Counter
from types import SimpleNamespace

from actors import logs
from actors.node.config import HandlerSpec
from actors.node.handlers import QUEUE_MAX, Runner


def fake_actor() -> SimpleNamespace:
    return SimpleNamespace(counters=Counter(), log=logs.get(), env=SimpleNamespace(node_id="a"),
                           watch=lambda fd, handler: None, unwatch=lambda fd: None,
                           step_all=lambda now: None)


def test_a_full_queue_counts_what_it_drops():
    actor = fake_actor()
    runner = Runner(0, HandlerSpec(events=("node.",), command=("x",)), actor)
    for seq in range(QUEUE_MAX + 3):
        runner.offer({"type": "node.joined", "seq": seq})
    assert len(runner.queue) == QUEUE_MAX and actor.counters["handler0.dropped"] == 3
    assert runner.queue[0]["seq"] == 0  # the oldest are kept, in order


def test_a_command_past_its_timeout_is_killed_and_the_next_one_runs():
    actor = fake_actor()
    sleeper = (sys.executable, "-c", "import time; time.sleep(60)")
    runner = Runner(0, HandlerSpec(events=("x",), command=sleeper, timeout_s=0.2), actor)
    runner.offer({"type": "x", "seq": 1})
    runner.offer({"type": "x", "seq": 2})
    now = time.monotonic()
    runner.step(now)
    first = runner.proc
    assert first is not None and len(runner.queue) == 1  # one at a time
    runner.step(now + 0.5)
    assert actor.counters["handler0.timed_out"] == 1
    first.wait(10)
    runner.step(now + 0.6)
    assert runner.proc is not None and runner.proc is not first and not runner.queue
    runner.stop()
    runner.proc.wait(10)
    assert actor.counters["handler0.started"] == 2 and actor.counters["handler0.failed"] == 0


def test_a_command_that_cannot_start_is_counted_as_failed():
    actor = fake_actor()
    runner = Runner(0, HandlerSpec(events=("x",), command=("/nonexistent/cmd",)), actor)
    runner.offer({"type": "x"})
    runner.step(time.monotonic())
    assert runner.proc is None and actor.counters["handler0.failed"] == 1
