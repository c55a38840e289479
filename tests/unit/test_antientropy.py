"""Unit tests of actors.anti_entropy.core.engine: sessions between cores pumped in-process.

Every message goes through the real codec (encode, decode_untrusted), so sizes
are the bytes a peer would receive.
"""

from __future__ import annotations

import itertools
import random
from collections import defaultdict, deque
from dataclasses import dataclass, field
from typing import Any

import pytest

from actors.anti_entropy.core import engine
from actors.anti_entropy.core.engine import (
    DIRECT_PUSH_MAX,
    RESEND_HOLD_ROUNDS,
    STREAM_ROUNDS,
    AntiEntropy,
    AntiEntropyConfig,
    HandleResult,
    Outbound,
    ae_config_for,
)
from actors.core.store import Store
from transport.codec import decode_untrusted, encode
from transport.protocol import (
    GossipMessage,
    LamportClock,
    SyncableState,
    make_message,
    make_syncable_state,
    pull_message,
    state_key,
)
from transport.settings import SettingsError
from transport.validate import COUNTER_SOFT_MAX, MAX_COUNTER

CLUSTER = "test"
GRACE = 100.0
CFG = AntiEntropyConfig(tombstone_grace_s=GRACE)


def st(version: int, source: str = "a", value: Any = "v", key: str = "k") -> SyncableState:
    return make_syncable_state("kv", key, value, version, source)


@dataclass
class Node:
    id: str
    store: Store
    ae: AntiEntropy


def make_node(node_id: str, config: AntiEntropyConfig = CFG, seed: int = 0) -> Node:
    store = Store(config.tombstone_grace_s)
    return Node(node_id, store, AntiEntropy(node_id, store, config, random.Random(seed),
                                            LamportClock()))


@dataclass
class Wire:
    """Delivers outbound messages in order through the codec, recording each one."""

    nodes: dict[str, Node]
    sent: list[tuple[GossipMessage, int]] = field(default_factory=list)
    to_apply: dict[str, list[SyncableState]] = field(default_factory=lambda: defaultdict(list))

    def run(self, outs: list[Outbound], now: float = 0.0) -> None:
        queue = deque(outs)
        while queue:
            out = queue.popleft()
            data = encode(out.message, CLUSTER)
            msg = decode_untrusted(data, CLUSTER)
            self.sent.append((msg, len(data)))
            result = self.nodes[out.peer].ae.handle(msg, now)
            assert all(r.peer != out.peer for r in result.replies)
            self.to_apply[out.peer].extend(result.to_apply)
            queue.extend(result.replies)


def pair(config: AntiEntropyConfig = CFG) -> tuple[Node, Node, Wire]:
    a, b = make_node("a", config), make_node("b", config, seed=1)
    return a, b, Wire({"a": a, "b": b})


def session(wire: Wire, initiator: Node, peer: Node, now: float = 0.0) -> None:
    assert initiator.ae.next_deadline() <= now  # a round is due
    wire.run(initiator.ae.tick(now, [peer.id]), now)


def same_store(a: Node, b: Node) -> bool:
    return (a.store.summary() == b.store.summary()
            and sorted(a.store.items(), key=state_key) == sorted(b.store.items(), key=state_key))


# -- configuration ----------------------------------------------------------------------
def test_ae_config_for_maps_the_config_keys_onto_the_fields() -> None:
    assert ae_config_for({}) == AntiEntropyConfig()
    cfg = ae_config_for({"interval_ms": 250, "fanout": 3, "push_fanout": 0, "push_hops": 2,
                         "max_chunk_bytes": 65536, "max_states_per_message": 10,
                         "tombstone_grace_s": 60})
    assert (cfg.interval_s, cfg.fanout, cfg.push_fanout, cfg.push_hops) == (0.25, 3, 0, 2)
    assert (cfg.max_chunk_bytes, cfg.max_states_per_message, cfg.tombstone_grace_s) == (
        65536, 10, 60.0)


@pytest.mark.parametrize(("overrides", "text"), [
    ({"intervl_ms": 5}, "intervl_ms: unknown key"),
    ({"fanout": "2"}, "fanout: must be an integer"),
    ({"fanout": True}, "fanout: must be an integer"),
    ({"fanout": 0}, "fanout: must be between"),
    ({"interval_ms": 1.5e9}, "interval_ms: must be between"),
    ({"max_chunk_bytes": 100}, "max_chunk_bytes: must be between"),
    ({"max_chunk_bytes": 1 << 30}, "max_chunk_bytes: must be between"),
    ({"tombstone_grace_s": float("nan")}, "tombstone_grace_s: must be a finite number"),
])
def test_ae_config_for_names_the_bad_key(overrides: dict[str, Any], text: str) -> None:
    with pytest.raises(SettingsError, match=text) as info:
        ae_config_for(overrides)
    assert info.value.key == text.split(":")[0]


# -- rounds -----------------------------------------------------------------------------
def test_a_round_starts_at_the_first_tick_and_then_once_per_interval() -> None:
    a = make_node("a")
    first = a.ae.tick(10.0, ["b", "c", "d", "a"])
    assert len(first) == 2 and {o.peer for o in first} <= {"b", "c", "d"}
    assert all(o.message.msg_type == "summary" for o in first)
    assert a.ae.next_deadline() == 11.0
    assert a.ae.tick(10.5, ["b"]) == []
    assert len(a.ae.tick(11.0, ["b"])) == 1


@pytest.mark.parametrize("keys", [10, 10_000])
def test_an_in_sync_pair_exchanges_one_short_summary_whatever_the_number_of_keys(
        keys: int) -> None:
    a, b, wire = pair()
    states = [st(i + 1, "ab"[i % 2], i, f"key-{i}") for i in range(keys)]
    a.store.apply(states, 0.0)
    b.store.apply(states, 0.0)
    session(wire, a, b)
    session(wire, b, a, 1.0)
    assert [m.msg_type for m, _ in wire.sent] == ["summary", "summary"]
    assert all(size < 100 for _, size in wire.sent)
    assert b.ae.counters["in_sync"] == a.ae.counters["in_sync"] == 1


def test_differing_pairs_converge_in_one_session_both_ways() -> None:
    a, b, wire = pair()
    a.store.apply([st(i, "a", f"a{i}", f"k{i}") for i in range(1, 300)], 0.0)
    b.store.apply([st(i + 1, "b", f"b{i}", f"k{i}") for i in range(150, 500)], 0.0)
    b.store.apply([st(900, "b", None, "k3")], 0.0)  # a delete a has not seen
    session(wire, a, b)
    assert same_store(a, b)
    assert a.store.get("kv", "k3").value is None  # type: ignore[union-attr]
    assert {s.key for s in wire.to_apply["a"]} >= {"k3", "k499"}
    assert {s.key for s in wire.to_apply["b"]} >= {"k1", "k149"}


def test_an_equal_version_conflict_resolves_to_the_greater_source_on_both_nodes() -> None:
    a, b, wire = pair()
    a.store.apply([st(7, "node-a", "from a")], 0.0)
    b.store.apply([st(7, "node-b", "from b")], 0.0)
    session(wire, a, b)
    assert a.store.get("kv", "k") == b.store.get("kv", "k") == st(7, "node-b", "from b")
    a2, b2, wire2 = pair()  # same result whoever starts
    a2.store.apply([st(7, "node-a", "from a")], 0.0)
    b2.store.apply([st(7, "node-b", "from b")], 0.0)
    session(wire2, b2, a2)
    assert a2.store.get("kv", "k") == st(7, "node-b", "from b")


def test_only_the_differing_buckets_are_compared_key_by_key() -> None:
    a, b, wire = pair()
    states = [st(i + 1, "a", i, f"key-{i}") for i in range(10_000)]
    a.store.apply(states, 0.0)
    b.store.apply(states, 0.0)
    b.store.apply([st(20_000, "b", "new", "key-42")], 0.0)
    session(wire, a, b)
    assert same_store(a, b)
    assert 0 < a.ae.counters["digest_entries_sent"] < 200  # ~10,000 / 256 per bucket
    assert sum(size for _, size in wire.sent) < 10_000


def test_chunks_respect_the_byte_and_count_bounds_and_still_converge() -> None:
    cfg = AntiEntropyConfig(max_chunk_bytes=4096, max_states_per_message=7,
                            tombstone_grace_s=GRACE)
    a, b, wire = pair(cfg)
    rng = random.Random(3)
    a.store.apply([st(i, "a", "x" * rng.randrange(1500), f"k{i}") for i in range(1, 300)], 0.0)
    b.store.apply([st(i, "b", i, f"b-key-{i:04d}" * 8) for i in range(1, 200)], 0.0)
    session(wire, a, b)
    assert same_store(a, b) and len(a.store) == 299 + 199
    assert len(wire.sent) > 80
    for msg, size in wire.sent:
        assert size <= 4096
        assert len(msg.states) <= 7 and len(msg.digest or {}) <= 7


def test_a_state_larger_than_the_bound_travels_alone() -> None:
    cfg = AntiEntropyConfig(max_chunk_bytes=4096, tombstone_grace_s=GRACE)
    a, b, wire = pair(cfg)
    a.store.apply([st(1, value="x" * 6000, key="big"), st(2, key="small")], 0.0)
    session(wire, a, b)
    assert same_store(a, b)
    carrying_big = [m for m, _ in wire.sent if any(s.key == "big" for s in m.states)]
    assert len(carrying_big) == 1 and len(carrying_big[0].states) == 1


# -- fast push --------------------------------------------------------------------------
def spread_fast_push(seed: int, count: int = 10) -> tuple[set[str], list[int]]:
    ids = [f"n{i}" for i in range(count)]
    nodes = {i: make_node(i, seed=seed * 100 + n) for n, i in enumerate(ids)}
    wire = Wire(nodes)
    for n in nodes.values():
        n.ae.set_peers(ids)
    fresh = st(1, "n0", "hello")
    wire.run(nodes["n0"].ae.local_changes([fresh], 0.0, ids))
    hops = [int(m.payload["hops"]) for m, _ in wire.sent]  # type: ignore[index]
    return {i for i, n in nodes.items() if n.store.get("kv", "k") == fresh}, hops


def test_a_fast_push_reaches_ten_nodes_within_the_hop_bound() -> None:
    complete = 0
    for seed in range(50):
        reached, hops = spread_fast_push(seed)
        assert all(1 <= h <= CFG.push_hops for h in hops)
        assert len(hops) <= CFG.push_fanout * len(reached)  # each holder pushes once at most
        complete += len(reached) == 10
    assert complete == 50  # `seen` steers forwards to nodes the push has not reached


def test_a_fresh_change_goes_straight_to_every_peer_of_a_small_cluster() -> None:
    reached, hops = spread_fast_push(seed=1, count=20)
    assert len(reached) == 20 and hops == [1] * 19  # one message each, none forwarded


def test_a_fresh_change_in_a_large_cluster_goes_to_push_fanout_peers_that_forward() -> None:
    ids = [f"n{i}" for i in range(DIRECT_PUSH_MAX + 2)]
    a = make_node("n0")
    outs = a.ae.local_changes([st(1, "n0")], 0.0, ids)
    assert len(outs) == CFG.push_fanout
    assert {o.message.payload["hops"] for o in outs} == {CFG.push_hops}  # type: ignore[index]


def test_while_changes_stream_only_one_repair_round_in_stream_rounds_starts() -> None:
    a = make_node("a")
    peers = ["a", "b", "c"]
    started = []
    for i in range(3 * STREAM_ROUNDS):
        now = i * CFG.interval_s
        a.ae.local_changes([st(i + 1, "a", key=f"k{i}")], now, peers)  # a steady stream
        started.append(bool(a.ae.tick(now, peers)))
    assert sum(started) == 3
    after = 3 * STREAM_ROUNDS * CFG.interval_s + 2 * CFG.interval_s
    assert a.ae.tick(after, peers)  # the stream is over: this round is not deferred
    # Nothing changed since the stream's last round: the next one comes two intervals on.
    assert not a.ae.tick(after + CFG.interval_s, peers)
    assert a.ae.tick(after + 2 * CFG.interval_s, peers)


def _round_times(node: Node, peers: list[str], until: float) -> list[float]:
    """When rounds start, ticking every 0.5 interval up to `until`."""
    t, out = node.ae.next_deadline(), []
    while t <= until:
        if node.ae.tick(t, peers):
            out.append(t)
        t += CFG.interval_s / 2
    return out


def test_a_node_in_sync_spaces_its_rounds_up_to_eight_intervals() -> None:
    a = make_node("a")
    peers = ["a", "b", "c"]
    times = _round_times(a, peers, 40.0)
    gaps = [round(later - earlier, 1) for earlier, later in itertools.pairwise(times)]
    assert gaps[:5] == [1.0, 2.0, 4.0, 8.0, 8.0]  # the first round sees a new mirror
    assert a.ae.counters["rounds_spaced_quiet"] >= 4


@pytest.mark.parametrize("stir", ["local write", "peer disagrees", "new peer", "repair"])
def test_anything_new_brings_the_next_round_back_within_one_interval(stir: str) -> None:
    a, b = make_node("a"), make_node("b")
    peers = ["a", "b", "c"]
    last = _round_times(a, peers, 20.0)[-1]
    assert a.ae.next_deadline() == last + 8 * CFG.interval_s  # backed off
    now = last + 0.5
    if stir == "local write":
        a.ae.local_changes([st(7, "a", key="fresh")], now, peers)
    elif stir == "peer disagrees":
        b.store.apply([st(9, "b", key="theirs")], now)
        mine = b.store.summary()
        syn = make_message("summary", "b", "a", payload={
            "ae": "syn", "count": mine.count, "hash": mine.hash, "horizon": {}})
        assert a.ae.handle(syn, now).replies  # a answers with its buckets
    elif stir == "new peer":
        assert a.ae.tick(now, [*peers, "d"]) == []  # a member joined: no round yet
    else:
        a.ae.handle(make_message("push", "b", "a", [st(9, "b", key="theirs")],
                                 payload={"ae": "delta"}), now)
    assert a.ae.next_deadline() <= now + CFG.interval_s


def test_changes_are_counted_by_how_they_arrived() -> None:
    b = make_node("b")
    b.ae.set_peers(["a", "b"])
    b.ae.handle(make_message("push", "a", "b", [st(5)], payload={"ae": "fast", "hops": 1}),
                0.0)
    b.ae.handle(make_message("push", "a", "b", [st(6, key="j")], payload={"ae": "delta"}), 0.0)
    assert (b.ae.counters["arrived_by_push"], b.ae.counters["arrived_by_repair"]) == (1, 1)


def test_a_fast_push_is_never_sent_back_to_its_sender_or_forwarded_twice() -> None:
    a, b, c = make_node("a"), make_node("b"), make_node("c")
    for n in (a, b, c):
        n.ae.set_peers(["a", "b", "c"])
    push = make_message("push", "a", "b", [st(5)], payload={"ae": "fast", "hops": 3})
    first = b.ae.handle(push, 0.0)
    assert [o.peer for o in first.replies] == ["c"] and first.to_apply == [st(5)]
    assert first.replies[0].message.payload == {"ae": "fast", "hops": 2, "seen": ["a", "b", "c"]}
    assert b.ae.handle(push, 0.0).replies == []  # a duplicate is not new: not forwarded
    last = make_message("push", "a", "c", [st(6)], payload={"ae": "fast", "hops": 1})
    assert c.ae.handle(last, 0.0).replies == []


def test_local_changes_enter_the_mirror_even_below_the_horizon() -> None:
    a = make_node("a")
    a.store.apply([st(10, value=None, key="gone")], 0.0)
    a.store.gc(GRACE)
    outs = a.ae.local_changes([st(3, key="late")], GRACE, ["b", "c", "d", "e"])
    assert a.store.get("kv", "late") == st(3, key="late")
    assert len(outs) == 4 and all(o.message.payload["hops"] == 1 for o in outs)  # type: ignore[index]


# -- forgetting what a peer deleted and collected -------------------------------------
def returning_pair() -> tuple[Node, Node, Wire]:
    """`a` still holds k@5; `b` deleted k (tombstone @8) and collected the tombstone."""
    a, b, wire = pair()
    a.store.apply([st(5), st(1, key="other")], 0.0)
    b.store.apply([st(8, "b", None), st(1, key="other")], 0.0)
    b.store.gc(GRACE)
    return a, b, wire


@pytest.mark.parametrize("initiator", ["a", "b"])
def test_a_node_back_after_the_grace_period_forgets_what_was_deleted(initiator: str) -> None:
    a, b, wire = returning_pair()
    first, second = (a, b) if initiator == "a" else (b, a)
    session(wire, first, second, GRACE)
    assert a.store.get("kv", "k") is None and b.store.get("kv", "k") is None
    assert same_store(a, b)
    assert wire.to_apply["a"] == [SyncableState("kv", "k", None, 6, "a")]  # for the provider
    assert a.ae.counters["forgotten"] == 1


def test_a_stale_fast_push_below_the_horizon_is_answered_with_forget() -> None:
    a, b, wire = returning_pair()
    push = make_message("push", "a", "b", [st(5)], payload={"ae": "fast", "hops": 3})
    wire.run([Outbound("b", push)], GRACE)
    assert b.store.get("kv", "k") is None and a.store.get("kv", "k") is None
    assert b.ae.counters["states_rejected"] == 1


def test_a_tombstone_collected_on_one_side_is_not_copied_back() -> None:
    a, b, wire = pair()
    a.store.apply([st(8, "b", None)], 50.0)  # a got the delete later: still holds it
    b.store.apply([st(8, "b", None)], 0.0)
    b.store.gc(GRACE)
    session(wire, b, a, GRACE)
    assert a.store.get("kv", "k") is None and b.store.get("kv", "k") is None
    assert wire.to_apply["a"] == [] and same_store(a, b)


# -- clock, seed messages and hostile input ---------------------------------------------
def test_the_clock_witnesses_received_versions_and_peer_horizons() -> None:
    a = make_node("a")
    a.ae.handle(make_message("push", "b", "a", [st(100)]), 0.0)
    assert a.ae.clock.current() == 100
    syn = {"ae": "syn", "count": 0, "hash": 0, "horizon": {"kv": 500}}
    a.ae.handle(make_message("summary", "b", "a", payload=syn), 0.0)
    assert a.ae.clock.current() == 500


def test_a_plain_seed_pull_is_answered_with_what_the_sender_lacks() -> None:
    a = make_node("a")
    a.store.apply([st(3, key="x"), st(4, key="y")], 0.0)
    result = a.ae.handle(pull_message("b", {("kv", "x"): 3, ("kv", "z"): 9}, target="a"), 0.0)
    [reply] = result.replies
    assert reply.message.msg_type == "push-pull"
    assert [s.key for s in reply.message.states] == ["y"]
    assert dict(reply.message.digest or {}) == {("kv", "z"): 0}


def bad(msg_type: str, payload: dict[str, Any] | None, states: tuple[SyncableState, ...] = (),
        digest: dict[tuple[str, str], int] | None = None) -> GossipMessage:
    return make_message(msg_type, "b", "a", states, digest, payload)


DIGEST = {"ae": "digest", "buckets": [1], "after": None, "last": True, "srcs": ["b"], "src": [0]}


@pytest.mark.parametrize("msg", [
    bad("summary", None),
    bad("summary", {"ae": "what"}),
    bad("summary", {"ae": "syn", "count": "1", "hash": 0}),
    bad("summary", {"ae": "syn", "count": 1, "hash": -1}),
    bad("summary", {"ae": "syn", "count": 1, "hash": 1, "horizon": {"kv": "x"}}),
    bad("summary", {"ae": "buckets", "b": [[1]]}),
    bad("summary", {"ae": "buckets", "b": [[256, 1]]}),
    bad("pull", {**DIGEST, "src": []}, digest={("kv", "k"): 1}),
    bad("pull", {**DIGEST, "src": [3]}, digest={("kv", "k"): 1}),
    bad("pull", {**DIGEST, "last": False}),
    bad("pull", {**DIGEST, "after": [1, "kv"]}, digest={("kv", "k"): 1}),
    bad("pull", {**DIGEST, "buckets": "all"}, digest={("kv", "k"): 1}),
    bad("pull", {"ae": "fast"}),
    bad("push", {"ae": "slow"}, (st(1),)),
    bad("push", {"ae": "fast", "hops": True}, (st(1),)),
    bad("push", {"ae": "fast", "hops": 2, "seen": "c"}, (st(1),)),
    bad("push", {"ae": "delta", "forget": [["kv", "k"]]}, (st(1),)),
    bad("push", {"ae": "delta", "forget": [["kv", "k", -3]]}, (st(1),)),
])
def test_malformed_messages_are_counted_and_dropped_without_any_change(
        msg: GossipMessage) -> None:
    a = make_node("a")
    a.ae.set_peers(["b", "c"])
    assert a.ae.handle(msg, 0.0) == HandleResult()
    assert len(a.store) == 0
    assert sum(v for k, v in a.ae.counters.items() if k.startswith("dropped.")) == 1


def test_messages_for_another_node_or_from_itself_are_dropped() -> None:
    a = make_node("a")
    assert a.ae.handle(make_message("push", "b", "c", [st(1)]), 0.0) == HandleResult()
    assert a.ae.handle(make_message("push", "a", "a", [st(1)]), 0.0) == HandleResult()
    assert a.ae.handle(make_message("ping", "b", "a", payload={"seq": 1}), 0.0) == HandleResult()
    assert len(a.store) == 0 and a.ae.counters["dropped.misdirected"] == 2


# --- hostile peers: versions, store size, digest requests ---------------------------------
def _push(states: list[SyncableState], sender: str = "x", forget: Any = None) -> GossipMessage:
    payload: dict[str, Any] = {"ae": "delta"}
    if forget is not None:
        payload["forget"] = forget
    return decode_untrusted(encode(make_message("push", sender, "a", states, payload=payload),
                                   CLUSTER), CLUSTER)


def test_a_version_far_above_the_clock_is_neither_stored_nor_witnessed():
    a = make_node("a")
    a.ae.handle(_push([st(5, "x", key="ok"), st(MAX_COUNTER, "x", key="edge"),
                       st(COUNTER_SOFT_MAX + 2**17, "x", key="jump")]), 1.0)
    assert [s.key for s in a.store.items()] == ["ok"]
    assert a.ae.clock.current() == 5
    assert a.ae.counters["dropped.implausible_version"] == 2


def test_versions_climbing_past_the_soft_bound_step_by_step_are_believed():
    a = make_node("a")
    a.ae.handle(_push([st(COUNTER_SOFT_MAX + 2, "x", key="k2"), st(COUNTER_SOFT_MAX, "x"),
                       st(COUNTER_SOFT_MAX + 1, "x", key="k1")]), 1.0)
    assert len(a.store) == 3 and a.ae.clock.current() == COUNTER_SOFT_MAX + 2


@pytest.mark.parametrize("field", ["horizon", "forget"])
def test_a_forged_horizon_or_forget_far_above_the_clock_drops_the_message(field):
    a = make_node("a")
    a.store.apply([st(3, "a", key=f"k{i}") for i in range(5)], 0.0)
    if field == "forget":
        msg = _push([], forget=[["kv", "k0", MAX_COUNTER - 1]])
    else:
        msg = decode_untrusted(encode(make_message("pull", "x", "a", digest={}, payload={
            "ae": "digest", "buckets": [0], "after": None, "last": True, "srcs": [], "src": [],
            "horizon": {"kv": MAX_COUNTER - 1}}), CLUSTER), CLUSTER)
    result = a.ae.handle(msg, 1.0)
    assert result.replies == [] and len(a.store) == 5 and a.ae.clock.current() < 2**20
    assert a.ae.counters[f"dropped.implausible_{field}"] == 1


def test_remote_states_for_new_keys_stop_at_max_keys_but_updates_go_on():
    a = make_node("a", AntiEntropyConfig(tombstone_grace_s=GRACE, max_keys=10))
    a.ae.handle(_push([st(1, "x", key=f"k{i}") for i in range(25)]), 1.0)
    assert len(a.store) == 10 and a.ae.counters["dropped.store_full"] == 15
    a.ae.handle(_push([st(2, "x", key="k0")]), 2.0)
    assert a.store.get("kv", "k0").version == 2  # type: ignore[union-attr]


def test_whole_store_pulls_from_one_asker_are_cut_to_its_budget():
    a = make_node("a")
    a.store.apply([st(1, "a", key=f"k{i}") for i in range(2000)], 0.0)
    for i in range(50):  # seed pulls ("send me everything") ten a second
        pull = decode_untrusted(encode(pull_message("x", {}, target="a"), CLUSTER), CLUSTER)
        a.ae.handle(pull, 1.0 + i / 10)
    # burst 8 x (2,000 + 1,000) keys, refill 4 x 3,000 a second: 12 whole stores, then 6 a second
    answered = 50 - a.ae.counters["dropped.digest_rate"]
    assert 12 <= answered <= 12 + 6 * 5 + 1
    # and of the answered ones, only the first (and the first after the hold) sent states
    assert a.ae.counters["deltas_sent"] == 2 * 2000


def test_a_state_is_not_sent_to_the_same_peer_again_within_the_hold():
    # The peer's next digest still lacks what is queued for it: sending it again
    # would only lengthen its queue (recent.py).
    a = make_node("a")
    a.store.apply([st(1, "a", key=f"k{i}") for i in range(10)], 0.0)

    def pull(sender: str, at: float) -> int:
        msg = decode_untrusted(encode(pull_message(sender, {}, target="a"), CLUSTER), CLUSTER)
        return sum(len(r.message.states) for r in a.ae.handle(msg, at).replies)

    hold = RESEND_HOLD_ROUNDS * a.ae.config.interval_s
    assert pull("x", 1.0) == 10
    assert pull("x", 1.0 + hold / 2) == 0  # still held for x
    assert pull("y", 1.0 + hold / 2) == 10  # another peer is not
    a.store.apply([st(2, "a", key="k0")], 1.0 + hold / 2)
    assert pull("x", 1.0 + hold / 2) == 1  # a newer version is never held
    assert pull("x", 1.0 + hold) == 9  # the hold expired: a lost message gets repaired
    assert a.ae.counters["deltas_held"] == 10 + 9 + 1  # k0 at 2 is held in the last one


def test_a_busy_node_starts_no_session_and_answers_no_syn_but_takes_pushes() -> None:
    # Each session brings a digest to compare: a node that cannot keep up sheds
    # repair instead of queueing more of it, and the pair converges once it is idle.
    a, b, wire = pair()
    a.store.apply([st(1, "a", key=f"k{i}") for i in range(50)], 0.0)
    a.ae.busy = True
    assert a.ae.tick(0.0, ["b"]) == [] and a.ae.counters["rounds_skipped_busy"] == 1
    b.ae.busy = True
    wire.run(b.ae.tick(0.0, ["a"]), 0.0)  # b is busy too: its round is skipped
    a.ae.busy = False
    wire.run(a.ae.tick(1.0, ["b"]), 1.0)  # b sheds the syn
    assert b.ae.counters["syn_shed_busy"] == 1 and len(b.store) == 0
    wire.run(a.ae.local_changes([st(2, "a", key="fresh")], 1.0, ["b"]), 1.0)
    assert b.store.get("kv", "fresh") is not None  # pushes still land on a busy node
    b.ae.busy = False
    wire.run(a.ae.tick(2.0, ["b"]), 2.0)
    assert same_store(a, b)


def test_a_session_compares_a_bounded_share_of_a_large_difference_and_rounds_finish_it(
        monkeypatch: pytest.MonkeyPatch) -> None:
    """Each session's digest covers at most SESSION_DIGEST_KEYS keys on either side (here
    500): a node that lacks everything gets it over several sessions, never one huge step."""
    monkeypatch.setattr(engine, "SESSION_DIGEST_KEYS", 500)
    a, b, wire = pair()
    b.store.apply([st(i + 1, "b", i, f"key-{i}") for i in range(5_000)], 0.0)
    sessions = 0
    while not same_store(a, b):
        before = len(wire.sent)
        session(wire, a, b, now=float(sessions) * CFG.interval_s)
        sessions += 1
        for msg, _ in wire.sent[before:]:
            if msg.msg_type == "pull":
                assert len(msg.digest or {}) <= 500
        deltas = [m for m, _ in wire.sent[before:] if m.msg_type in ("push", "push-pull")]
        assert sum(len(m.states) for m in deltas) <= 500 + 100  # one bucket over, at most
        assert sessions < 200
    assert sessions >= 10
    assert a.ae.counters["session_buckets_deferred"] > 0
