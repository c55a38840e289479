"""The transmit-limited broadcast queue."""

from __future__ import annotations

import pytest

from actors.membership.core.broadcast import (
    LIST_OVERHEAD,
    BroadcastQueue,
    packed_size,
    retransmit_limit,
)


@pytest.mark.parametrize(("mult", "n", "limit"), [
    (4, 1, 4), (4, 9, 4), (4, 10, 8), (4, 99, 8), (4, 100, 12), (4, 1000, 16), (4, 10_000, 20),
    (2, 3, 2), (4, 0, 1),
])
def test_the_retransmit_limit_is_mult_times_ceil_log10_n_plus_one(
    mult: int, n: int, limit: int
) -> None:
    assert retransmit_limit(mult, n) == limit


def test_an_item_is_sent_limit_times_then_dropped() -> None:
    q = BroadcastQueue()
    q.queue("a", {"x": 1})
    assert [len(q.take(1000, 3)) for _ in range(4)] == [1, 1, 1, 0]
    assert len(q) == 0


def test_newer_news_about_the_same_key_replaces_the_older_and_resets_its_count() -> None:
    q = BroadcastQueue()
    q.queue("a", {"v": 1})
    q.take(1000, 3)
    q.queue("a", {"v": 2})
    assert [q.take(1000, 3) for _ in range(3)] == [[{"v": 2}]] * 3
    assert q.take(1000, 3) == []


def test_the_fewest_transmitted_then_newest_items_go_first() -> None:
    q = BroadcastQueue()
    q.queue("old", {"k": "old"})
    q.take(1000, 10)
    q.queue("mid", {"k": "mid"})
    q.queue("new", {"k": "new"})
    budget = LIST_OVERHEAD + packed_size({"k": "new"})
    order = [q.take(budget, 10)[0]["k"] for _ in range(5)]
    assert order == ["new", "mid", "new", "mid", "old"]


def test_taken_items_fit_the_byte_budget_and_a_big_item_does_not_block_small_ones() -> None:
    q = BroadcastQueue()
    q.queue("big", {"blob": "x" * 500})
    q.queue("small", {"s": 1})
    q.queue("small2", {"s": 2})
    budget = 100
    taken = q.take(budget, 5)
    assert taken == [{"s": 2}, {"s": 1}]
    assert LIST_OVERHEAD + sum(packed_size(t) for t in taken) <= budget
    assert q.take(1000, 5)[0] == {"blob": "x" * 500}  # its turn: fewest transmits


def test_discard_and_peek() -> None:
    q = BroadcastQueue()
    q.queue("a", {"v": 1})
    assert "a" in q and q.peek("a") == {"v": 1}
    q.discard("a")
    assert "a" not in q and q.peek("a") is None
