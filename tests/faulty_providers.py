"""Providers with ordinary bugs, for the fault-isolation tests (loaded by real nodes)."""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from examples.sticky import StickyProvider
from transport.protocol import ApplyResult, SyncableState

POISON = "poison"


class PoisonSticky(StickyProvider):
    """A sticky table whose receive path has a bug that only one value triggers, and a
    command that always raises: what a new user's provider looks like on day one."""

    def apply_remote_state(self, states: list[SyncableState]) -> ApplyResult:
        if any(s.value == POISON for s in states):
            self.last_client = states.key  # type: ignore[attr-defined]  # a list has no .key
        return super().apply_remote_state(states)

    def cmd_explode(self, args: Mapping[str, Any], now: float) -> dict[str, Any]:
        raise RuntimeError("boom: the backend pool is empty")
