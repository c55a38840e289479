"""The built-in `rate` provider: cluster-wide counters over a sliding window.

Theory of operation:

* Shards. Each node counts into its own shard of every key. A shard is one
  replicated state, key ``f"{key}@{node}"`` (split at the LAST ``@``: node
  ids cannot hold one, user keys may), value ``{"b": [[second, count],
  ...], "at": ms, "r": rate}``: per wall-clock-second counts
  (``int(time.time())``), ascending, zeros left out; the wall time of the
  flush that wrote it, in ms; and the adds/s it was counting at (its
  previous whole second). A bucket whose first count fell after its second
  began also has that offset in ms, in ``"f": [[second, ms], ...]`` (left
  out when there is none). A bare ``[[second, count], ...]`` (older nodes)
  is read as buckets with no rate. Only the owning node writes its shard (a remote shard whose key
  names another node than its source_node is rejected), so versions of a
  shard only grow and there are no conflicts: the newest version wins.
* Window. A read at wall time ``t`` (second ``s = int(t)``) counts the
  last ``window_s`` seconds, ``(t - window_s, t]``: the buckets with
  ``s - window_s < second <= s + window_s`` in full (the current second, the
  ``window_s - 1`` before it, and buckets stamped ahead by a writer whose
  clock runs fast; far-future ones are ignored, so a bad clock cannot pin a
  count forever), plus the oldest bucket, ``s - window_s``, in proportion to
  the part of it still in the window, ``1 - (t - s)``, rounded half up per
  shard. Whole buckets alone would drop a whole second at every second
  boundary: at a steady rate the total would read up to 1/window_s (10 %)
  low. Weighting the oldest bucket is exact at a steady rate, and otherwise
  off by at most that bucket's unevenness. A bucket whose counting began at
  offset ``f`` into its second is taken as spread over ``[f, 1)``, not the
  whole second: counting starts at any instant, and the second it started
  in would otherwise read up to ``f`` of a second's counts wrong for as long
  as it is the oldest (measured: 2 % off with a 10-s window, in about half
  of the benchmark's runs). The total is a function of the
  shards and ``t`` alone: every node holding the same shards computes the
  same total at the same instant.
* Carried forward. Another node's shard is as of its flush, and reaches a
  reader ``flush_ms`` plus replication later (hundreds of ms on a loaded
  machine): counted as it is, a steady rate would read low by that delay.
  So a read adds ``r`` times the time since the shard's flush, for at most
  ``CARRY_MAX_S``: counts the writer is making now, at the rate it reported.
  A shard left uncounted for ``QUIET_FLUSHES`` flushes is written once
  more with rate 0, and from then on is read exactly as it is; so once
  counting stops every node's total is exact again within about three
  ``flush_ms`` plus replication. A node that dies while counting leaves at
  most ``CARRY_MAX_S`` of its rate in the total, which the window then
  passes like its other counts. Membership is not consulted, so nodes
  that disagree about who is alive still agree; a failed or departed node's
  shard simply stops growing, and its counts leave the total once the
  window has passed them.
* Clock skew assumption: wall clocks agree to well under a second (NTP).
  A node ``d`` seconds ahead drops a bucket ``d`` seconds before the others
  do, and stamps its own counts ``d`` seconds late in their eyes; totals on
  two nodes differ by at most the counts of ``d`` seconds at the window's
  edges.
* Flushing. `add` only counts in memory (thread-safe, a few microseconds);
  changed shards are written at most every ``flush_ms`` (by `tick`, or by
  `drain_changes` when a flush is due), so many adds to one key between
  flushes are ONE new state, and the request rate never becomes the
  replication rate. A read on this node includes its unflushed counts.
* Restarts. A remote state of this node's own shard that is newer than the
  held one comes from an earlier life of this node (its journal, or the
  cluster when the journal is gone): it becomes `base`, and this life's
  counts are added on top at the next flush (above its version).
* Cleanup. Once every bucket of a shard has left the window the owner
  deletes it (one tombstone, collected after the store's grace period), so
  idle keys cost nothing. Known limit: the last shard of a node that never
  comes back stays held (counting nothing) until the state is overwritten.
* All nodes should use the same ``window_s``: a shard holds only its
  writer's window, so a reader with a longer one sees less than it asks for.
"""

from __future__ import annotations

import time
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass, field
from typing import Any

from actors.providers.base import ReplicatedTable, arg_name, read_options
from actors.providers.locked import LockedTableProvider
from transport.protocol import (
    MAX_KEY_LEN,
    LamportClock,
    SyncableState,
    is_tombstone,
)
from transport.settings import Field
from transport.validate import MAX_ID_LEN, MAX_U63

STATE_TYPE = "rate"
SEPARATOR = "@"  # shard key = f"{key}@{node}"; node ids never contain "@"
MAX_RATE_KEY = MAX_KEY_LEN - MAX_ID_LEN - 1  # so every shard key is a valid state key
MAX_WINDOW_S = 600  # one bucket per second is replicated: bound a shard's size
MAX_ADD = 2**32  # per call; keeps a bucket far below 2**63
SWEEP_S = 1.0  # how often idle shards are looked for
# A remote shard is carried forward from its flush to the read at the rate its
# writer last reported, for at most this long: covers replication delay on a
# loaded machine; beyond it a node is late (or gone), and only what it sent counts.
CARRY_MAX_S = 0.5
QUIET_FLUSHES = 2  # uncounted flushes in a row before a shard reports rate 0

Buckets = dict[int, int]  # wall-clock second -> count


# --- options and the pure window rules --------------------------------------------------


@dataclass(frozen=True, slots=True, kw_only=True)
class RateOptions:
    window_s: int = 10
    flush_ms: int = 20


FIELDS = (
    Field("window_s", int, 10, low=1, high=MAX_WINDOW_S,
          why="whole seconds a count stays in the total"),
    Field("flush_ms", int, 20, low=1, why="how often changed shards are written and sent"),
)


def parse_options(options: object) -> RateOptions:
    """Validate the `[[providers]] options` table. Raises: ProviderOptionError."""
    return RateOptions(**read_options(STATE_TYPE, options, FIELDS))


def shard_key(key: str, node: str) -> str:
    return f"{key}{SEPARATOR}{node}"


def split_shard_key(skey: str) -> tuple[str, str] | None:
    """(key, node) of a shard key; None if it is not one."""
    key, sep, node = skey.rpartition(SEPARATOR)
    return (key, node) if sep and key and node else None


def in_window(second: int, now_sec: int, window_s: int) -> bool:
    """Whether a bucket still counts, in full or in part, at wall second `now_sec`
    (see the module docstring): such buckets are kept and replicated."""
    return now_sec - window_s <= second <= now_sec + window_s


def windowed_sum(buckets: Iterable[tuple[int, int]], now: float, window_s: int,
                 firsts: Mapping[int, int] | None = None) -> int:
    """The count of `buckets` in the window ``(now - window_s, now]``: whole buckets,
    and the oldest one in proportion to the part of its counting still in the window.
    `firsts` (second -> ms): where in its second a bucket's first count fell, when not
    at its start; the bucket's counts are taken as spread over the rest of the second."""
    now_sec = int(now)
    oldest, hi = now_sec - window_s, now_sec + window_s
    total, partial = 0, 0
    for second, n in buckets:  # a plain loop: twice as fast as sum() over a generator
        if oldest < second <= hi:
            total += n
        elif second == oldest:
            partial = n
    if not partial:
        return total
    first = firsts.get(oldest, 0) / 1000.0 if firsts else 0.0
    share = (1.0 - max(now - now_sec, first)) / (1.0 - first)
    # rounded half up (not to even), so a half bucket reads the same on every node
    return total + int(partial * share + 0.5)


def _int_pairs(value: object, low: int, high: int) -> bool:
    """A list of at most one pair per second in reach of a window: ``[second, x]`` with
    both ints, `second` in [0, 2**63) and `x` in [low, high]."""
    if not isinstance(value, (list, tuple)) or len(value) > 2 * MAX_WINDOW_S + 1:
        return False
    for pair in value:
        if not isinstance(pair, (list, tuple)) or len(pair) != 2:
            return False
        second, x = pair
        if (type(second) is not int or type(x) is not int
                or not 0 <= second <= MAX_U63 or not low <= x <= high):
            return False
    return True


def valid_value(value: object) -> bool:
    """Shape of a replicated shard (remote values are untrusted): ``{"b": pairs,
    "at": wall ms of the flush, "r": adds/s since the flush before}`` and, when a
    bucket's first count fell after its second began, ``"f": [[second, ms], ...]``;
    or the bare pairs an older node wrote (no rate: never carried forward)."""
    if isinstance(value, dict):
        at, rate = value.get("at"), value.get("r")
        return (len(value) == (4 if "f" in value else 3)
                and _int_pairs(value.get("b"), 1, MAX_U63)
                and type(at) is int and 0 <= at <= MAX_U63
                and type(rate) is int and 0 <= rate <= MAX_U63
                and ("f" not in value or _int_pairs(value["f"], 1, 999)))
    return _int_pairs(value, 1, MAX_U63)


# (pairs, flushed at, adds/s, second -> ms of its first count when not 0)
Shard = tuple[tuple[tuple[int, int], ...], float, int, dict[int, int]]


def read_shard(value: Any) -> Shard:
    """A valid shard value as (pairs, flush wall time in s, rate, firsts)."""
    if isinstance(value, dict):
        return (tuple((s, n) for s, n in value["b"]), value["at"] / 1000.0, value["r"],
                {s: ms for s, ms in value.get("f", ())})
    return tuple((s, n) for s, n in value), 0.0, 0, {}


def carried(flushed_at: float, rate: int, now: float, window_s: int) -> int:
    """What a shard's writer counted after its flush, by the rate it reported: the part
    of ``(flushed_at, flushed_at + CARRY_MAX_S]`` inside the window ``(now - window_s,
    now]`` times the rate, rounded half up (the same on every node)."""
    if not rate:
        return 0
    span = min(now, flushed_at + CARRY_MAX_S) - max(flushed_at, now - window_s)
    return int(rate * span + 0.5) if span > 0 else 0


def check_count(n: object) -> int:
    """A count to add. Raises: ValueError."""
    if type(n) is not int or not 0 <= n <= MAX_ADD:
        raise ValueError(f"n must be an integer from 0 to {MAX_ADD} (got {n!r})")
    return n


def check_rate_key(key: object) -> str:
    """A counter key. Raises: ValueError."""
    if not isinstance(key, str) or not 0 < len(key) <= MAX_RATE_KEY:
        raise ValueError(f"key must be a non-empty string of at most {MAX_RATE_KEY} characters")
    return key


@dataclass(slots=True)
class Own:
    """This node's shard of one key."""

    # Counted by this process (second -> n), flushed or not.
    mine: Buckets = field(default_factory=dict)
    # The shard an earlier life of this node published (restart), counted too.
    base: Buckets = field(default_factory=dict)
    # Where in its second each bucket's first count fell (ms), when not at 0: the
    # window's oldest bucket is read as spread over the rest of its second only.
    first: dict[int, int] = field(default_factory=dict)
    base_first: dict[int, int] = field(default_factory=dict)
    quiet: int = 0  # flushes in a row that found no new counts

    def merged(self) -> Buckets:
        """Both lives' counts (this life's own dict when there was no earlier one)."""
        if not self.base:
            return self.mine
        out = dict(self.base)
        for second, n in self.mine.items():
            out[second] = out.get(second, 0) + n
        return out

    def firsts(self) -> dict[int, int]:
        """A bucket counted in both lives started at the earlier of the two."""
        if not self.base:
            return self.first
        out = {}
        for second in self.mine.keys() | self.base.keys():
            ms = min(self.first.get(second, 0) if second in self.mine else 1000,
                     self.base_first.get(second, 0) if second in self.base else 1000)
            if ms:
                out[second] = ms
        return out

    def trim(self, now_sec: int, window_s: int) -> None:
        for buckets in (self.mine, self.base, self.first, self.base_first):
            for second in [s for s in buckets if not in_window(s, now_sec, window_s)]:
                del buckets[second]

    def total(self, now: float, window_s: int) -> int:
        return windowed_sum(self.merged().items(), now, window_s, self.firsts())


# --- the provider -----------------------------------------------------------------------


class RateProvider(LockedTableProvider):
    """StateProvider for state_type "rate" (see the module docstring).

    Thread-safety: every public method may be called from any thread; each
    holds the provider's lock for a few dictionary operations. `add` and
    `total` are the fast path for a program that hosts the provider
    in-process; `tick`, `next_deadline`, `apply_remote_state` and
    `drain_changes` belong to the one host thread. `now_fn` (monotonic) and
    `wall_fn` (epoch seconds, for buckets) are seams for tests.
    """

    def __init__(self, node_id: str, clock: LamportClock,
                 options: Mapping[str, Any] | None = None, *,
                 now_fn: Callable[[], float] = time.monotonic,
                 wall_fn: Callable[[], float] = time.time) -> None:
        super().__init__(now_fn)
        self.options = parse_options({} if options is None else options)
        self.node_id = node_id
        self.clock = clock  # the SDK witnesses versions on it
        self._window_s = self.options.window_s
        self._flush_s = self.options.flush_ms / 1000.0
        self._table = ReplicatedTable(STATE_TYPE, node_id, clock, valid_value)
        self._wall_fn = wall_fn
        self._own: dict[str, Own] = {}
        self._dirty: set[str] = set()  # own keys counted since their last flush
        self._moving: set[str] = set()  # own keys whose last flush reported a rate > 0
        # Other nodes' shards, by key then node (an index of the table for reads).
        self._others: dict[str, dict[str, Shard]] = {}
        self._flush_at = 0.0  # monotonic: no flush before it (so the first is at once)
        self._sweep_at = 0.0

    @classmethod
    def validate_options(cls, options: Mapping[str, Any]) -> None:
        """Raise ProviderOptionError (a ValueError) if `options` are invalid."""
        parse_options(options)

    # -- the fast path ---------------------------------------------------------------------
    def add(self, key: str, n: int = 1) -> None:
        """Count `n` for `key` in this second. Raises: ValueError for a bad key or n."""
        if type(n) is not int or not 0 <= n <= MAX_ADD:
            check_count(n)
        wall = self._wall_fn()
        second = int(wall)
        with self._lock:
            own = self._own.get(key)
            if own is None:  # a key is checked once, when it is first counted
                own = self._own[check_rate_key(key)] = Own()
            held = own.mine.get(second)
            if held is None:
                held = 0
                if ms := int((wall - second) * 1000):
                    own.first[second] = ms
            own.mine[second] = held + n
            was_clean = not self._dirty
            self._dirty.add(key)
        if was_clean:
            self._wake()

    def total(self, key: str) -> int:
        """The cluster-wide count of `key` over the window, as this node sees it now."""
        now = self._wall_fn()
        window_s = self._window_s
        with self._lock:  # the hot read: no per-node dict, just the sums
            own = self._own.get(key)
            total = 0 if own is None else own.total(now, window_s)
            for pairs, flushed_at, rate, firsts in self._others.get(key, {}).values():
                total += windowed_sum(pairs, now, window_s, firsts)
                if rate:
                    total += carried(flushed_at, rate, now, window_s)
            return total

    def per_node(self, key: str) -> dict[str, int]:
        """The non-zero windowed count of each node's shard of `key`."""
        now = self._wall_fn()
        with self._lock:
            return self._per_node(key, now)

    # -- StateProvider (the rest comes from LockedTableProvider) ----------------------------
    def _admit(self, states: list[SyncableState]) -> list[SyncableState]:
        """Only a shard's owner writes it: a shard naming another node is rejected."""
        return [s for s in states if not isinstance(s, SyncableState) or s.state_type != STATE_TYPE
                or (split_shard_key(s.key) or ("", ""))[1] == s.source_node]

    def on_node_failure(self, node_id: str) -> None:
        """Nothing to do: the node's counts leave the total as the window passes them."""

    # -- host hooks ------------------------------------------------------------------------
    def tick(self, now: float) -> None:
        """Write the dirty shards if `flush_ms` has passed; delete idle ones now and then."""
        with self._lock:
            if (self._dirty or self._moving) and now >= self._flush_at:
                self._flush(now)
            if now >= self._sweep_at:
                self._sweep(now)

    def _before_drain(self) -> None:
        """A drain also writes the dirty shards whose flush is due (under the lock)."""
        now = self._now_fn()
        if (self._dirty or self._moving) and now >= self._flush_at:
            self._flush(now)

    def next_deadline(self) -> float | None:
        with self._lock:
            if self._dirty or self._moving:
                return self._flush_at
            return self._sweep_at if self._own else None

    # -- commands --------------------------------------------------------------------------
    def cmd_add(self, args: Mapping[str, Any], now: float) -> dict[str, Any]:
        """{key, n=1} -> {} (counted now, replicated at the next flush)."""
        self.add(check_rate_key(arg_name(args, "key")), check_count(args.get("n", 1)))
        return {}

    def cmd_get(self, args: Mapping[str, Any], now: float) -> dict[str, Any]:
        """{key} -> {total, per_node, window_s}."""
        per_node = self.per_node(check_rate_key(arg_name(args, "key")))
        return {"total": sum(per_node.values()), "per_node": per_node,
                "window_s": self._window_s}

    # -- internals (under the lock) --------------------------------------------------------
    def _per_node(self, key: str, now: float) -> dict[str, int]:
        w = self._window_s
        counts = {node: windowed_sum(pairs, now, w, firsts) + carried(at, rate, now, w)
                  for node, (pairs, at, rate, firsts) in self._others.get(key, {}).items()}
        own = self._own.get(key)
        if own is not None:
            counts[self.node_id] = own.total(now, self._window_s)
        return {node: n for node, n in sorted(counts.items()) if n}

    def _flush(self, now: float) -> None:
        """Write every shard counted since the last flush, with the rate it is counted
        at (its previous whole second: a burst after a quiet second reports none, so
        nothing is carried forward that did not happen). A shard left uncounted for
        QUIET_FLUSHES flushes in a row is written once more with rate 0, so the other
        nodes stop carrying it forward (see `carried`): one quiet flush may be a
        counting thread that was not scheduled, and a rate 0 then would make every
        other node's total dip until the next flush arrived."""
        wall = self._wall_fn()
        second = int(wall)
        for key in sorted(self._dirty | self._moving):
            own = self._own.get(key)
            if own is None:
                continue
            if key in self._dirty:
                own.quiet, rate = 0, own.mine.get(second - 1, 0)
            else:
                own.quiet += 1
                if own.quiet < QUIET_FLUSHES:
                    continue
                rate = 0
            if rate:
                self._moving.add(key)
            else:
                self._moving.discard(key)
            own.trim(second, self._window_s)
            value: dict[str, Any] = {"b": [[s, n] for s, n in sorted(own.merged().items())],
                                     "at": int(wall * 1000), "r": rate}
            if firsts := own.firsts():
                value["f"] = [[s, ms] for s, ms in sorted(firsts.items())]
            self._table.write(shard_key(key, self.node_id), value, now)
        self._dirty.clear()
        self._flush_at = now + self._flush_s

    def _sweep(self, now: float) -> None:
        """Delete own shards with nothing left in the window; collect old tombstones."""
        self._sweep_at = now + SWEEP_S
        second = int(self._wall_fn())
        for key, own in list(self._own.items()):
            if key in self._dirty or key in self._moving:
                continue
            own.trim(second, self._window_s)
            if not own.mine and not own.base:
                del self._own[key]
                held = self._table.get(shard_key(key, self.node_id))
                if held is not None and not is_tombstone(held):
                    self._table.write(held.key, None, now)
        self._table.gc(now)

    def _index(self, state: SyncableState) -> None:
        """An accepted remote shard: another node's is indexed, our own is an earlier life."""
        key, node = split_shard_key(state.key) or ("", "")
        shard: Shard = ((), 0.0, 0, {}) if is_tombstone(state) else read_shard(state.value)
        if node == self.node_id:  # an earlier life of this node: see the module docstring
            own = self._own.setdefault(key, Own())
            own.base, own.base_first = dict(shard[0]), shard[3]
            if own.mine:
                self._dirty.add(key)
            return
        shards = self._others.setdefault(key, {})
        if shard[0]:
            shards[node] = shard
        else:
            shards.pop(node, None)
            if not shards:
                del self._others[key]
