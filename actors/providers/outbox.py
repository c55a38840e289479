"""A provider's local writes on their way to the anti-entropy actor.

The pipe between them is bounded. When anti-entropy falls behind (seen under
load right after the provider compacted its journal: 2,823 writes in one
burst) a write that cannot be queued used to be dropped, left for the
30-second reconcile, so for up to half a minute no other node could get it.
The outbox keeps such writes instead (the latest state per key: anti-entropy
wants nothing older) and hands them over at the next chance.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable

from transport.protocol import SyncableState, state_key

CHUNK = 10_000  # states per hand-over message


class LocalOutbox:
    def __init__(self) -> None:
        self.pending: dict[tuple[str, str], SyncableState] = {}

    def add(self, states: Iterable[SyncableState]) -> None:
        for s in states:
            self.pending[state_key(s)] = s

    def flush(self, send: Callable[[list[SyncableState]], bool]) -> bool:
        """Hand over what waits, oldest first, in chunks; False when `send` refused one
        (it and everything after it stay pending)."""
        while self.pending:
            keys = list(self.pending)[:CHUNK]
            if not send([self.pending[k] for k in keys]):
                return False
            for k in keys:
                del self.pending[k]
        return True
