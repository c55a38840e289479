"""The built-in `kv` provider: a plain replicated key/value map with tombstones.

Every key is one `SyncableState` of type "kv" in a `Store`, so the version
rules, conflicts, tombstone GC and the GC horizon are exactly the store's.
Any node may write any key: the newest Lamport version wins, ties go to the
greater source node. Deleting writes a tombstone, kept for
`tombstone_grace_s` so a stale copy cannot bring the key back.

Remote states are applied by version only, without the store's GC-horizon
check, like every built-in provider (`actors.providers.base` says why).

Values are any msgpack-native value except None (None means deleted); keys
are non-empty strings of at most `MAX_KEY_CHARS` characters; a local write's
encoded value is bounded by the `max_value_bytes` option, itself at most one
wire frame less a headroom (checked when the config loads). Remote values are
not held to this node's bound (the writer applied its own, and the wire codec
bounds messages), so nodes with different options still converge.

Time is an argument (`now`, monotonic seconds) everywhere except in the
StateProvider method `apply_remote_state`, whose seed signature has none; it
reads `now_fn`.
"""

from __future__ import annotations

import time
from collections.abc import Callable, Mapping, Sequence
from typing import Any

import msgpack

from actors.core.store import DEFAULT_TOMBSTONE_GRACE_S
from actors.providers.base import ReplicatedTable, TableProvider, read_options
from transport.codec import DEFAULT_LIMITS
from transport.protocol import (
    ApplyResult,
    LamportClock,
    ProtocolError,
    SyncableState,
    is_tombstone,
    validate_value,
)
from transport.settings import Field

STATE_TYPE = "kv"
MAX_KEY_CHARS = 256
DEFAULT_MAX_VALUE_BYTES = 64 * 1024
# A value travels to peers in one frame with its key, source, version and the
# envelope; a larger bound would let a write succeed here and never arrive anywhere.
FRAME_HEADROOM_BYTES = 16 * 1024  # worst case ~12 KiB: a fast push naming 64 node ids
MAX_VALUE_BYTES_LIMIT = DEFAULT_LIMITS.max_message_bytes - FRAME_HEADROOM_BYTES
FIELDS = (
    Field("max_value_bytes", int, DEFAULT_MAX_VALUE_BYTES, low=1, high=MAX_VALUE_BYTES_LIMIT,
          why="a local write's encoded value; at most one frame less its headroom"),
    Field("tombstone_grace_s", float, DEFAULT_TOMBSTONE_GRACE_S, low=0.001, high=365 * 86_400,
          why="a deleted key's tombstone is kept this long (as [anti_entropy])"),
)


class KvError(ValueError):
    """A bad key or value; `.reason` is a constant slug."""

    def __init__(self, reason: str, detail: str) -> None:
        super().__init__(f"{reason}: {detail}")
        self.reason = reason


class KvProvider(TableProvider):
    """StateProvider for state_type "kv" (see the module docstring)."""

    serves = ("kv.",)  # `kv.set` is short for `provider.kv.set` (actors.node.plan)

    def __init__(self, node_id: str, clock: LamportClock,
                 options: Mapping[str, Any] | None = None,
                 now_fn: Callable[[], float] = time.monotonic) -> None:
        """Raises: ProviderOptionError for a bad option (see FIELDS)."""
        opts = read_options(STATE_TYPE, {} if options is None else options, FIELDS)
        self.node_id = node_id
        self.clock = clock
        self.max_value_bytes: int = opts["max_value_bytes"]
        self._table = ReplicatedTable(STATE_TYPE, node_id, clock,
                                      tombstone_grace_s=opts["tombstone_grace_s"])
        self._now_fn = now_fn

    @staticmethod
    def validate_options(options: Mapping[str, Any]) -> None:
        """Raise ProviderOptionError (a ValueError) if `options` are invalid."""
        read_options(STATE_TYPE, options, FIELDS)

    # -- the kv API ---------------------------------------------------------------------
    def set(self, key: str, value: Any, now: float) -> SyncableState:
        """Write `value` under `key`. Raises: KvError for a bad key or value."""
        _check_key(key)
        if value is None:
            raise KvError("bad_value", "None is not a value (use delete)")
        self._check_value(value)
        return self._write(key, value, now)

    def delete(self, key: str, now: float) -> SyncableState:
        """Delete `key` (a tombstone is written even if the key is not held)."""
        _check_key(key)
        return self._write(key, None, now)

    def get(self, key: str) -> Any | None:
        return self._table.value(key)

    def state_of(self, key: str) -> SyncableState | None:
        """The held state of `key`, a tombstone included."""
        return self._table.get(key)

    def items(self) -> list[tuple[str, Any]]:
        """Live (key, value) pairs, sorted by key."""
        return sorted((s.key, s.value) for s in self._table.states() if not is_tombstone(s))

    # -- StateProvider (the queries and drain_changes come from TableProvider) ------------
    def apply_remote_state(self, states: list[SyncableState]) -> ApplyResult:
        result, _ = self.apply_remote(states, self._now_fn())
        return result

    def on_node_failure(self, node_id: str) -> None:
        """Nothing to do: kv keys have no owner node."""

    # -- host helpers ------------------------------------------------------------------------
    def apply_remote(self, states: Sequence[SyncableState], now: float
                     ) -> tuple[ApplyResult, list[SyncableState]]:
        """apply_remote_state with an explicit `now`; also returns the stored states."""
        self._table.gc(now)
        return self._table.apply(states, now)

    def gc(self, now: float) -> int:
        return self._table.gc(now)

    # -- commands (`lbcluster kv ...`, reached through the provider host) -----------------
    def cmd_set(self, args: Mapping[str, Any], now: float) -> dict[str, Any]:
        if "value" not in args:
            raise KvError("bad_request", "set needs a value")
        state = self.set(_check_key(args.get("key")), args["value"], now)
        return {"key": state.key, "version": state.version}

    def cmd_get(self, args: Mapping[str, Any], now: float) -> dict[str, Any]:
        key = _check_key(args.get("key"))
        state = self.state_of(key)
        found = state is not None and not is_tombstone(state)
        return {"key": key, "found": found, "value": state.value if state else None,
                "version": state.version if found and state else None}

    def cmd_del(self, args: Mapping[str, Any], now: float) -> dict[str, Any]:
        key = _check_key(args.get("key"))
        held = self.state_of(key)
        state = self.delete(key, now)
        return {"key": state.key, "version": state.version,
                "existed": held is not None and not is_tombstone(held)}

    # -- internals ------------------------------------------------------------------------
    def _write(self, key: str, value: Any, now: float) -> SyncableState:
        self._table.gc(now)
        return self._table.write(key, value, now)

    def _check_value(self, value: Any) -> None:
        try:
            validate_value(value)
            size = len(msgpack.packb(value, use_bin_type=True))
        except (ProtocolError, TypeError, ValueError, OverflowError):
            raise KvError("bad_value", "must be msgpack-native (str, int, float, bool, "
                          "bytes, list, map with str keys)") from None
        if size > self.max_value_bytes:
            raise KvError("value_too_large",
                          f"{size} bytes encoded, max_value_bytes is {self.max_value_bytes}")


def _check_key(key: object) -> str:
    if not isinstance(key, str) or not 0 < len(key) <= MAX_KEY_CHARS:
        raise KvError("bad_key", f"must be a non-empty string of at most {MAX_KEY_CHARS} "
                      "characters")
    return key
