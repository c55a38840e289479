"""Property: anti-entropy converges over a network that drops, duplicates and
reorders messages, versions never go backwards, and no delete is undone.

Each simulated node is wired the way the anti-entropy actor wires the core: a
mirror `Store` + `AntiEntropy`, and a `KvProvider` (with its own Lamport
clock, as in its own process) that receives `to_apply` and whose accepted
states flow back through `applied()`. Every message round-trips through the
real codec. Time is virtual; the tombstone grace period is short, so
tombstones are collected while messages are still in flight.
"""

from __future__ import annotations

import random
from dataclasses import dataclass, field
from typing import Any

from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from actors.anti_entropy.core.engine import AntiEntropy, AntiEntropyConfig, Outbound
from actors.core.store import Store
from actors.providers.kv import KvProvider
from transport.codec import decode_untrusted, encode
from transport.protocol import LamportClock, SyncableState, is_tombstone

CLUSTER = "prop"
GRACE = 5.0
CONFIG = AntiEntropyConfig(interval_s=1.0, fanout=2, push_fanout=2, push_hops=2,
                           max_chunk_bytes=4096, max_states_per_message=5,
                           tombstone_grace_s=GRACE)
KEYS = ("a", "b", "c", "d", "e")
FINAL_ROUNDS = 8


@dataclass
class SimNode:
    id: str
    mirror: Store
    ae: AntiEntropy
    kv: KvProvider
    # Invariant bookkeeping: highest version seen per key, highest deleted version per key.
    seen: dict[tuple[str, str], int] = field(default_factory=dict)
    deleted: dict[tuple[str, str], int] = field(default_factory=dict)


class Sim:
    def __init__(self, count: int, seed: int) -> None:
        self.ids = [f"n{i}" for i in range(count)]
        self.nodes = {i: self._node(i, seed + n) for n, i in enumerate(self.ids)}
        self.inflight: list[Outbound] = []
        self.now = 0.0

    @staticmethod
    def _node(node_id: str, seed: int) -> SimNode:
        mirror = Store(GRACE)
        ae = AntiEntropy(node_id, mirror, CONFIG, random.Random(seed), LamportClock())
        kv = KvProvider(node_id, LamportClock(), {"tombstone_grace_s": GRACE})
        return SimNode(node_id, mirror, ae, kv)

    def peers(self, node_id: str) -> list[str]:
        return [i for i in self.ids if i != node_id]

    # -- what the shells do -------------------------------------------------------------
    def write(self, node_id: str, key: str, value: Any) -> None:
        node = self.nodes[node_id]
        node.kv.clock.update(node.ae.clock.current())  # the recommended clock forwarding
        state = node.kv.set(key, value, self.now) if value is not None else node.kv.delete(
            key, self.now)
        self.inflight += node.ae.local_changes([state], self.now, self.peers(node_id))

    def tick(self, node_id: str) -> None:
        node = self.nodes[node_id]
        node.kv.gc(self.now)
        self.inflight += node.ae.tick(self.now, self.peers(node_id))

    def deliver(self, out: Outbound) -> None:
        node = self.nodes[out.peer]
        msg = decode_untrusted(encode(out.message, CLUSTER), CLUSTER)
        result = node.ae.handle(msg, self.now)
        if result.to_apply:
            node.kv.clock.update(node.ae.clock.current())
            node.kv.apply_remote(result.to_apply, self.now)
            node.ae.applied(result.to_apply, self.now)
        self.inflight += result.replies

    def drain(self, limit: int = 20_000) -> int:
        delivered = 0
        while self.inflight:
            self.deliver(self.inflight.pop(0))
            delivered += 1
            assert delivered < limit, "message storm"
        return delivered

    # -- invariants ---------------------------------------------------------------------
    def check_invariants(self) -> None:
        for node in self.nodes.values():
            for state in [*node.mirror.items(), *node.kv.get_sync_state()]:
                skey = (state.state_type, state.key)
                assert state.version >= node.seen.get(skey, 0), ("version went back", state)
                node.seen[skey] = max(node.seen.get(skey, 0), state.version)
                if is_tombstone(state):
                    node.deleted[skey] = max(node.deleted.get(skey, 0), state.version)
                else:
                    assert state.version >= node.deleted.get(skey, 0), ("resurrected", state)

    def run_final_rounds(self) -> None:
        for _ in range(FINAL_ROUNDS):
            self.now += CONFIG.interval_s
            for node_id in self.ids:
                self.tick(node_id)
                self.drain()
                self.check_invariants()


def live(states: list[SyncableState]) -> dict[str, Any]:
    return {s.key: (s.value, s.version, s.source_node) for s in states if not is_tombstone(s)}


OPS = st.one_of(
    st.tuples(st.just("write"), st.integers(0, 4), st.sampled_from(KEYS), st.integers(0, 99)),
    st.tuples(st.just("delete"), st.integers(0, 4), st.sampled_from(KEYS)),
    st.tuples(st.just("tick"), st.integers(0, 4)),
    st.tuples(st.just("deliver"), st.integers(0, 10_000),
              st.sampled_from(["ok", "ok", "ok", "drop", "dup"])),
    st.tuples(st.just("advance"), st.floats(0.1, 2 * GRACE)),
)


def run_ops(sim: Sim, ops: list[tuple[Any, ...]]) -> None:
    for op in ops:
        match op:
            case ("write", n, key, value):
                sim.write(sim.ids[n % len(sim.ids)], key, value)
            case ("delete", n, key):
                sim.write(sim.ids[n % len(sim.ids)], key, None)
            case ("tick", n):
                sim.tick(sim.ids[n % len(sim.ids)])
            case ("deliver", index, mode) if sim.inflight:
                out = sim.inflight.pop(index % len(sim.inflight))
                if mode == "dup":
                    sim.inflight.append(out)  # delivered now, and again later
                if mode != "drop":
                    sim.deliver(out)
            case ("advance", dt):
                sim.now += dt
        sim.check_invariants()


@settings(max_examples=300, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(count=st.integers(3, 5), seed=st.integers(0, 2**16), ops=st.lists(OPS, max_size=120))
def test_nodes_converge_after_reliable_rounds_whatever_the_network_did(
        count: int, seed: int, ops: list[tuple[Any, ...]]) -> None:
    sim = Sim(count, seed)
    run_ops(sim, ops)
    sim.drain()  # the network turns reliable: what is in flight arrives
    sim.run_final_rounds()
    views = [live(n.mirror.items("kv")) for n in sim.nodes.values()]
    assert all(view == views[0] for view in views)
    assert all(live(n.kv.get_sync_state()) == views[0] for n in sim.nodes.values())

    # Once every tombstone is past its grace period the stores are identical.
    sim.now += GRACE + 1.0
    sim.run_final_rounds()
    stores = [sorted((s.key, s.version, s.source_node, s.value is None)
                     for s in n.mirror.items()) for n in sim.nodes.values()]
    assert all(store == stores[0] for store in stores)
    assert len({n.mirror.summary() for n in sim.nodes.values()}) == 1
    sim.now = sim.nodes[sim.ids[0]].ae.next_deadline()
    sim.tick(sim.ids[0])
    assert sim.drain() == CONFIG.fanout  # in sync: only the summaries travel
