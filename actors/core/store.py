"""A versioned replicated map with tombstones, an O(1) summary and a GC horizon.

Theory of operation:

* The store maps (state_type, key) to the newest `SyncableState` it has seen.
  Order is the protocol's: a higher version wins; equal versions from
  different writers are a conflict won by the greater source_node
  (`transport.protocol.compare_states`), so every node keeps the same winner.
  Deletion is a tombstone (value None) that is ordered like any other state.
* Decide, then apply: `check(state)` is read-only and returns a `Verdict`;
  `apply` stores only APPLY / CONFLICT_APPLY. The same class serves as a
  provider's own store and as the anti-entropy actor's mirror of all types.
* Summary: every entry hashes (state_type, key, version, source_node) to 64
  bits; each of `DIGEST_BUCKETS` buckets (chosen by a hash of the key alone)
  keeps the XOR of its entries, and the summary is (count, XOR of all).
  Each change updates them in O(1), so an in-sync check costs the same for
  ten keys or a million, and a mismatch can be narrowed to the buckets that
  differ before any per-key digest is exchanged.
* Tombstone GC and the horizon. A tombstone is kept `tombstone_grace_s`
  after it was stored *here* (local time), then `gc(now)` removes it and
  raises the horizon of its type to its version. Rule: a state for a key this
  store does not hold, whose version is <= the horizon of its type, is
  rejected (BELOW_HORIZON). So a stale copy of a deleted key that arrives
  after the tombstone is gone can never resurrect it.
* The rule's one limitation: after GC the store cannot tell "deleted" from
  "never seen". A write that was never seen here and whose version is at or
  below the horizon is rejected too, and is therefore lost. That happens only
  to a node that was cut off for longer than the grace period (its clock did
  not witness the versions the others deleted and GC'd). Such a node
  resynchronises by the "forget" step of anti-entropy
  (`actors.anti_entropy.core.engine`): a peer whose horizon covers a key the node
  still holds tells it to forget that key, instead of accepting it back.
  Keep the grace period longer than any partition you want healed without loss.

The store is pure: time arrives as `now` (seconds, any monotonic origin).
"""

from __future__ import annotations

import enum
from collections import deque
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from typing import Any

import msgpack

from actors.core.hash64 import h64
from transport.protocol import (
    MAX_KEY_LEN,
    ApplyResult,
    LamportClock,
    Order,
    ProtocolError,
    SyncableState,
    check_id,
    check_u63,
    compare_states,
    is_tombstone,
    make_syncable_state,
    state_key,
)
from transport.validate import MAX_COUNTER, MAX_ID_LEN

StateKey = tuple[str, str]
Position = tuple[int, str, str]  # (bucket, state_type, key): the order digests are chunked in
DIGEST_BUCKETS = 256  # part of the wire protocol: every node must use the same number
DEFAULT_TOMBSTONE_GRACE_S = 7200.0  # chitchat / Quickwit use 2 h
SNAPSHOT_FORMAT = 1
# Distinct type and writer names a store shares one object of (a few per cluster; the
# bound only keeps a flood of made-up writer ids from growing the table for ever).
MAX_SHARED_NAMES = 4096


class Verdict(enum.StrEnum):  # str: hashed in C, it is looked up per state
    """What `Store.check` says about one incoming state."""

    APPLY = "apply"  # newer than the held state, or a key not held: store it
    CONFLICT_APPLY = "conflict_apply"  # same version, other writer, incoming wins: store it
    CONFLICT_KEEP = "conflict_keep"  # same version, other writer, held wins: keep held
    SAME = "same"  # the held state itself (a duplicate): nothing to do
    STALE = "stale"  # older than the held state: rejected
    BELOW_HORIZON = "below_horizon"  # key not held, version <= GC horizon: rejected
    INVALID = "invalid"  # malformed: rejected


STORED = frozenset({Verdict.APPLY, Verdict.CONFLICT_APPLY})
_BY_ORDER = {
    Order.NEWER: Verdict.APPLY,
    Order.OLDER: Verdict.STALE,
    Order.SAME: Verdict.SAME,
    Order.CONFLICT_WIN: Verdict.CONFLICT_APPLY,
    Order.CONFLICT_LOSE: Verdict.CONFLICT_KEEP,
}
# Which ApplyResult field a verdict counts in (SAME counts nowhere: duplicates are normal).
_COUNTED_AS = {
    Verdict.APPLY: "applied",
    Verdict.CONFLICT_APPLY: "conflicts",
    Verdict.CONFLICT_KEEP: "conflicts",
    Verdict.STALE: "rejected",
    Verdict.BELOW_HORIZON: "rejected",
    Verdict.INVALID: "rejected",
}


class StoreSnapshotError(ValueError):
    """A store snapshot that is not what `Store.snapshot` writes; `.reason` is a slug."""

    def __init__(self, reason: str) -> None:
        super().__init__(f"malformed store snapshot (reason={reason})")
        self.reason = reason


@dataclass(frozen=True, slots=True)
class Summary:
    """Number of entries and the XOR of their 64-bit hashes (tombstones included)."""

    count: int
    hash: int


def _h64(*parts: Any) -> int:
    return h64(msgpack.packb(parts, use_bin_type=True))


def bucket_of(state_type: str, key: str) -> int:
    """The summary bucket of a key; stable across its versions."""
    return _h64(state_type, key) % DIGEST_BUCKETS


def position(state_type: str, key: str) -> Position:
    return (bucket_of(state_type, key), state_type, key)


def entry_hash(state: SyncableState) -> int:
    """What an entry contributes to its bucket's XOR (the value is not hashed:
    a writer never issues two values under one version)."""
    return _h64(state.state_type, state.key, state.version, state.source_node)


def empty_result() -> ApplyResult:
    return ApplyResult(applied=0, conflicts=0, rejected=0)


def count_verdict(result: ApplyResult, verdict: Verdict) -> None:
    field = _COUNTED_AS.get(verdict)
    if field is not None:
        result[field] += 1  # type: ignore[literal-required]


def _well_formed(state: object) -> bool:
    """`check_id` of the ids and `check_counter` of the version, as one expression: it
    runs for every state every store sees, and the calls cost more than the checks."""
    if not isinstance(state, SyncableState):
        return False
    t, k, src, v = state.state_type, state.key, state.source_node, state.version
    return (isinstance(t, str) and 0 < len(t) <= MAX_ID_LEN
            and isinstance(k, str) and 0 < len(k) <= MAX_KEY_LEN
            and isinstance(src, str) and 0 < len(src) <= MAX_ID_LEN
            and isinstance(v, int) and not isinstance(v, bool) and 0 <= v <= MAX_COUNTER)


class Store:
    """Versioned map (state_type, key) -> SyncableState; see the module docstring."""

    def __init__(self, tombstone_grace_s: float = DEFAULT_TOMBSTONE_GRACE_S, *,
                 summarised: bool = True) -> None:
        """`summarised=False` keeps no hashes, only the bucket of each key: for a
        provider's own table, which anti-entropy never summarises but reads a bucket
        slice at a time (`digest_in`), it saves two of three hashes per change;
        `summary` and `bucket_hashes` then raise."""
        if not tombstone_grace_s > 0:
            raise ValueError("tombstone_grace_s must be greater than 0")
        self.tombstone_grace_s = float(tombstone_grace_s)
        self.summarised = summarised
        self._clear()

    def _clear(self) -> None:
        self._states: dict[StateKey, SyncableState] = {}
        # When each held tombstone was stored here; decides when gc() may drop it.
        self._tomb_at: dict[StateKey, float] = {}
        # (stored_at, key) in storing order, so gc() pops expired tombstones in O(1)
        # each; entries whose tombstone was replaced since are skipped lazily.
        self._tomb_queue: deque[tuple[float, StateKey]] = deque()
        # Per state_type: the highest version of a tombstone GC'd (or forgotten) here.
        self._horizons: dict[str, int] = {}
        self._bucket_hash = [0] * DIGEST_BUCKETS
        self._bucket_keys: list[set[StateKey]] = [set() for _ in range(DIGEST_BUCKETS)]
        self._hash = 0
        self._names: dict[str, str] = {}  # state types and writers, one object each

    # -- reading ---------------------------------------------------------------------
    def __len__(self) -> int:
        return len(self._states)

    def get(self, state_type: str, key: str) -> SyncableState | None:
        """The held state (a tombstone included), or None."""
        return self._states.get((state_type, key))

    def items(self, state_type: str | None = None) -> list[SyncableState]:
        """Every held state of `state_type` (all types if None), tombstones included."""
        if state_type is None:
            return list(self._states.values())
        return [s for s in self._states.values() if s.state_type == state_type]

    def digest(self, state_type: str | None = None) -> dict[StateKey, int]:
        return {state_key(s): s.version for s in self.items(state_type)}

    def digest_in(self, buckets: Iterable[int], state_type: str | None = None
                  ) -> dict[StateKey, int]:
        """`digest(state_type)` restricted to keys in `buckets`: O(keys in them)."""
        states = self._states
        return {skey: states[skey].version for b in set(buckets) if 0 <= b < DIGEST_BUCKETS
                for skey in self._bucket_keys[b] if state_type is None or skey[0] == state_type}

    def bucket_slices(self, max_keys: int) -> list[list[int]]:
        """Every bucket, in order, cut into runs holding at most `max_keys` keys here
        (a bucket larger than that alone): the pieces of a walk over the whole table."""
        slices: list[list[int]] = [[]]
        keys = 0
        for bucket in range(DIGEST_BUCKETS):
            size = len(self._bucket_keys[bucket])
            if slices[-1] and keys + size > max_keys:
                slices.append([])
                keys = 0
            slices[-1].append(bucket)
            keys += size
        return slices

    def summary(self) -> Summary:
        self._need_summary()
        return Summary(len(self._states), self._hash)

    def bucket_hashes(self) -> dict[int, int]:
        """bucket -> XOR of its entries' hashes, for non-empty buckets only."""
        self._need_summary()
        return {b: h for b, h in enumerate(self._bucket_hash) if self._bucket_keys[b]}

    def positions_in(self, buckets: Iterable[int]) -> list[Position]:
        """Sorted positions of the held keys that fall in `buckets`."""
        found = [(b, t, k) for b in set(buckets) if 0 <= b < DIGEST_BUCKETS
                 for (t, k) in self._bucket_keys[b]]
        found.sort()
        return found

    def count_in(self, buckets: Iterable[int]) -> int:
        """How many held keys fall in `buckets` (a digest's cost, before building it)."""
        return sum(len(self._bucket_keys[b]) for b in set(buckets) if 0 <= b < DIGEST_BUCKETS)

    def horizon(self, state_type: str) -> int:
        """Versions <= this are rejected for keys not held (0: nothing GC'd yet)."""
        return self._horizons.get(state_type, 0)

    def horizons(self) -> dict[str, int]:
        return dict(self._horizons)

    # -- deciding and applying ---------------------------------------------------------
    def check(self, state: SyncableState, *, enforce_horizon: bool = True) -> Verdict:
        """Read-only verdict for `state` against what is held."""
        if not _well_formed(state):
            return Verdict.INVALID
        held = self._states.get(state_key(state))
        if held is not None:
            return _BY_ORDER[compare_states(state, held)]
        if enforce_horizon and state.version <= self.horizon(state.state_type):
            return Verdict.BELOW_HORIZON
        return Verdict.APPLY

    def apply_one(self, state: SyncableState, now: float, *,
                  enforce_horizon: bool = True) -> Verdict:
        """Check `state` and store it if the verdict says so; return the verdict."""
        verdict = self.check(state, enforce_horizon=enforce_horizon)
        if verdict in STORED:
            self._put(state, now)
        return verdict

    def apply(self, states: Iterable[SyncableState], now: float, *,
              enforce_horizon: bool = True) -> tuple[ApplyResult, list[SyncableState]]:
        """Apply a batch in order.

        Returns:
            The counts (applied: stored newer or new; conflicts: equal version and
            another writer, won or lost; rejected: older, malformed or below the
            horizon; duplicates count nowhere) and the states that were stored.
        """
        result, changed = empty_result(), []
        for state in states:
            verdict = self.apply_one(state, now, enforce_horizon=enforce_horizon)
            count_verdict(result, verdict)
            if verdict in STORED:
                changed.append(state)
        return result, changed

    def write(self, state_type: str, key: str, value: Any, clock: LamportClock,
              node_id: str, now: float) -> SyncableState:
        """A local write (value None deletes); always newer than what is held.

        The clock first witnesses the held version and the type's horizon, so
        the new version beats the held state and is not below the horizon.
        Raises: ProtocolError (a ValueError) for an invalid type, key or value.
        """
        bucket_of(state_type, key)  # fail on an unhashable key before ticking the clock
        held = self._states.get((state_type, key))
        clock.update(max(held.version if held else 0, self.horizon(state_type)))
        state = make_syncable_state(state_type, key, value, clock.next(), node_id)
        self._put(state, now)
        return state

    def forget(self, state_type: str, key: str, version: int) -> SyncableState | None:
        """Drop the held entry if its version is <= `version`; raise the horizon to cover it.

        Used when a peer's horizon shows the key was deleted and GC'd there.
        Returns the dropped state, or None if nothing (or something newer) is held.
        """
        held = self._states.get((state_type, key))
        if held is None or held.version > version:
            return None
        self._remove((state_type, key))
        self._raise_horizon(state_type, held.version)
        return held

    def gc(self, now: float) -> int:
        """Drop tombstones stored at least `tombstone_grace_s` ago; return how many.

        Expects `now` not to go backwards between calls; if it does, a tombstone
        may be collected late, never early.
        """
        removed = 0
        queue = self._tomb_queue
        while queue and queue[0][0] + self.tombstone_grace_s <= now:
            stored_at, skey = queue.popleft()
            if self._tomb_at.get(skey) != stored_at:
                continue  # replaced or removed since: not the tombstone queued then
            state = self._states[skey]
            self._remove(skey)
            self._raise_horizon(skey[0], state.version)
            removed += 1
        return removed

    # -- internals --------------------------------------------------------------------
    def _need_summary(self) -> None:
        if not self.summarised:
            raise RuntimeError("this store was made with summarised=False")

    def _raise_horizon(self, state_type: str, version: int) -> None:
        if version > self._horizons.get(state_type, 0):
            self._horizons[state_type] = version

    def _fold(self, state: SyncableState, bucket: int) -> None:
        """XOR an entry into (or, applied again, out of) its bucket and the total."""
        h = entry_hash(state)
        self._bucket_hash[bucket] ^= h
        self._hash ^= h

    def _shared(self, state: SyncableState) -> SyncableState:
        """`state` with its type and writer as the one string object held for each: a
        decoded message brings fresh copies of them with every state, which would cost
        over 100 bytes per held key (see MAX_SHARED_NAMES)."""
        names = self._names
        stype = names.get(state.state_type)
        source = names.get(state.source_node)
        if stype is None or source is None:
            if len(names) >= MAX_SHARED_NAMES:
                return state
            stype = names.setdefault(state.state_type, state.state_type)
            source = names.setdefault(state.source_node, state.source_node)
        if stype is state.state_type and source is state.source_node:
            return state
        return SyncableState(stype, state.key, state.value, state.version, source)

    def _put(self, state: SyncableState, now: float) -> None:
        state = self._shared(state)
        skey = state_key(state)
        held = self._states.get(skey)
        if held is None or self.summarised:
            bucket = bucket_of(*skey)
            self._bucket_keys[bucket].add(skey)
            if self.summarised:
                if held is not None:
                    self._fold(held, bucket)  # XOR out the old entry
                self._fold(state, bucket)
        self._states[skey] = state
        if is_tombstone(state):
            self._tomb_at[skey] = now
            self._tomb_queue.append((now, skey))
        else:
            self._tomb_at.pop(skey, None)

    def _remove(self, skey: StateKey) -> None:
        held = self._states.pop(skey)
        bucket = bucket_of(*skey)
        self._bucket_keys[bucket].discard(skey)
        if self.summarised:
            self._fold(held, bucket)
        self._tomb_at.pop(skey, None)

    # -- persistence ------------------------------------------------------------------
    def snapshot(self, now: float) -> dict[str, Any]:
        """Plain msgpack-native form: {"format", "horizons", "states"}.

        Each state is [state_type, key, value, version, source_node, age] where
        age is how long ago a tombstone was stored (None for a value), so the
        grace period survives a restart whatever the monotonic clock's origin.
        """
        rows = self.snapshot_rows(list(self._states), now)
        return {"format": SNAPSHOT_FORMAT, "horizons": dict(self._horizons), "states": rows}

    def snapshot_rows(self, keys: Iterable[StateKey], now: float) -> list[list[Any] | None]:
        """The snapshot rows of `keys`; None for a key no longer held (restore skips it)."""
        rows: list[list[Any] | None] = []
        for skey in keys:
            s = self._states.get(skey)
            if s is None:
                rows.append(None)
                continue
            age = None if s.value is not None else max(0.0, now - self._tomb_at[skey])
            rows.append([s.state_type, s.key, s.value, s.version, s.source_node, age])
        return rows

    def snapshot_in_pieces(self) -> SnapshotPieces:
        """The same snapshot as `snapshot()`, as msgpack bytes made a slice at a time."""
        return SnapshotPieces(self, list(self._states))

    def restore(self, snapshot: Mapping[str, Any], now: float) -> None:
        """Replace the contents with a `snapshot()`. Raises: StoreSnapshotError."""
        rows, horizons = _parse_snapshot(snapshot)
        self._clear()
        # Oldest tombstones first, so the GC queue stays in time order.
        for state, age in sorted(rows, key=lambda row: -(row[1] or 0.0)):
            self._put(state, now - (age or 0.0))
        self._horizons = horizons


class SnapshotPieces:
    """A store's snapshot encoded a slice of keys at a time, so writing a large one never
    holds up the caller's loop. The key list is taken at the start; a key removed since
    is written as None (skipped on restore), one added since is left out (the mirror is
    refilled from its providers anyway), and the horizons are taken at the end, so they
    cover every tombstone collected while the pieces were made. The concatenated bytes
    decode to exactly what `Store.snapshot` returns, None rows aside."""

    def __init__(self, store: Store, keys: list[StateKey]) -> None:
        self._store, self._keys, self._at = store, keys, 0
        packer = msgpack.Packer(use_bin_type=True)
        self._head = (packer.pack_map_header(3) + packer.pack("format")
                      + packer.pack(SNAPSHOT_FORMAT) + packer.pack("states")
                      + packer.pack_array_header(len(keys)))

    @property
    def done(self) -> bool:
        return self._head == b"" and self._at > len(self._keys)

    def next(self, now: float, rows: int) -> bytes:
        """The next piece: at most `rows` rows (the header first, the horizons last)."""
        head, self._head = self._head, b""
        if self._at >= len(self._keys):
            self._at = len(self._keys) + 1
            packer = msgpack.Packer(use_bin_type=True)
            return head + packer.pack("horizons") + packer.pack(dict(self._store._horizons))
        keys = self._keys[self._at:self._at + rows]
        self._at += len(keys)
        packer = msgpack.Packer(use_bin_type=True, autoreset=False)
        for row in self._store.snapshot_rows(keys, now):
            packer.pack(row)
        return head + packer.bytes()


def _parse_snapshot(snapshot: object) -> tuple[list[tuple[SyncableState, float | None]],
                                               dict[str, int]]:
    if not isinstance(snapshot, Mapping) or snapshot.get("format") != SNAPSHOT_FORMAT:
        raise StoreSnapshotError("bad_format")
    raw_h, raw_rows = snapshot.get("horizons"), snapshot.get("states")
    if not isinstance(raw_h, Mapping) or not isinstance(raw_rows, list):
        raise StoreSnapshotError("bad_layout")
    try:
        horizons = {check_id(t, "type"): check_u63(v, "horizon") for t, v in raw_h.items()}
        rows = [_parse_row(row) for row in raw_rows if row is not None]
    except ProtocolError as exc:
        raise StoreSnapshotError(exc.reason) from None
    return rows, horizons


def _parse_row(row: object) -> tuple[SyncableState, float | None]:
    if not isinstance(row, (list, tuple)) or len(row) != 6:
        raise ProtocolError("bad_row")
    state = make_syncable_state(*row[:5])
    age = row[5]
    if age is not None and (isinstance(age, bool) or not isinstance(age, (int, float))):
        raise ProtocolError("bad_age")
    return state, (None if age is None else float(age))
