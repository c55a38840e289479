"""A provider of your own, run by the node: replicated backend weights.

List it in a node's config and the node runs it in its own process,
restarts it, journals its changes and replicates them::

    [[providers]]
    type = "weights"
    module = "examples.my_provider:WeightsProvider"   # importable by the node:
    options = { max_weight = 100 }                      # PYTHONPATH=<repo root>

Then, from any program or shell on that machine::

    lbcluster state -c node.toml --type weights
    python -c 'from actors.sdk import NodeClient; \\
        NodeClient("node.toml").call("provider.weights.set", {"backend": "b1", "weight": 5})'

The same class can also be hosted in your own program with
``actors.sdk.attach(WeightsProvider, "node.toml", options={"type": "backends"})``
(`options.type` names the state type, so that one node may run it and
another program host it under a different name).

It keeps its states in the library's `Store`, which gives it the version
order, tombstones with garbage collection and digests for free.
"""

from __future__ import annotations

import time
from collections.abc import Mapping
from typing import Any

from actors.core.store import Store
from transport.protocol import ApplyResult, LamportClock, SyncableState, is_tombstone, state_key

OPTIONS = {"type", "max_weight", "tombstone_grace_s"}


class WeightsProvider:
    """backend name -> integer weight (0 = drained); the newest write wins."""

    def __init__(self, node_id: str, clock: LamportClock,
                 options: Mapping[str, Any] | None = None) -> None:
        opts = dict(options or {})
        self.validate_options(opts)
        self.node_id = node_id
        self.clock = clock
        self.state_type = str(opts.get("type", "weights"))
        self.max_weight = int(opts.get("max_weight", 1000))
        self.store = Store(float(opts.get("tombstone_grace_s", 3600.0)))
        self._changes: dict[tuple[str, str], SyncableState] = {}

    @staticmethod
    def validate_options(options: Mapping[str, Any]) -> None:
        """Called by the node at startup: a bad option is a config error, not a crash loop."""
        unknown = sorted(set(options) - OPTIONS)
        if unknown:
            raise ValueError(f"unknown option {unknown[0]} (known: {', '.join(sorted(OPTIONS))})")
        if not isinstance(options.get("max_weight", 1), int) or options.get("max_weight", 1) < 1:
            raise ValueError("max_weight must be a positive integer")

    # -- what the application uses ---------------------------------------------------
    def set_weight(self, backend: str, weight: int) -> SyncableState:
        if not isinstance(weight, int) or not 0 <= weight <= self.max_weight:
            raise ValueError(f"weight must be an integer in 0..{self.max_weight}")
        return self._write(backend, weight)

    def remove(self, backend: str) -> SyncableState:
        return self._write(backend, None)  # a tombstone, so a stale copy cannot revive it

    def weight(self, backend: str) -> int | None:
        state = self.store.get(self.state_type, backend)
        return None if state is None else state.value

    def weights(self) -> dict[str, int]:
        return {s.key: s.value for s in self.store.items(self.state_type) if not is_tombstone(s)}

    # -- StateProvider -----------------------------------------------------------------
    def provider_type(self) -> str:
        return self.state_type

    def get_sync_state(self) -> list[SyncableState]:
        return self.store.items(self.state_type)

    def get_state_digest(self) -> dict[tuple[str, str], int]:
        return self.store.digest(self.state_type)

    def apply_remote_state(self, states: list[SyncableState]) -> ApplyResult:
        # Remote values are untrusted: keep only weights this node would accept.
        ok = [s for s in states if s.state_type == self.state_type
              and (s.value is None or (isinstance(s.value, int) and s.value >= 0))]
        for s in ok:
            self.clock.update(s.version)  # Lamport: our next write is newer
        now = time.monotonic()
        self.store.gc(now)
        # No GC-horizon check here: the node's anti-entropy mirror is that gate, and a
        # second one on another schedule would now and then refuse what it accepted.
        result, changed = self.store.apply(ok, now, enforce_horizon=False)
        result["rejected"] += len(states) - len(ok)
        self._changes.update((state_key(s), s) for s in changed)
        return result

    def on_node_failure(self, node_id: str) -> None:
        """Weights belong to backends, not nodes: nothing to hand over."""

    def drain_changes(self) -> list[SyncableState]:
        """What changed since the last call; the host sends and journals these."""
        changes, self._changes = list(self._changes.values()), {}
        return changes

    # -- commands: control op "provider.<type>.<name>" reaches cmd_<name> ----------------
    def cmd_set(self, args: Mapping[str, Any], now: float) -> dict[str, Any]:
        state = self.set_weight(str(args["backend"]), args["weight"])
        return {"backend": state.key, "version": state.version}

    def cmd_get(self, args: Mapping[str, Any], now: float) -> dict[str, Any]:
        return {"backend": args["backend"], "weight": self.weight(str(args["backend"]))}

    def cmd_remove(self, args: Mapping[str, Any], now: float) -> dict[str, Any]:
        return {"backend": args["backend"], "version": self.remove(str(args["backend"])).version}

    def _write(self, backend: str, weight: int | None) -> SyncableState:
        now = time.monotonic()
        self.store.gc(now)
        state = self.store.write(self.state_type, backend, weight, self.clock, self.node_id, now)
        self._changes[state_key(state)] = state
        return state
