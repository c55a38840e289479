"""The token buckets that bound whole-table and digest answers (actors/core/ratelimit.py)."""

from __future__ import annotations

import pytest
from hypothesis import given
from hypothesis import strategies as st

from actors.core.ratelimit import RateLimit

requests = st.lists(st.tuples(st.sampled_from("abcde"), st.floats(0, 0.5)), max_size=300)


@given(requests)
def test_no_asker_and_no_crowd_gets_more_than_burst_plus_refill(reqs: list[tuple[str, float]]):
    limit = RateLimit(rate=2.0, burst=3.0, total_rate=5.0, total_burst=6.0)
    now, granted = 0.0, []
    for key, gap in reqs:
        now += gap
        if limit.allow(key, now):
            granted.append((key, now))
    for key in "abcde":
        times = [t for k, t in granted if k == key]
        for i, start in enumerate(times):
            inside = [t for t in times[i:] if t - start <= 1.0]
            assert len(inside) <= 3 + 2.0 * 1.0 + 1e-9
    for i, (_, start) in enumerate(granted):
        assert sum(1 for _, t in granted[i:] if t - start <= 1.0) <= 6 + 5.0 * 1.0 + 1e-9


def test_a_refused_request_costs_the_asker_nothing():
    limit = RateLimit(rate=1.0, burst=2.0, total_rate=100.0, total_burst=1.0)
    assert limit.allow("a", 0.0)
    assert not limit.allow("a", 0.0)  # the shared bucket is empty, a's is not
    assert limit.allow("a", 1.0)  # a kept its second token; the shared one refilled


def test_an_answer_larger_than_a_burst_drains_the_buckets_instead_of_never_fitting():
    limit = RateLimit(rate=1.0, burst=2.0, total_rate=10.0, total_burst=10.0)
    assert limit.allow("a", 0.0, cost=1.0, shared_cost=50.0)
    assert not limit.allow("b", 0.5, cost=1.0, shared_cost=50.0)
    assert limit.allow("b", 1.0, cost=1.0, shared_cost=50.0)


def test_the_asker_table_is_bounded_and_forgets_the_least_recent():
    limit = RateLimit(rate=1.0, burst=1.0, total_rate=1e9, total_burst=1e9, max_keys=3)
    for key in "abcd":
        assert limit.allow(key, 0.0)
    assert len(limit._buckets) == 3
    assert limit.allow("a", 0.0)  # evicted, so a fresh bucket
    assert not limit.allow("d", 0.0)


def test_bad_limits_are_refused():
    with pytest.raises(ValueError):
        RateLimit(rate=0.0, burst=1.0, total_rate=1.0, total_burst=1.0)
