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
from collections.abc import Callable

from actors.providers.base import TableProvider
from transport.protocol import SyncableState


class LockedTableProvider(TableProvider):
    """StateProvider queries and `drain_changes` under `_lock` (see the module docstring)."""

    def __init__(self) -> None:
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

    def get_sync_state(self) -> list[SyncableState]:
        with self._lock:
            return self._table.states()

    def get_state_digest(self) -> dict[tuple[str, str], int]:
        with self._lock:
            return self._table.digest()

    def drain_changes(self) -> list[SyncableState]:
        """States written or accepted since the last call, latest per key."""
        with self._lock:
            self._before_drain()
            return self._table.drain()

    def _before_drain(self) -> None:
        """Hook, called under the lock: write what must leave with this drain."""
