"""Mirror versus provider a slice of buckets at a time (actors.anti_entropy.core.reconcile)."""

from __future__ import annotations

import pytest
from hypothesis import given, settings
from hypothesis import strategies as hs

from actors.anti_entropy.core import reconcile
from actors.anti_entropy.core.reconcile import (
    NewerInProvider,
    Walk,
    compare_slice,
    read_digest_rows,
)
from actors.core.store import DIGEST_BUCKETS, Store
from transport.protocol import make_syncable_state

# (type index, key, version) rows for the mirror and the provider.
ROWS = hs.lists(hs.tuples(hs.integers(0, 1), hs.integers(0, 60), hs.integers(1, 9)),
                max_size=150)
TYPES = ("bulk", "kv")


def store_of(rows: list[tuple[int, int, int]]) -> Store:
    store = Store()
    for t, k, v in rows:
        store.apply([make_syncable_state(TYPES[t], f"k{k}", "x", v, "n")], 0.0)
    return store


@settings(max_examples=80, deadline=None)
@given(ROWS, ROWS, hs.integers(1, 40))
def test_walking_every_slice_finds_what_the_whole_table_comparison_finds(
        mirror_rows: list[tuple[int, int, int]], provider_rows: list[tuple[int, int, int]],
        slice_keys: int) -> None:
    mirror, provider = store_of(mirror_rows), store_of(provider_rows)
    held = provider.digest("bulk")
    lacking_whole = {s.key for s in mirror.items("bulk")
                     if held.get((s.state_type, s.key), -1) < s.version}
    newer_whole = any(v > mirror.digest("bulk").get(k, -1) for k, v in held.items())
    with pytest.MonkeyPatch.context() as mp:
        mp.setattr(reconcile, "SLICE_KEYS", slice_keys)
        walk = Walk(mirror)
    lacking, newer, covered = set(), False, []
    while (buckets := walk.next_slice()) is not None:
        covered += buckets
        assert sum(mirror.count_in((b,)) for b in buckets) <= slice_keys or len(buckets) == 1
        # the provider answers with its digest of the slice only
        verdict = compare_slice(mirror, "bulk", buckets, provider.digest_in(buckets, "bulk"))
        lacking |= {s.key for s in verdict.lacking}
        newer = newer or bool(verdict.newer)
    assert covered == list(range(DIGEST_BUCKETS))
    assert lacking == lacking_whole and newer == newer_whole


def test_a_provider_that_ignores_the_slice_is_judged_on_the_slice_only() -> None:
    mirror = store_of([(0, 1, 5)])
    provider = store_of([(0, k, 9) for k in range(60)])
    bucket = next(b for b in range(DIGEST_BUCKETS) if mirror.count_in((b,)))
    elsewhere = [b for b in range(DIGEST_BUCKETS)
                 if b != bucket and not provider.count_in((b,))][:1]
    assert not compare_slice(mirror, "bulk", elsewhere, provider.digest("bulk")).newer
    verdict = compare_slice(mirror, "bulk", [bucket], provider.digest("bulk"))
    assert verdict.newer == [(("bulk", "k1"), 9)] and verdict.lacking == []


def test_digest_rows_are_read_leniently() -> None:
    assert read_digest_rows("nope") is None
    assert read_digest_rows([["bulk", "a", 3], ["bulk", "b"], ["bulk", "c", True], 7]) == {
        ("bulk", "a"): 3}


def test_only_what_stays_newer_in_the_provider_for_a_whole_walk_asks_for_a_refill() -> None:
    newer = NewerInProvider()
    in_flight, lost = (("bulk", "a"), 5), (("bulk", "b"), 7)
    assert not newer.confirmed([in_flight, lost])  # first seen: may be on its way
    newer.walk_done()
    assert not newer.confirmed([(("bulk", "a"), 6)])  # rewritten since: on its way again
    assert newer.confirmed([lost])  # still newer a walk later: the mirror lacks it
    newer.walk_done()
    assert not newer.confirmed([in_flight])  # a walk without it: forgotten


def test_suspects_are_bounded(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(reconcile, "SUSPECTS_MAX", 3)
    newer = NewerInProvider()
    newer.confirmed([(("bulk", f"k{i}"), 1) for i in range(10)])
    assert len(newer.current) == 3


def test_a_restarted_walk_goes_on_from_where_it_was_and_still_covers_every_bucket(
        monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(reconcile, "SLICE_KEYS", 20)
    mirror = store_of([(0, k, 1) for k in range(60)] + [(1, k, 1) for k in range(60)])
    walk = Walk(mirror)
    first = [walk.next_slice(), walk.next_slice()]
    going_on = walk.slices[0]
    walk.restart(mirror)
    assert walk.slices[0] == going_on  # goes on, not back to the start
    covered = [b for s in walk.slices for b in s]
    assert sorted(covered) == list(range(DIGEST_BUCKETS)) and first[0] in walk.slices
