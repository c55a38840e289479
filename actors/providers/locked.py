"""A `TableProvider` that other threads may call: the base of `rate` and `stick_table`.

An LB program hosts these providers in its own process (the SDK's `attach`)
and calls their fast-path methods (`add`, `total`, `put`, `lookup`) from its
request threads while the host thread applies remote states, drains changes
and ticks. One `threading.Lock` per provider serialises all of it: every
public method takes it for a few dictionary operations and never calls out
while holding it (the wake-up callback runs after release).

Fast-path writes only mark a key dirty; the host thread writes the changed
states at its next `tick` (or `drain_changes`). A host that sleeps until
`next_deadline()` registers `set_wakeup(fn)`: `fn` is called, from the
writer's thread and without the lock, when a write finds the provider clean,
so the sleeping host can look at `next_deadline()` again.
"""

from __future__ import annotations

import threading
from collections.abc import Callable, Iterable

from actors.providers.base import TableProvider
from transport.protocol import ApplyResult, SyncableState


class LockedTableProvider(TableProvider):
    """StateProvider methods and `drain_changes` under `_lock` (see the module docstring)."""

    def __init__(self, now_fn: Callable[[], float]) -> None:
        self._now_fn = now_fn  # monotonic: `apply_remote_state` has no `now` argument
        self._lock = threading.Lock()
        # Called when a fast-path write makes a clean provider dirty (None: no host asked).
        self._wakeup: Callable[[], None] | None = None

    def set_wakeup(self, fn: Callable[[], None] | None) -> None:
        """Register the host's wake-up (thread-safe; `fn` must not block)."""
        self._wakeup = fn

    def _wake(self) -> None:
        fn = self._wakeup
        if fn is not None:
            fn()

    def apply_remote_state(self, states: list[SyncableState]) -> ApplyResult:
        """Apply what `_admit` lets through by version; `_index` each state that changed."""
        now = self._now_fn()
        with self._lock:
            admitted = self._admit(states)
            result, changed = self._table.apply(admitted, now)
            result["rejected"] += len(states) - len(admitted)
            for state in changed:
                self._index(state)
            return result

    def _admit(self, states: list[SyncableState]) -> list[SyncableState]:
        """Hook, under the lock: the states to offer the table (the rest count as rejected)."""
        return states

    def _index(self, state: SyncableState) -> None:
        """Hook, under the lock: note a state the table accepted from a remote node."""

    def get_sync_state(self) -> list[SyncableState]:
        with self._lock:
            return self._table.states()

    def get_state_digest(self) -> dict[tuple[str, str], int]:
        with self._lock:
            return self._table.digest()

    def get_state_digest_in(self, buckets: Iterable[int]) -> dict[tuple[str, str], int]:
        with self._lock:
            return self._table.digest_in(buckets)

    def drain_changes(self) -> list[SyncableState]:
        """States written or accepted since the last call, latest per key."""
        with self._lock:
            self._before_drain()
            return self._table.drain()

    def _before_drain(self) -> None:
        """Hook, called under the lock: write what must leave with this drain."""
