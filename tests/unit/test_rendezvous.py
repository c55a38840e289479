"""Rendezvous hashing: deterministic, balanced, and only a leaver's keys move."""

from __future__ import annotations

from collections import Counter

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from actors.core.rendezvous import Ownership, owner, owners, weight

NODES = ["node-a", "node-b", "node-c", "node-d", "node-e"]
KEYS = [f"backend-{i}" for i in range(1000)]
SETTINGS = settings(max_examples=200, deadline=None)


# Golden values: every process of every release must agree, so a change here
# (Python's salted hash(), another digest, another encoding) is a protocol break.
@pytest.mark.parametrize(("key", "ranking"), [
    ("web1", ["node-a", "node-b", "node-d", "node-c"]),
    ("api", ["node-c", "node-a", "node-b", "node-d"]),
    ("db", ["node-a", "node-d", "node-c", "node-b"]),
    ("cache", ["node-b", "node-a", "node-d", "node-c"]),
])
def test_rankings_match_the_pinned_blake2b_values(key, ranking):
    assert owners(key, ["node-a", "node-b", "node-c", "node-d"], 4) == ranking


def test_weight_is_a_pinned_64_bit_value():
    assert weight("web1", "node-a") == 15600084120162236114


def test_key_and_node_boundaries_do_not_collide():
    assert weight("ab", "c") != weight("a", "bc")


def test_owners_do_not_depend_on_the_order_or_duplicates_of_nodes():
    shuffled = ["node-c", "node-a", "node-e", "node-a", "node-b", "node-d"]
    for key in KEYS[:100]:
        assert owners(key, shuffled, 2) == owners(key, NODES, 2)


def test_keys_are_spread_evenly_over_nodes():
    counts = Counter(owner(key, NODES) for key in KEYS)
    assert set(counts) == set(NODES)
    assert all(150 <= n <= 250 for n in counts.values()), counts  # expected 200 each


def test_only_the_keys_of_a_leaving_node_move():
    before = {key: owner(key, NODES) for key in KEYS}
    remaining = [n for n in NODES if n != "node-c"]
    after = {key: owner(key, remaining) for key in KEYS}
    moved = {key for key in KEYS if before[key] != after[key]}
    assert moved == {key for key in KEYS if before[key] == "node-c"}
    for key in moved:  # each goes to the node that ranked second
        assert after[key] == owners(key, NODES, 2)[1]


def test_a_joining_node_takes_keys_only_for_itself():
    before = {key: owner(key, NODES[:4]) for key in KEYS}
    after = {key: owner(key, NODES) for key in KEYS}
    moved = [key for key in KEYS if before[key] != after[key]]
    assert moved
    assert all(after[key] == "node-e" for key in moved)


@SETTINGS
@given(key=st.text(max_size=20),
       nodes=st.lists(st.text(min_size=1, max_size=8), min_size=1, max_size=8, unique=True),
       count=st.integers(1, 4), data=st.data())
def test_removing_a_node_keeps_the_order_of_the_others(key, nodes, count, data):
    gone = data.draw(st.sampled_from(nodes))
    rest = [n for n in nodes if n != gone]
    expected = [n for n in owners(key, nodes, count + 1) if n != gone][:count]
    assert owners(key, rest, count) == expected


def test_asking_for_more_owners_than_nodes_returns_every_node():
    assert sorted(owners("k", ["x", "y"], 5)) == ["x", "y"]
    assert owners("k", [], 3) == []
    assert owner("k", []) is None


def test_an_owner_count_below_one_is_refused():
    with pytest.raises(ValueError, match="count"):
        owners("k", NODES, 0)


def test_ownership_always_counts_this_node_as_a_candidate():
    own = Ownership("node-a")
    assert own.nodes == ("node-a",)
    assert all(own.is_owner(key) for key in KEYS[:20])
    assert own.set_members(["node-b", "node-c"])
    assert own.nodes == ("node-a", "node-b", "node-c")
    assert not own.remove("node-a")
    assert own.nodes == ("node-a", "node-b", "node-c")


def test_ownership_reports_whether_the_candidate_set_changed():
    own = Ownership("node-a", replicas=2)
    assert own.set_members(NODES)
    assert not own.set_members(list(reversed(NODES)))
    assert own.remove("node-b")
    assert not own.remove("node-b")
    assert own.nodes == ("node-a", "node-c", "node-d", "node-e")


def test_ownership_matches_owners_and_knows_the_primary():
    own = Ownership("node-a", replicas=2)
    own.set_members(NODES)
    for key in KEYS[:200]:
        expected = owners(key, NODES, 2)
        assert own.owners_of(key) == expected
        assert own.is_owner(key) == ("node-a" in expected)
        assert own.is_primary(key) == (expected[0] == "node-a")


def test_ownership_refuses_zero_replicas():
    with pytest.raises(ValueError, match="replicas"):
        Ownership("node-a", replicas=0)
