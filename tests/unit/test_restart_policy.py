"""The restart policy is a pure function of restart history and now."""

from __future__ import annotations

import pytest

from actors.node.restart import GiveUp, Restart, RestartBook, RestartPolicy

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


# -- RestartBook: one actor's record, as the supervisor keeps it -----------------------

TIGHT = RestartPolicy(max_restarts=2, window_s=10.0)


def test_an_essential_actor_given_up_schedules_nothing():
    book = RestartBook(retry_s=None)
    assert book.died(TIGHT, 100.0) == Restart(0.0)
    book.respawned(TIGHT, 100.0)
    assert book.died(TIGHT, 105.0) == Restart(0.0)
    book.respawned(TIGHT, 105.0)
    assert book.died(TIGHT, 106.0) == GiveUp(2)
    assert book.given_up and book.restart_at is None and not book.due(1e9)


def test_a_provider_given_up_is_retried_after_retry_s():
    book = RestartBook(retry_s=60.0)
    for t in (100.0, 102.0):
        assert isinstance(book.died(TIGHT, t), Restart)
        book.respawned(TIGHT, t)
    assert book.died(TIGHT, 104.0) == GiveUp(2)
    assert book.given_up and book.restart_at == 164.0
    assert not book.due(163.9) and book.due(164.0)
    book.respawned(TIGHT, 164.0)
    assert not book.given_up and book.retries == 1 and book.restarts == 3


def test_a_retried_actor_that_dies_on_probation_is_given_up_again_at_once():
    book = RestartBook(retry_s=30.0, given_up_at=0.0, restart_at=30.0)
    book.respawned(TIGHT, 30.0)
    assert book.died(TIGHT, 35.0) == GiveUp(1)  # within window_s of the retry
    assert book.restart_at == 65.0


def test_a_retried_actor_that_outlives_its_probation_gets_restarts_again():
    book = RestartBook(retry_s=30.0, given_up_at=0.0, restart_at=30.0)
    book.respawned(TIGHT, 30.0)
    assert book.died(TIGHT, 45.0) == Restart(0.0)
    assert not book.given_up and book.restart_at == 45.0


def test_quick_deaths_back_off_and_the_history_stays_bounded():
    book = RestartBook(retry_s=1.0)
    policy = RestartPolicy(max_restarts=3, window_s=0.5)
    now = 0.0
    for _ in range(50):
        verdict = book.died(policy, now)
        assert isinstance(verdict, Restart)
        now += max(verdict.delay_s, 0.6)
        book.respawned(policy, now)
    assert len(book.history) <= policy.max_restarts and book.restarts == 50
