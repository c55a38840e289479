"""What we sent each peer lately, so anti-entropy does not send it again while the
first copy may still be on its way.

Why: against a busy peer, states still queued there look missing to the next
repair round, and resending them feeds the backlog that delays them
(docs/design-notes.md). A (key, version) sent to a peer within `hold_s` is
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
