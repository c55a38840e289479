"""A discrete-event simulator: many `Membership` cores on a virtual clock and a fake network.

Theory of operation: one event heap ordered by (time, insertion). Each node
has at most one live wake-up, at its core's `next_deadline()`; rescheduling
bumps a per-node generation so a stale wake-up is ignored. Every message is
encoded and decoded by the real codec (`transport.codec`, imported lazily;
the protocol's map form is the fallback), then delivered after a seeded
random delay, or lost, or duplicated, or held back by a partition.

Node fates model what the shell would see:

* crashed: its messages are dropped; every node that had connected to it
  gets `connection_refused` shortly after (TCP reset, nothing listens), and
  so does any node that tries to send to it later;
* paused (SIGSTOP): it neither ticks nor handles, messages to it are queued
  (the kernel still accepts them) and handled in order on resume; no refusal;
* partitioned: messages across groups vanish; no refusal.

The shell's handling order is reproduced: on a wake-up, inbound messages
due by then are handled before `tick`.
"""

from __future__ import annotations

import functools
import heapq
import importlib
import random
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from typing import Any

from actors.membership.core.swim import MemberEvent, Membership, Outbound
from actors.membership.core.timing import PROFILES, MembershipTiming
from transport.protocol import (
    GossipMessage,
    NodeInfo,
    gossip_message_to_map,
    map_to_gossip_message,
)

CLUSTER = "sim"


def _load_codec() -> tuple[Callable[[GossipMessage], Any], Callable[[Any], GossipMessage]]:
    """Round-trip functions: the real codec when present, else the protocol maps."""
    try:
        codec = importlib.import_module("transport.codec")
    except ImportError:
        return gossip_message_to_map, map_to_gossip_message
    return (lambda m: codec.encode(m, CLUSTER)), (lambda b: codec.decode_untrusted(b, CLUSTER))


@dataclass(frozen=True)
class NetConfig:
    """Fake network behaviour; probabilities per message, delays in seconds."""

    loss: float = 0.0
    duplicate: float = 0.0
    delay_min_s: float = 0.0005
    delay_max_s: float = 0.003
    refusal_delay_s: float = 0.005  # from a crash (or a connect attempt) to the shell's report


@dataclass
class SimNode:
    core: Membership
    info: NodeInfo
    fate: str = "up"  # up | crashed | paused
    held: list[GossipMessage] = field(default_factory=list)  # inbox while paused
    connected: set[str] = field(default_factory=set)  # node ids we have sent to
    refused: set[str] = field(default_factory=set)  # refusals reported, not yet cleared
    generation: int = 0


@dataclass(frozen=True)
class Observation:
    time: float
    observer: str
    event: MemberEvent


class SimNet:
    """N membership cores, a virtual clock, a seeded lossy network."""

    def __init__(self, seed: int, profile: str | MembershipTiming = "test",
                 net: NetConfig = NetConfig()) -> None:
        self.seed = seed
        self.timing = PROFILES[profile] if isinstance(profile, str) else profile
        self.net = net
        self.rng = random.Random(seed)
        self.now = 0.0
        self.nodes: dict[str, SimNode] = {}
        self._by_address: dict[str, str] = {}
        self._heap: list[tuple[float, int, Callable[[], None]]] = []
        self._counter = 0
        self._groups: dict[str, int] = {}  # node id -> partition group; empty = no partition
        self.observations: list[Observation] = []
        self.messages = 0
        self._encode, self._decode = _load_codec()

    # --- set-up ------------------------------------------------------------

    def add_node(self, node_id: str, seeds: Iterable[str] = (), at: float | None = None) -> SimNode:
        """Create a node; it joins `seeds` (addresses) at time `at` (default now)."""
        info = NodeInfo(node_id, f"tcp://{node_id}.sim:7946", {})
        core = Membership(info, self.timing, random.Random(self.rng.random()), self.now)
        node = SimNode(core, info)
        self.nodes[node_id] = node
        self._by_address[info.address] = node_id
        seed_list = list(seeds)
        self._at(self.now if at is None else at, lambda: self._join(node, seed_list))
        return node

    def add_cluster(self, n: int, stagger_s: float = 0.0, prefix: str = "n") -> list[str]:
        """Nodes n0..n{n-1}, each joining n0, started `stagger_s` apart."""
        ids = [f"{prefix}{i}" for i in range(n)]
        first = self.add_node(ids[0])
        for i, node_id in enumerate(ids[1:], start=1):
            self.add_node(node_id, [first.info.address], at=self.now + i * stagger_s)
        return ids

    def _join(self, node: SimNode, seeds: list[str]) -> None:
        self._send(node, node.core.join(seeds, self.now))
        self._reschedule(node)

    # --- faults ------------------------------------------------------------

    def crash(self, node_id: str) -> None:
        node = self.nodes[node_id]
        node.fate = "crashed"
        node.generation += 1
        for other in self.nodes.values():
            if other.fate != "crashed" and node_id in other.connected:
                self._report_refusal(other, node_id)

    def pause(self, node_id: str) -> None:
        self.nodes[node_id].fate = "paused"
        self.nodes[node_id].generation += 1

    def resume(self, node_id: str) -> None:
        node = self.nodes[node_id]
        node.fate = "up"
        held, node.held = node.held, []
        for msg in held:
            self._send(node, node.core.handle(msg, self.now))
        self._wake(node, node.generation)

    def partition(self, *groups: Iterable[str]) -> None:
        self._groups = {nid: g for g, members in enumerate(groups) for nid in members}

    def heal(self) -> None:
        self._groups = {}

    # --- running -----------------------------------------------------------

    def schedule(self, at: float, action: Callable[[], None]) -> None:
        """Run `action` at virtual time `at` (scenario steps)."""
        self._at(at, action)

    def run_until(self, end: float, until: Callable[[], bool] | None = None,
                  check_every_s: float = 0.05) -> bool:
        """Advance to `end`, or until `until()` holds (checked every `check_every_s`)."""
        next_check = self.now
        while self._heap and self._heap[0][0] <= end:
            at, _, action = heapq.heappop(self._heap)
            self.now = max(self.now, at)
            action()
            if until is not None and self.now >= next_check:
                if until():
                    return True
                next_check = self.now + check_every_s
        self.now = max(self.now, end)
        return until() if until is not None else True

    def view(self, node_id: str) -> dict[str, str]:
        """node id -> status, as `node_id` sees the cluster."""
        return {m.node.node_id: m.status for m in self.nodes[node_id].core.members()}

    def up(self) -> list[str]:
        return [nid for nid, node in self.nodes.items() if node.fate == "up"]

    def first_event(self, observer: str, kind: str, about: str) -> float | None:
        for obs in self.observations:
            if obs.observer == observer and obs.event.kind == kind and \
                    obs.event.node.node_id == about:
                return obs.time
        return None

    # --- internals -----------------------------------------------------------

    def _at(self, at: float, action: Callable[[], None]) -> None:
        self._counter += 1
        heapq.heappush(self._heap, (at, self._counter, action))

    def _reschedule(self, node: SimNode) -> None:
        self._collect(node)
        node.generation += 1
        deadline = node.core.next_deadline()
        if deadline is not None and node.fate == "up":
            gen = node.generation
            self._at(max(deadline, self.now), lambda: self._wake(node, gen))

    def _wake(self, node: SimNode, generation: int) -> None:
        if node.fate != "up" or generation != node.generation:
            return
        self._send(node, node.core.tick(self.now))
        self._reschedule(node)

    def _collect(self, node: SimNode) -> None:
        for event in node.core.drain_events():
            self.observations.append(Observation(self.now, node.info.node_id, event))

    def _send(self, src: SimNode, outbound: list[Outbound]) -> None:
        for out in outbound:
            self.messages += 1
            dst_id = self._by_address.get(out.address)
            if dst_id is None:
                continue
            dst = self.nodes[dst_id]
            src.connected.add(dst_id)
            if dst.fate == "crashed":
                self._report_refusal(src, dst_id)
                continue
            if dst_id in src.refused:
                src.refused.discard(dst_id)
                src.core.connection_ok(dst_id, self.now)
            self._transmit(src.info.node_id, dst, out.message)

    def _transmit(self, src_id: str, dst: SimNode, msg: GossipMessage) -> None:
        if self._groups and self._groups.get(src_id) != self._groups.get(dst.info.node_id):
            return
        copies = 2 if self.rng.random() < self.net.duplicate else 1
        wire = self._encode(msg)
        for _ in range(copies):
            if self.rng.random() < self.net.loss:
                continue
            delay = self.rng.uniform(self.net.delay_min_s, self.net.delay_max_s)
            self._at(self.now + delay, functools.partial(self._deliver, dst, wire))

    def _deliver(self, dst: SimNode, wire: Any) -> None:
        msg = self._decode(wire)
        if dst.fate == "crashed":
            return
        if dst.fate == "paused":
            dst.held.append(msg)
            return
        self._send(dst, dst.core.handle(msg, self.now))
        self._reschedule(dst)

    def _report_refusal(self, src: SimNode, dst_id: str) -> None:
        if dst_id in src.refused:
            return
        src.refused.add(dst_id)

        def report() -> None:
            if src.fate == "up":
                self._send(src, src.core.connection_refused(dst_id, self.now))
                self._reschedule(src)

        self._at(self.now + self.net.refusal_delay_s, report)
