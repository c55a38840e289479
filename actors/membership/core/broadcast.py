"""Transmit-limited broadcast queue for piggybacked gossip (memberlist `queue.go`).

Theory of operation: membership news is spread by piggybacking small items
on messages that are sent anyway (pings, acks, gossip rounds). Each item is
sent a bounded number of times, `retransmit_mult * ceil(log10(n + 1))`,
which SWIM shows reaches every member with high probability.

Invariants:

* at most one item per key (a member id): queuing newer news about a member
  replaces the older item and resets its transmit count, so stale news is
  never sent after fresher news was learned;
* `take` prefers the items sent the fewest times, newest first among equals,
  so fresh news overtakes news that has already travelled;
* the items `take` returns fit in the byte budget (msgpack sizes); an item
  too big for the remaining budget is skipped, not truncated;
* an item leaves the queue once it has been sent `limit` times.
"""

from __future__ import annotations

import heapq
import math
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

import msgpack

# Bytes msgpack spends on a list header around piggybacked items (worst case, array32).
LIST_OVERHEAD = 5
MAX_SKIPS = 64  # items too big for what is left of a budget, looked at before giving up


def retransmit_limit(mult: int, n: int) -> int:
    """How many times an item is sent: `mult * ceil(log10(n + 1))`, at least 1."""
    return max(1, mult * math.ceil(math.log10(max(0, n) + 1)))


def packed_size(item: Mapping[str, Any]) -> int:
    """The msgpack size of `item` in bytes."""
    return len(msgpack.packb(dict(item), use_bin_type=True))


@dataclass
class _Queued:
    item: Mapping[str, Any]
    size: int
    transmits: int
    order: int  # insertion counter: larger is newer


class BroadcastQueue:
    """Items keyed by subject; newest news per subject; fewest-transmitted first."""

    def __init__(self) -> None:
        self._items: dict[str, _Queued] = {}
        self._counter = 0
        self._min_size = 1 << 30  # smallest item ever queued: a lower bound for any held
        self._heap: list[tuple[int, int, str]] = []  # (transmits, -order, key), some stale

    def __len__(self) -> int:
        return len(self._items)

    def __contains__(self, key: object) -> bool:
        return key in self._items

    def queue(self, key: str, item: Mapping[str, Any]) -> None:
        """Queue `item` about `key`, replacing (invalidating) any older item about it."""
        self._counter += 1
        size = packed_size(item)
        self._min_size = min(self._min_size, size)
        self._items[key] = _Queued(dict(item), size, 0, self._counter)
        heapq.heappush(self._heap, (0, -self._counter, key))

    def discard(self, key: str) -> None:
        """Forget the item about `key`, if any."""
        self._items.pop(key, None)

    def peek(self, key: str) -> Mapping[str, Any] | None:
        """The queued item about `key`, without counting a transmit."""
        queued = self._items.get(key)
        return None if queued is None else queued.item

    def take(self, budget_bytes: int, limit: int) -> list[Mapping[str, Any]]:
        """Items to piggyback on one message, counting one transmit for each.

        Args:
            budget_bytes: the byte budget for the items (list header included).
            limit: transmits after which an item is dropped.

        Returns:
            Items in priority order; their total packed size fits the budget.
        """
        remaining = budget_bytes - LIST_OVERHEAD
        chosen: list[tuple[str, _Queued]] = []
        skipped: list[tuple[int, int, str]] = []
        # Popped in rank order from a heap with lazy deletion, so a take costs what it
        # looks at, not the whole queue (thousands of items after a mass join).
        while self._heap and remaining >= self._min_size and len(skipped) < MAX_SKIPS:
            rank = heapq.heappop(self._heap)
            transmits, neg_order, key = rank
            queued = self._items.get(key)
            if queued is None or queued.transmits != transmits or queued.order != -neg_order:
                continue  # replaced, discarded or already re-ranked
            if queued.size <= remaining:
                chosen.append((key, queued))
                remaining -= queued.size
            else:
                skipped.append(rank)
        for rank in skipped:
            heapq.heappush(self._heap, rank)
        for key, queued in chosen:
            queued.transmits += 1
            if queued.transmits >= limit:
                del self._items[key]
            else:
                heapq.heappush(self._heap, (queued.transmits, -queued.order, key))
        if len(self._heap) > 2 * len(self._items) + MAX_SKIPS:
            self._heap = [(q.transmits, -q.order, k) for k, q in self._items.items()]
            heapq.heapify(self._heap)
        return [queued.item for _, queued in chosen]
