"""What we sent each peer lately, so anti-entropy does not send it again while the
first copy may still be on its way.

Why: a repair session finds what a peer lacks *now*. When the peer is busy, the
states we sent in the last round still sit in its queue, the next round finds
them missing again, and we send them again: every round adds the whole
difference to the backlog that caused it. After a burst of 35,000 keys three
nodes sent each other 7 million states in five minutes this way and fell
behind on everything else. A (key, version) sent to a peer within `hold_s` is
not sent to it again; a lost message is repaired once the hold expires.
"""

from __future__ import annotations

from collections import deque
from collections.abc import Iterable

StateKey = tuple[str, str]


class RecentlySent:
    """Per peer: (key -> version) sent within the last `hold_s` seconds."""

    def __init__(self, hold_s: float) -> None:
        self.hold_s = hold_s
        self._sent: dict[str, dict[StateKey, int]] = {}
        self._order: dict[str, deque[tuple[float, StateKey, int]]] = {}

    def fresh(self, peer: str, key: StateKey, version: int, now: float) -> bool:
        """Whether `key` at `version` was not sent to `peer` within the hold."""
        self._expire(peer, now)
        return self._sent.get(peer, {}).get(key) != version

    def record(self, peer: str, items: Iterable[tuple[StateKey, int]], now: float) -> None:
        sent = self._sent.setdefault(peer, {})
        order = self._order.setdefault(peer, deque())
        for key, version in items:
            sent[key] = version
            order.append((now, key, version))

    def forget_peers(self, keep: Iterable[str]) -> None:
        """Drop what is held for peers not in `keep` (gone from the membership)."""
        kept = set(keep)
        for peer in [p for p in self._sent if p not in kept]:
            del self._sent[peer], self._order[peer]

    def __len__(self) -> int:
        return sum(len(s) for s in self._sent.values())

    def _expire(self, peer: str, now: float) -> None:
        order = self._order.get(peer)
        if not order:
            return
        sent = self._sent[peer]
        while order and now - order[0][0] >= self.hold_s:
            _, key, version = order.popleft()
            if sent.get(key) == version:  # not re-recorded since
                del sent[key]
