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

import math
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

import msgpack

# Bytes msgpack spends on a list header around piggybacked items (worst case, array32).
LIST_OVERHEAD = 5


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

    def __len__(self) -> int:
        return len(self._items)

    def __contains__(self, key: object) -> bool:
        return key in self._items

    def queue(self, key: str, item: Mapping[str, Any]) -> None:
        """Queue `item` about `key`, replacing (invalidating) any older item about it."""
        self._counter += 1
        self._items[key] = _Queued(dict(item), packed_size(item), 0, self._counter)

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
        ranked = sorted(self._items.items(), key=lambda kv: (kv[1].transmits, -kv[1].order))
        for key, queued in ranked:
            if queued.size <= remaining:
                chosen.append((key, queued))
                remaining -= queued.size
        for key, queued in chosen:
            queued.transmits += 1
            if queued.transmits >= limit:
                del self._items[key]
        return [queued.item for _, queued in chosen]
