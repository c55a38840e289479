"""The built-in `stick_table` provider: replicated entries with a time to live.

For sticky sessions: a load balancer puts client -> backend, every node
looks it up, and the entry disappears by itself when its time is up.

Theory of operation:

* Each entry is one replicated state: key = the entry's key, value
  ``{"v": value, "exp": expiry}`` where ``exp`` is an absolute wall-clock
  time (epoch seconds) fixed by the writer (`put` time + ``ttl_s``). Any
  node may write any key; the newest version wins, ties go to the greater
  source node (the protocol's rule, as for `kv`). `del` writes a tombstone.
* Expiry. An entry is found iff ``exp > time.time()`` on the reading node.
  Every node holds the same ``exp``, so expiry is decided the same way
  everywhere, and it costs no traffic: an expired entry is not deleted, it
  just stops being found (a later `put` of the key replaces it).
* Clock skew assumption: wall clocks agree to well under a second (NTP). A
  node ``d`` seconds ahead sees entries expire ``d`` seconds early; with
  TTLs of minutes that is noise.
* Capacity. A node that holds more than ``max_entries`` entries (expired
  ones included: they still take memory) deletes the ones that expire
  soonest, so expired entries go first. That is the only cleanup of
  expired entries, and the only tombstones this provider sends on its own.
* Coalescing. `put` and `delete` only record the key's newest intent in
  memory (thread-safe, a few microseconds); it becomes a state at the next
  `drain_changes` or `tick`, so many writes to one key in between are ONE
  new state, versioned when it is written. `lookup` sees pending writes.
"""

from __future__ import annotations

import heapq
import math
import time
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from typing import Any

import msgpack

from actors.providers.base import ReplicatedTable, arg_name, read_options
from actors.providers.locked import LockedTableProvider
from transport.protocol import (
    MAX_KEY_LEN,
    LamportClock,
    ProtocolError,
    SyncableState,
    is_tombstone,
    validate_value,
)
from transport.settings import Field, above_zero

STATE_TYPE = "stick_table"
MAX_VALUE_BYTES = 64 * 1024  # an entry's encoded value (a backend name is a few bytes)
SWEEP_S = 1.0  # how often capacity and tombstone GC are looked at
_DELETED = None  # a pending delete


@dataclass(frozen=True, slots=True, kw_only=True)
class StickOptions:
    ttl_s: float = 1800.0
    max_entries: int = 100_000


FIELDS = (
    Field("ttl_s", float, 1800.0, check=above_zero, why="an entry's time to live by default"),
    Field("max_entries", int, 100_000, low=1, why="beyond this, what expires soonest goes"),
)


def parse_options(options: object) -> StickOptions:
    """Validate the `[[providers]] options` table. Raises: ProviderOptionError."""
    return StickOptions(**read_options(STATE_TYPE, options, FIELDS))


def valid_value(value: object) -> bool:
    """Shape of a replicated entry (remote values are untrusted)."""
    if not isinstance(value, dict) or value.get("v") is None:
        return False
    exp = value.get("exp")
    return isinstance(exp, (int, float)) and not isinstance(exp, bool) and math.isfinite(exp)


def is_live(value: Mapping[str, Any], wall_now: float) -> bool:
    """Whether an entry value is found at wall time `wall_now` (the same rule on every node)."""
    return bool(value["exp"] > wall_now)


def check_key(key: object) -> str:
    if not isinstance(key, str) or not 0 < len(key) <= MAX_KEY_LEN:
        raise ValueError(f"key must be a non-empty string of at most {MAX_KEY_LEN} characters")
    return key


def check_entry_value(value: object) -> Any:
    """A value to store. Raises: ValueError."""
    if value is None:
        raise ValueError("value must not be null (use del)")
    try:
        validate_value(value)
        size = len(msgpack.packb(value, use_bin_type=True))
    except (ProtocolError, TypeError, ValueError, OverflowError):
        raise ValueError("value must be msgpack-native (str, int, float, bool, bytes, "
                         "list, map with str keys)") from None
    if size > MAX_VALUE_BYTES:
        raise ValueError(f"value is {size} bytes encoded, at most {MAX_VALUE_BYTES}")
    return value


def check_ttl(ttl_s: object) -> float:
    if isinstance(ttl_s, bool) or not isinstance(ttl_s, (int, float)) or not 0 < ttl_s < math.inf:
        raise ValueError(f"ttl_s must be a positive number (got {ttl_s!r})")
    return float(ttl_s)


class StickTableProvider(LockedTableProvider):
    """StateProvider for state_type "stick_table" (see the module docstring).

    Thread-safety: every public method may be called from any thread; each
    holds the provider's lock for a few dictionary operations. `put`,
    `delete`, `lookup` and `entry` are the fast path for a program that hosts
    the provider in-process; `tick`, `next_deadline`, `apply_remote_state`
    and `drain_changes` belong to the one host thread. `now_fn` (monotonic)
    and `wall_fn` (epoch seconds, for expiry) are seams for tests.
    """

    def __init__(self, node_id: str, clock: LamportClock,
                 options: Mapping[str, Any] | None = None, *,
                 now_fn: Callable[[], float] = time.monotonic,
                 wall_fn: Callable[[], float] = time.time) -> None:
        super().__init__(now_fn)
        self.options = parse_options({} if options is None else options)
        self.node_id = node_id
        self.clock = clock  # the SDK witnesses versions on it
        self._table = ReplicatedTable(STATE_TYPE, node_id, clock, valid_value)
        self._wall_fn = wall_fn
        # Writes not yet states: key -> {"v", "exp"} or _DELETED (latest intent wins).
        self._pending: dict[str, dict[str, Any] | None] = {}
        # Expiry of every held entry, and a heap of (exp, key) over it for eviction.
        # The heap is lazy: an item whose exp no longer matches `_exp` is skipped.
        self._exp: dict[str, float] = {}
        self._heap: list[tuple[float, str]] = []
        self._sweep_at = 0.0
        self.evicted = 0

    @classmethod
    def validate_options(cls, options: Mapping[str, Any]) -> None:
        """Raise ProviderOptionError (a ValueError) if `options` are invalid."""
        parse_options(options)

    # -- the fast path ---------------------------------------------------------------------
    def put(self, key: str, value: Any, ttl_s: float | None = None) -> None:
        """Stick `key` to `value` for `ttl_s` (default: the ttl_s option).

        Raises: ValueError for a bad key, value or ttl_s.
        """
        ttl = self.options.ttl_s if ttl_s is None else check_ttl(ttl_s)
        entry = {"v": check_entry_value(value), "exp": self._wall_fn() + ttl}
        self._intend(check_key(key), entry)

    def delete(self, key: str) -> None:
        """Remove `key` everywhere (a tombstone). Raises: ValueError for a bad key."""
        self._intend(check_key(key), _DELETED)

    def lookup(self, key: str) -> Any | None:
        """The value `key` sticks to, or None if absent or expired."""
        found = self.entry(key)
        return None if found is None else found[0]

    def entry(self, key: str) -> tuple[Any, float] | None:
        """(value, seconds until it expires), or None if absent or expired."""
        wall_now = self._wall_fn()
        with self._lock:
            value = self._pending[key] if key in self._pending else self._table.value(key)
        if value is None or not is_live(value, wall_now):
            return None
        return value["v"], value["exp"] - wall_now

    def __len__(self) -> int:
        """Entries held, expired ones included (what max_entries bounds)."""
        with self._lock:
            return len(self._exp)

    # -- StateProvider (the rest comes from LockedTableProvider) ----------------------------
    def on_node_failure(self, node_id: str) -> None:
        """Nothing to do: entries belong to no node and expire by themselves."""

    # -- host hooks ------------------------------------------------------------------------
    def tick(self, now: float) -> None:
        """Write pending intents; now and then enforce max_entries and collect tombstones."""
        with self._lock:
            self._flush(now)
            if now >= self._sweep_at:
                self._sweep_at = now + SWEEP_S
                self._evict(now)
                self._table.gc(now)

    def next_deadline(self) -> float | None:
        with self._lock:
            if self._pending:
                return 0.0  # due now
            return self._sweep_at if self._exp else None

    # -- commands --------------------------------------------------------------------------
    def cmd_put(self, args: Mapping[str, Any], now: float) -> dict[str, Any]:
        """{key, value, ttl_s?} -> {}."""
        if "value" not in args:
            raise ValueError("put needs a value")
        ttl_s = args.get("ttl_s")
        self.put(arg_name(args, "key"), args["value"], None if ttl_s is None else ttl_s)
        return {}

    def cmd_get(self, args: Mapping[str, Any], now: float) -> dict[str, Any]:
        """{key} -> {found, value, expires_in_s} (value and expires_in_s null if not found)."""
        found = self.entry(arg_name(args, "key"))
        if found is None:
            return {"found": False, "value": None, "expires_in_s": None}
        return {"found": True, "value": found[0], "expires_in_s": round(found[1], 3)}

    def cmd_del(self, args: Mapping[str, Any], now: float) -> dict[str, Any]:
        self.delete(arg_name(args, "key"))
        return {}

    # -- internals -------------------------------------------------------------------------
    def _intend(self, key: str, entry: dict[str, Any] | None) -> None:
        with self._lock:
            was_clean = not self._pending
            self._pending[key] = entry
        if was_clean:
            self._wake()

    def _before_drain(self) -> None:
        self._flush(self._now_fn())

    def _flush(self, now: float) -> None:
        """Turn pending intents into states (under the lock)."""
        if not self._pending:
            return
        pending, self._pending = self._pending, {}
        for key, entry in pending.items():
            held = self._table.get(key)
            if entry is _DELETED and (held is None or is_tombstone(held)):
                continue  # deleting what is not held: nothing to tell anyone
            self._index(self._table.write(key, entry, now))
        self._evict(now)

    def _index(self, state: SyncableState) -> None:
        """Track the expiry of a state written or accepted."""
        if is_tombstone(state):
            self._exp.pop(state.key, None)
            return
        exp = float(state.value["exp"])
        self._exp[state.key] = exp
        heapq.heappush(self._heap, (exp, state.key))
        if len(self._heap) > 2 * len(self._exp) + 64:  # mostly stale items: rebuild
            self._heap = [(e, k) for k, e in self._exp.items()]
            heapq.heapify(self._heap)

    def _evict(self, now: float) -> None:
        """Delete the entries that expire soonest while more than max_entries are held."""
        while len(self._exp) > self.options.max_entries and self._heap:
            exp, key = heapq.heappop(self._heap)
            if self._exp.get(key) != exp:
                continue  # stale heap item
            del self._exp[key]
            self._table.write(key, None, now)
            self.evicted += 1
