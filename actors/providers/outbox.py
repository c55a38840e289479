"""A provider's local writes on their way to the anti-entropy actor.

The pipe between them is bounded; a write that does not fit would otherwise
wait for the periodic reconcile before any other node could get it
(docs/design-notes.md). The outbox keeps such writes (the latest state per
key: anti-entropy wants nothing older) and hands them over at the next chance.
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
