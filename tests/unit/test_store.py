"""Unit tests of actors.core.store: verdicts, counts, tombstones, GC horizon, summary."""

from __future__ import annotations

import random
from typing import Any

import pytest

from actors.core.store import (
    DIGEST_BUCKETS,
    Store,
    StoreSnapshotError,
    Summary,
    Verdict,
    bucket_of,
    entry_hash,
)
from transport.protocol import LamportClock, ProtocolError, SyncableState, make_syncable_state

GRACE = 10.0


def st(version: int, source: str = "a", value: Any = "v", key: str = "k",
       state_type: str = "kv") -> SyncableState:
    return make_syncable_state(state_type, key, value, version, source)


def tomb(version: int, source: str = "a", key: str = "k") -> SyncableState:
    return st(version, source, None, key)


def store_with(*states: SyncableState, now: float = 0.0) -> Store:
    store = Store(GRACE)
    result, _ = store.apply(states, now)
    assert result["rejected"] == 0
    return store


def recomputed(store: Store) -> tuple[Summary, dict[int, int]]:
    total, buckets = 0, [0] * DIGEST_BUCKETS
    for s in store.items():
        total ^= entry_hash(s)
        buckets[bucket_of(s.state_type, s.key)] ^= entry_hash(s)
    non_empty = {bucket_of(s.state_type, s.key) for s in store.items()}
    return Summary(len(store), total), {b: buckets[b] for b in non_empty}


@pytest.mark.parametrize(("held", "incoming", "verdict"), [
    (None, st(1), Verdict.APPLY),
    (st(5), st(4), Verdict.STALE),
    (st(5), st(5), Verdict.SAME),
    (st(5, "a"), st(5, "b", "other"), Verdict.CONFLICT_APPLY),
    (st(5, "b"), st(5, "a", "other"), Verdict.CONFLICT_KEEP),
    (st(5), st(6), Verdict.APPLY),
    (tomb(5), st(4), Verdict.STALE),
    (tomb(5), st(6), Verdict.APPLY),
    (st(5), tomb(6), Verdict.APPLY),
    (st(5), tomb(4), Verdict.STALE),
    (tomb(5, "a"), st(5, "b"), Verdict.CONFLICT_APPLY),
    (st(5, "b"), tomb(5, "a"), Verdict.CONFLICT_KEEP),
    (None, tomb(3), Verdict.APPLY),
])
def test_check_gives_the_verdict_of_the_version_order(
        held: SyncableState | None, incoming: SyncableState, verdict: Verdict) -> None:
    store = store_with(held) if held else Store(GRACE)
    assert store.check(incoming) is verdict
    assert store.get("kv", "k") == held  # check is read-only


@pytest.mark.parametrize("bad", [
    SyncableState("", "k", 1, 1, "a"),
    SyncableState("kv", "", 1, 1, "a"),
    SyncableState("kv", "k", 1, -1, "a"),
    SyncableState("kv", "k", 1, True, "a"),
    SyncableState("kv", "k", 1, 1, ""),
    SyncableState("kv", 7, 1, 1, "a"),  # type: ignore[arg-type]
    "not a state",
])
def test_malformed_states_are_invalid_and_counted_as_rejected(bad: Any) -> None:
    store = Store(GRACE)
    assert store.check(bad) is Verdict.INVALID
    result, changed = store.apply([bad], 0.0)
    assert result == {"applied": 0, "conflicts": 0, "rejected": 1}
    assert changed == [] and len(store) == 0


def test_apply_counts_applied_conflicts_and_rejected_and_ignores_duplicates() -> None:
    store = store_with(st(5, "b", key="x"), st(5, "a", key="y"), st(5, key="z"))
    batch = [st(6, key="x"), st(5, "c", key="y"), st(6, "0", key="x"),
             st(4, key="z"), st(5, key="z"), st(1, key="new")]
    result, changed = store.apply(batch, 0.0)
    assert result == {"applied": 2, "conflicts": 2, "rejected": 1}
    assert changed == [st(6, key="x"), st(5, "c", key="y"), st(1, key="new")]
    assert store.get("kv", "y") == st(5, "c", key="y")


def test_a_local_write_is_newer_than_the_held_state_and_the_horizon() -> None:
    store, clock = store_with(st(40, "z"), tomb(90, key="gone")), LamportClock()
    written = store.write("kv", "k", "mine", clock, "a", 0.0)
    assert written.version == 41 and written.source_node == "a"
    store.gc(GRACE)  # horizon of kv becomes 90
    other = store.write("kv", "fresh", 1, clock, "a", GRACE)
    assert other.version == 91
    deleted = store.write("kv", "k", None, clock, "a", GRACE)
    assert deleted.value is None and deleted.version == 92
    assert store.get("kv", "k") == deleted


def test_a_write_with_a_bad_value_raises_protocol_error() -> None:
    with pytest.raises(ProtocolError):
        Store(GRACE).write("kv", "k", {1: "non-str key"}, LamportClock(), "a", 0.0)


def test_tombstones_are_collected_after_the_grace_period_and_values_never() -> None:
    store = store_with(tomb(3, key="t"), st(2, key="v"), now=100.0)
    assert store.gc(100.0 + GRACE - 0.001) == 0
    assert store.gc(100.0 + GRACE) == 1
    assert store.get("kv", "t") is None and store.get("kv", "v") == st(2, key="v")
    assert store.horizon("kv") == 3
    assert store.gc(1e9) == 0


def test_a_stale_copy_of_a_collected_key_is_rejected_below_the_horizon() -> None:
    store = store_with(st(5, key="k"))
    store.apply([tomb(8, "b", key="k")], 1.0)
    store.gc(1.0 + GRACE)
    for stale in (st(5, key="k"), st(7, "c", key="k"), tomb(8, "b", key="k"), st(2, key="x")):
        assert store.check(stale) is Verdict.BELOW_HORIZON
    result, _ = store.apply([st(5, key="k")], 50.0)
    assert result["rejected"] == 1 and store.get("kv", "k") is None
    assert store.check(st(9, key="k")) is Verdict.APPLY  # a newer write is a real re-create
    assert store.check(st(5, key="k"), enforce_horizon=False) is Verdict.APPLY


def test_horizons_are_kept_per_state_type() -> None:
    store = store_with(st(50, value=None, state_type="health"))
    store.gc(GRACE)
    assert store.horizon("health") == 50 and store.horizon("kv") == 0
    assert store.check(st(3, state_type="kv")) is Verdict.APPLY
    assert store.check(st(3, state_type="health")) is Verdict.BELOW_HORIZON


def test_a_tombstone_replaced_before_its_grace_ends_is_not_collected() -> None:
    store = store_with(tomb(3), now=0.0)
    store.apply([st(4, value="back")], 1.0)
    store.apply([tomb(5)], 2.0)
    assert store.gc(GRACE + 1.0) == 0  # the queued tombstone of t=0 is gone
    assert store.gc(GRACE + 2.0) == 1 and store.horizon("kv") == 5


def test_forget_drops_an_entry_at_or_below_the_version_and_raises_the_horizon() -> None:
    store = store_with(st(4, key="old"), st(9, key="new"))
    assert store.forget("kv", "old", 6) == st(4, key="old")
    assert store.forget("kv", "new", 6) is None
    assert store.forget("kv", "absent", 6) is None
    assert store.get("kv", "old") is None and store.horizon("kv") == 4
    assert store.check(st(4, key="old")) is Verdict.BELOW_HORIZON


def random_operations(store: Store, seed: int = 0, steps: int = 3000) -> None:
    rng, clock = random.Random(seed), LamportClock()
    for step in range(steps):
        key, now = f"k{rng.randrange(200)}", step * 0.01
        match rng.randrange(5):
            case 0:
                store.write("kv", key, step, clock, rng.choice("abc"), now)
            case 1:
                store.write("kv", key, None, clock, "a", now)
            case 2:
                store.apply([st(rng.randrange(1, 3000), rng.choice("abc"), step, key)], now)
            case 3:
                store.forget("kv", key, rng.randrange(3000))
            case 4:
                store.gc(now)


def test_the_incremental_summary_equals_one_recomputed_from_scratch() -> None:
    store = Store(GRACE)
    random_operations(store)
    summary, buckets = recomputed(store)
    assert store.summary() == summary and store.bucket_hashes() == buckets


@pytest.mark.parametrize("seed", [0, 1, 2])
def test_a_store_without_summary_holds_exactly_what_a_summarised_one_holds(seed: int) -> None:
    summarised, plain = Store(GRACE), Store(GRACE, summarised=False)
    random_operations(summarised, seed)
    random_operations(plain, seed)
    assert plain.items() == summarised.items()
    assert plain.horizons() == summarised.horizons()
    assert plain.snapshot(30.0) == summarised.snapshot(30.0)
    # The bucket index stays: reconcile reads a provider's table a slice at a time.
    every = range(DIGEST_BUCKETS)
    assert plain.digest_in(every) == summarised.digest_in(every) == summarised.digest()
    assert plain.positions_in(every) == summarised.positions_in(every)
    assert plain.bucket_slices(50) == summarised.bucket_slices(50)
    for asks_for_summary in (plain.summary, plain.bucket_hashes):
        with pytest.raises(RuntimeError, match="summarised=False"):
            asks_for_summary()


def test_the_summary_does_not_depend_on_the_order_of_arrival() -> None:
    states = [st(v, src, v, f"k{v % 17}") for v in range(1, 60) for src in "ab"]
    forward, backward = Store(GRACE), Store(GRACE)
    forward.apply(states, 0.0)
    backward.apply(reversed(states), 0.0)
    assert forward.summary() == backward.summary()
    assert forward.digest() == backward.digest()
    assert Store(GRACE).summary() == Summary(0, 0)


def test_positions_in_lists_the_keys_of_the_given_buckets_in_order() -> None:
    store = store_with(*(st(1, key=f"k{i}") for i in range(100)))
    buckets = sorted(store.bucket_hashes())[:5]
    found = store.positions_in(buckets)
    assert found == sorted(found)
    assert {k for _, _, k in found} == {f"k{i}" for i in range(100)
                                         if bucket_of("kv", f"k{i}") in buckets}


def test_items_and_digest_filter_by_type_and_include_tombstones() -> None:
    store = store_with(st(1, key="a"), tomb(2, key="b"), st(3, key="c", state_type="health"))
    assert {s.key for s in store.items("kv")} == {"a", "b"}
    assert store.digest("health") == {("health", "c"): 3}
    assert len(store.items()) == 3


def test_snapshot_and_restore_keep_states_horizons_and_tombstone_ages() -> None:
    store = store_with(st(1, key="a", value={"x": [1, 2]}), tomb(9, key="old"), now=0.0)
    store.apply([tomb(7, key="gone")], 6.0)
    store.gc(GRACE)  # "old" (stored at 0) is collected: horizon 9
    snap = store.snapshot(now=GRACE)  # "gone" is 4 s old
    restored = Store(GRACE)
    restored.restore(snap, now=1000.0)  # another monotonic origin
    assert restored.summary() == store.summary() and restored.horizons() == {"kv": 9}
    assert restored.gc(1000.0 + GRACE - 4.001) == 0
    assert restored.gc(1000.0 + GRACE - 4.0) == 1


@pytest.mark.parametrize("snap", [
    None, {}, {"format": 2, "horizons": {}, "states": []},
    {"format": 1, "horizons": [], "states": []},
    {"format": 1, "horizons": {"kv": -1}, "states": []},
    {"format": 1, "horizons": {}, "states": [["kv", "k", 1, 1]]},
    {"format": 1, "horizons": {}, "states": [["kv", "k", 1, 1, "a", "old"]]},
])
def test_restoring_a_malformed_snapshot_raises_store_snapshot_error(snap: Any) -> None:
    with pytest.raises(StoreSnapshotError):
        Store(GRACE).restore(snap, 0.0)


def test_a_store_needs_a_positive_grace_period() -> None:
    with pytest.raises(ValueError, match="tombstone_grace_s"):
        Store(0)


def test_held_states_share_one_object_per_type_and_writer() -> None:
    store = Store()
    # strings built at run time, as a decoder makes them: equal, distinct objects
    states = [make_syncable_state("".join(["b", "ulk"]), f"k{i}", i, i + 1,
                                  "".join(["node", "-a"])) for i in range(3)]
    store.apply(states, 0.0)
    held = store.items()
    assert held == states  # the same states, by value
    assert len({id(s.state_type) for s in held}) == len({id(s.source_node) for s in held}) == 1


def test_names_beyond_the_bound_are_kept_as_they_come(monkeypatch: pytest.MonkeyPatch) -> None:
    from actors.core import store as store_module
    monkeypatch.setattr(store_module, "MAX_SHARED_NAMES", 2)
    store = Store()
    store.apply([make_syncable_state("kv", f"k{i}", i, 1, f"writer-{i}") for i in range(5)],
                0.0)
    assert sorted(s.source_node for s in store.items()) == [f"writer-{i}" for i in range(5)]
