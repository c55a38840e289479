"""A complete provider written from scratch: sticky sessions (client -> backend).

This is the worked example of docs/providers.md, and the test suite runs it
(tests/integration/test_provider_faults.py and tests/unit/test_provider_contract.py).
It uses nothing of the library but the records and the clock, to show the
whole contract; `examples/my_provider.py` shows the shorter way, on the
library's `Store`.

Run it in a node::

    [[providers]]
    type = "sticky"
    module = "examples.sticky:StickyProvider"   # importable by the node
    options = { max_entries = 100000 }

and use it from a shell::

    lbcluster call -c node.toml provider.sticky.put '{"key": "client-1", "value": "web2"}'
    lbcluster call -c node.toml provider.sticky.get '{"key": "client-1"}'
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from transport.protocol import (
    ApplyResult,
    LamportClock,
    SyncableState,
    make_syncable_state,
    newer,
    state_key,
)

OPTIONS = {"type", "max_entries"}


class StickyProvider:
    """client id -> backend name; the newest write wins on every node.

    Args:
        node_id: this node's id (the source of its writes).
        clock: the Lamport clock to version writes with; the host keeps it
            above every version this node has seen.
        options: the ``options`` table of ``[[providers]]`` (or of `attach`).
    """

    def __init__(self, node_id: str, clock: LamportClock,
                 options: Mapping[str, Any] | None = None) -> None:
        opts = dict(options or {})
        self.validate_options(opts)
        self.node_id = node_id
        self.clock = clock
        self.state_type = str(opts.get("type", "sticky"))
        self.max_entries = int(opts.get("max_entries", 100_000))
        self.entries: dict[str, SyncableState] = {}  # tombstones included (value None)
        self.changed: dict[tuple[str, str], SyncableState] = {}

    @staticmethod
    def validate_options(options: Mapping[str, Any]) -> None:
        """Called when the node loads its config: raise ValueError for a bad option."""
        unknown = sorted(set(options) - OPTIONS)
        if unknown:
            raise ValueError(f"unknown option {unknown[0]} (known: {', '.join(sorted(OPTIONS))})")
        limit = options.get("max_entries", 1)
        if isinstance(limit, bool) or not isinstance(limit, int) or limit < 1:
            raise ValueError("max_entries must be a positive integer")

    # -- the StateProvider contract ----------------------------------------------------
    def provider_type(self) -> str:
        return self.state_type

    def get_sync_state(self) -> list[SyncableState]:
        return list(self.entries.values())

    def get_state_digest(self) -> dict[tuple[str, str], int]:
        return {state_key(s): s.version for s in self.entries.values()}

    def apply_remote_state(self, states: list[SyncableState]) -> ApplyResult:
        result: ApplyResult = {"applied": 0, "conflicts": 0, "rejected": 0}
        for state in states:
            if state.state_type != self.state_type or not _backend_ok(state.value):
                result["rejected"] += 1
                continue
            held = self.entries.get(state.key)
            if held is not None and held.version == state.version \
                    and held.source_node != state.source_node:
                result["conflicts"] += 1  # resolved by `newer` the same way everywhere
            if held is None or newer(state, held):
                self._keep(state)
                result["applied"] += 1
            elif held.version != state.version or held.source_node == state.source_node:
                result["rejected"] += 1  # older than what we hold, or a duplicate
        return result

    def on_node_failure(self, node_id: str) -> None:
        """Sessions belong to clients, not nodes: nothing to hand over."""

    def drain_changes(self) -> list[SyncableState]:
        """What changed since the last call; the host journals and sends exactly these."""
        changes, self.changed = list(self.changed.values()), {}
        return changes

    # -- commands: control op "provider.<type>.<name>" reaches cmd_<name> ----------------
    def cmd_put(self, args: Mapping[str, Any], now: float) -> dict[str, Any]:
        key, backend = args["key"], args["value"]
        if not isinstance(key, str) or not key or not _backend_ok(backend):
            raise ValueError("put needs a non-empty string key and a string value")
        if key not in self.entries and self._live() >= self.max_entries:
            raise ValueError(f"the table is full ({self.max_entries} entries)")
        state = make_syncable_state(self.state_type, key, backend, self.clock.next(),
                                    self.node_id)
        self._keep(state)
        return {"key": key, "version": state.version}

    def cmd_get(self, args: Mapping[str, Any], now: float) -> dict[str, Any]:
        held = self.entries.get(str(args["key"]))
        value = None if held is None else held.value
        return {"found": value is not None, "value": value}

    def cmd_del(self, args: Mapping[str, Any], now: float) -> dict[str, Any]:
        key = str(args["key"])
        if key not in self.entries:
            return {"deleted": False}
        self._keep(make_syncable_state(self.state_type, key, None, self.clock.next(),
                                       self.node_id))  # a tombstone: stale copies lose to it
        return {"deleted": True}

    def _keep(self, state: SyncableState) -> None:
        self.entries[state.key] = state
        self.changed[state_key(state)] = state

    def _live(self) -> int:
        return sum(1 for s in self.entries.values() if s.value is not None)


def _backend_ok(value: Any) -> bool:
    return value is None or (isinstance(value, str) and 0 < len(value) <= 256)
