"""A discrete-event simulation of N `Membership` cores in virtual time.

Theory of operation: one event heap ordered by (time, insertion counter),
one seeded `random.Random` for the network and one per core (drawn from it),
so a run is a pure function of its seed and parameters. Each node has at
most one live wake-up, at its core's `next_deadline()`; a wake-up is
superseded (generation bump) only when an earlier one is needed, because an
early `tick` is harmless and a late one is not. The shell's order is kept:
`handle`/`tick`, send what it returned, drain its events, reschedule.
Messages travel through the in-memory transport (`network.Network`).

A cluster can also start converged (`Sim.start_converged`): every core
adopts one shared `MemberView` of all the others alive (`Membership.adopt`)
instead of joining through the seeds, so its table costs one dict slot per
member until an entry changes. That is how 10,000 cores fit in memory; the
cores then run exactly as after a join.

Node fates, as the real shell (`actors/membership/actor.py`) would see them:

* crashed: it neither ticks nor handles; messages to it vanish. Each live
  node that had a connection to it (had sent to it: the shell keeps one
  DEALER per peer) gets `connection_refused` after `refusal_delay_s`, the
  reconnect-then-refused path; a node that never connected gets nothing
  (libzmq reports a refusal only after a connection was up).
  With `refusals` off a crash is a silent stop (the plain SWIM path).
* restarted: a fresh core for the same id (at an incarnation the caller
  gives) joins its seeds; nodes that had reported a refusal get
  `connection_ok` once they reconnect.
* paused (SIGSTOP): it neither ticks nor handles; the kernel still accepts
  its messages, so they are held and handled in order on resume, then it
  ticks. No refusal; connection news while paused is not modelled.
* slow (Lifeguard's scenario): inbound messages are handled in arrival
  order, each no earlier than its arrival plus a delay drawn from
  `slow_delay_s`; its timers still fire on time, so its own probes see late
  acks -- the case in which Lifeguard must keep it from failing healthy
  members.

Not modelled: the CPU cost of healthy nodes, the shell's bounded send
queues (HWM) and its event publishing.
"""

from __future__ import annotations

import heapq
import math
import random
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

from actors.membership.core.swim import Member, MemberEvent, Membership, MemberView, Outbound
from actors.membership.core.timing import MembershipTiming
from actors.testing.sim.network import Meter, NetModel, Network
from transport.protocol import GossipMessage, NodeInfo

_WAKE, _ARRIVE, _PROCESS, _REFUSED, _OK, _ACTION = range(6)

EventListener = Callable[[float, int, MemberEvent], None]  # (now, observer index, event)
SendTap = Callable[[int, int, GossipMessage], None]  # (sender index, receiver index, message)


@dataclass(eq=False)
class SimNode:
    """One simulated node: its core plus what its shell would know."""

    index: int
    info: NodeInfo
    core: Membership | None = None  # None until started
    up: bool = False
    slow: bool = False
    paused: bool = False
    held: list[tuple[int, Any]] = field(default_factory=list)  # inbound while paused
    life: int = 0  # bumped by crash/restart: messages sent to an older life are lost
    generation: int = 0  # supersedes pending wake-ups
    wake_at: float = math.inf
    busy_until: float = 0.0  # slow nodes: inbound handled in order, one after another
    # peers it holds a connection to, by index (a byte each: a set of ints would cost
    # ~50 bytes per pair, N^2 of them)
    connected: bytearray = field(default_factory=bytearray)
    refused: set[int] = field(default_factory=set)  # refusals reported, not withdrawn
    sent: int = 0
    sent_bytes: int = 0


class Sim:
    """N membership cores, n0..n{N-1}, on a virtual clock and a seeded, lossy network."""

    def __init__(self, n: int, timing: MembershipTiming, net: NetModel, seed: int) -> None:
        self.timing, self.net, self.seed = timing, net, seed
        self.rng = random.Random(seed)
        self.network = Network(net, self.rng)
        self.now = 0.0
        self.nodes = [SimNode(i, NodeInfo(f"n{i}", f"tcp://n{i}.sim:7946", {}))
                      for i in range(n)]
        self.index = {node.info.node_id: node.index for node in self.nodes}
        self._by_address = {node.info.address: node.index for node in self.nodes}
        self._heap: list[tuple[float, int, int, int, Any]] = []
        self._counter = 0
        self.listeners: list[EventListener] = []
        self.tap: SendTap | None = None
        self.handled = 0  # handle + tick calls, for progress and profiling
        self.retired_counters: dict[str, int] = {}  # counters of cores replaced by a restart

    @property
    def meter(self) -> Meter:
        return self.network.meter

    # --- node life -----------------------------------------------------------

    def start(self, i: int, at: float, seeds: list[int], incarnation: int = 0) -> None:
        """Start node `i` at time `at`; it joins `seeds` (node indices)."""
        self._push(at, _ACTION, i, lambda: self._boot(i, seeds, incarnation))

    def _boot(self, i: int, seeds: list[int], incarnation: int) -> None:
        node = self.nodes[i]
        if node.core is not None:  # a restart: keep the old process's counts
            for name, count in node.core.counters.items():
                self.retired_counters[name] = self.retired_counters.get(name, 0) + count
        rng = random.Random(self.rng.random())
        node.core = Membership(node.info, self.timing, rng, self.now, incarnation)
        self._fresh(node)
        addresses = [self.nodes[s].info.address for s in seeds if s != i]
        self._after(node, node.core.join(addresses, self.now))

    def _fresh(self, node: SimNode) -> None:
        node.up, node.busy_until = True, self.now
        # a fresh process holds no connections
        node.connected, node.refused = bytearray(len(self.nodes)), set()

    def start_converged(self, members: list[int]) -> None:
        """Start `members` now as a cluster that converged long ago: each core adopts
        one shared view of them all alive at incarnation 0 (`Membership.adopt`).

        They hold no connections yet (the shell dials on first send), so crash
        evidence comes only from members that sent to the victim since.
        """
        view = MemberView(Member(self.nodes[i].info, "alive", 0, self.now) for i in members)
        for i in members:
            node = self.nodes[i]
            node.core = Membership(node.info, self.timing, random.Random(self.rng.random()),
                                   self.now)
            node.core.adopt(view, self.now)
            self._fresh(node)
            self._after(node, [])

    def crash(self, i: int, refusals: bool) -> None:
        """Node `i` stops dead now; see the module docstring for `refusals`."""
        node = self.nodes[i]
        node.up, node.life, node.wake_at = False, node.life + 1, math.inf
        node.paused, node.held = False, []
        for other in self.nodes:
            if other.connected and other.connected[i]:
                other.connected[i] = 0
                if refusals and other.up:
                    delay = self.rng.uniform(*self.net.refusal_delay_s)
                    self._push(self.now + delay, _REFUSED, other.index, i)

    def restart(self, i: int, seeds: list[int], incarnation: int) -> None:
        """Start a fresh core for crashed node `i`; peers that saw a refusal reconnect."""
        for other in self.nodes:
            if i in other.refused:
                delay = self.rng.uniform(*self.net.refusal_delay_s)
                self._push(self.now + delay, _OK, other.index, i)
        self.start(i, self.now, seeds, incarnation)

    def pause(self, i: int) -> None:
        """Node `i` stops (SIGSTOP) now; see the module docstring."""
        node = self.nodes[i]
        node.paused, node.wake_at = True, math.inf

    def resume(self, i: int) -> None:
        """Node `i` continues (SIGCONT): it handles what it was sent meanwhile, then ticks."""
        node = self.nodes[i]
        node.paused = False
        held, node.held = node.held, []
        for data in held:
            self._process(node, data)
        if node.up:
            self._call(node, lambda core: core.tick(self.now))

    def set_metadata(self, i: int, metadata: dict[str, Any]) -> None:
        node = self.nodes[i]
        assert node.core is not None and node.up  # scenario bug otherwise
        self._after(node, node.core.set_metadata(metadata, self.now))

    def partition(self, groups: list[int] | None) -> None:
        """groups[i] is node i's side; None heals."""
        self.network.partition(groups)

    def schedule(self, at: float, action: Callable[[], None]) -> None:
        """Run `action` at virtual time `at` (scenario steps)."""
        self._push(at, _ACTION, -1, action)

    def reset_meter(self) -> None:
        self.network.reset_meter()
        for node in self.nodes:
            node.sent = node.sent_bytes = 0

    # --- looking -------------------------------------------------------------

    def up(self) -> list[int]:
        """Nodes started and not crashed (paused ones included)."""
        return [node.index for node in self.nodes if node.up]

    def view(self, i: int) -> dict[str, str]:
        """node id -> status, as node `i`'s core holds the cluster now."""
        core = self.nodes[i].core
        return {} if core is None else {m.node.node_id: m.status for m in core.members()}

    # --- running -------------------------------------------------------------

    def run_until(
        self,
        end: float,
        until: Callable[[], bool] | None = None,
        check_every_s: float = 0.05,
        progress: Callable[[Sim], None] | None = None,
    ) -> bool:
        """Advance to `end`, or until `until()` holds (checked every `check_every_s`).

        `progress` is called about every 10 s of wall time (long runs).
        """
        next_check, next_report = self.now, time.monotonic() + 10.0
        heap = self._heap
        while heap and heap[0][0] <= end:
            at, _, kind, i, data = heapq.heappop(heap)
            self.now = at
            self._dispatch(kind, i, data)
            if until is not None and at >= next_check:
                if until():
                    return True
                next_check = at + check_every_s
            if progress is not None and self.handled % 2048 == 0 and \
                    time.monotonic() >= next_report:
                progress(self)
                next_report = time.monotonic() + 10.0
        self.now = max(self.now, end)
        return until() if until is not None else True

    def _dispatch(self, kind: int, i: int, data: Any) -> None:
        if kind == _ACTION:
            data()
            return
        node = self.nodes[i]
        if kind == _ARRIVE:
            self._arrive(node, data)
        elif kind == _WAKE:
            if node.up and not node.paused and data == node.generation:
                node.wake_at = math.inf
                self._call(node, lambda core: core.tick(self.now))
        elif kind == _PROCESS:
            self._process(node, data)
        else:
            self._connection_news(node, data, refused=kind == _REFUSED)

    def _connection_news(self, node: SimNode, peer: int, refused: bool) -> None:
        if not node.up or node.paused:
            return
        peer_id = self.nodes[peer].info.node_id
        if refused:
            node.refused.add(peer)
            self._call(node, lambda core: core.connection_refused(peer_id, self.now))
        elif peer in node.refused and node.core is not None:
            node.refused.discard(peer)
            node.core.connection_ok(peer_id, self.now)
            self._after(node, [])

    # --- message path ----------------------------------------------------------

    def _call(self, node: SimNode, step: Callable[[Membership], list[Outbound]]) -> None:
        assert node.core is not None
        self.handled += 1
        self._after(node, step(node.core))

    def _after(self, node: SimNode, outbound: list[Outbound]) -> None:
        core = node.core
        assert core is not None
        self._send(node, outbound)
        events = core.drain_events()
        if events and self.listeners:
            for event in events:
                for listener in self.listeners:
                    listener(self.now, node.index, event)
        deadline = core.next_deadline()
        if deadline is not None and deadline < node.wake_at and not node.paused:
            node.generation += 1
            node.wake_at = max(deadline, self.now)
            self._push(node.wake_at, _WAKE, node.index, node.generation)

    def _send(self, src: SimNode, outbound: list[Outbound]) -> None:
        network = self.network
        for out in outbound:
            wire, size = network.encode(out.message)
            src.sent += 1
            src.sent_bytes += size
            j = self._by_address.get(out.address)
            if j is None:
                continue
            dst = self.nodes[j]
            if self.tap is not None:
                self.tap(src.index, j, out.message)
            if not dst.up:
                continue  # a dial to a dead address: no connection, no refusal
            src.connected[j] = 1
            for delay in network.delays(src.index, j):
                self._push(self.now + delay, _ARRIVE, j, (dst.life, wire))

    def _arrive(self, dst: SimNode, data: tuple[int, Any]) -> None:
        if not dst.up or data[0] != dst.life:
            return
        if dst.slow:
            at = max(self.now + self.rng.uniform(*self.net.slow_delay_s), dst.busy_until)
            dst.busy_until = at
            self._push(at, _PROCESS, dst.index, data)
            return
        self._process(dst, data)

    def _process(self, dst: SimNode, data: tuple[int, Any]) -> None:
        life, wire = data
        if not dst.up or life != dst.life:
            return
        if dst.paused:
            dst.held.append(data)
            return
        msg = self.network.decode(wire)
        self._call(dst, lambda core: core.handle(msg, self.now))

    def _push(self, at: float, kind: int, i: int, data: Any) -> None:
        self._counter += 1
        heapq.heappush(self._heap, (at, self._counter, kind, i, data))
