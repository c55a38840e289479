"""The restart policy is a pure function of restart history and now."""

from __future__ import annotations

import pytest

from actors.node.restart import GiveUp, Restart, RestartPolicy

POLICY = RestartPolicy(max_restarts=5, window_s=60.0)


@pytest.mark.parametrize(("history", "now", "verdict"), [
    ((), 100.0, Restart(0.0)),
    ((90.0,), 100.0, Restart(0.0)),  # it ran 10 s: restart at once
    ((99.5,), 100.0, Restart(0.05)),  # died within quick_s of its restart
    ((99.0, 99.5), 100.0, Restart(0.1)),
    ((98.0, 98.6, 99.2, 99.8), 100.0, Restart(0.4)),
    ((90.0, 99.2, 99.8), 100.0, Restart(0.1)),  # the quick streak starts after 90.0
    ((95.0, 96.0, 97.0, 98.0, 99.0), 100.0, GiveUp(5)),
    ((10.0, 20.0, 30.0, 39.0, 39.5), 100.0, Restart(0.0)),  # all outside the window
    ((30.0, 41.0, 50.0, 60.0, 99.9), 100.0, Restart(0.05)),  # 30.0 has aged out
])
def test_restart_policy_table(history, now, verdict):
    assert POLICY.decide(history, now) == verdict


def test_backoff_never_exceeds_its_cap():
    policy = RestartPolicy(max_restarts=100, window_s=1000.0, backoff_max_s=2.0)
    history = tuple(i * 0.5 for i in range(50))
    assert policy.decide(history, 25.0) == Restart(2.0)


def test_zero_max_restarts_gives_up_at_the_first_death():
    assert RestartPolicy(max_restarts=0, window_s=60).decide((), 1.0) == GiveUp(0)
