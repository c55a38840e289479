"""A discrete-event network for thousands of `Membership` cores, in virtual time.

Theory of operation: one event heap ordered by (time, insertion counter),
one seeded `random.Random` for the network and one per core (drawn from it),
so a run is a pure function of its seed and parameters. Each node has at
most one live wake-up, at its core's `next_deadline()`; a wake-up is
superseded (generation bump) only when an earlier one is needed, because an
early `tick` is harmless and a late one is not. The shell's order is kept:
`handle`/`tick`, send what it returned, drain its events, reschedule.

Network model (`NetModel`), per message: latency drawn uniform or lognormal
in [min, max] (lognormal: median at the geometric middle, tail past max);
lost with probability `loss`; dropped across partition groups. Every message
is encoded by the real codec (`transport.codec.encode`) at the sender, whose
byte count is the traffic meter, and decoded with `decode_untrusted` at the
receiver, unless `codec` is off (then bytes are not measured).

A cluster can also start converged (`Sim.start_converged`): every core
adopts one shared `MemberView` of all the others alive (`Membership.adopt`)
instead of joining through the seeds, so its table costs one dict slot per
member until an entry changes. That is how 10,000 cores fit in memory; the
cores then run exactly as after a join.

Node fates, as the real shell (`actors/membership/actor.py`) would see them:

* crashed: it neither ticks nor handles; messages to it vanish. Each live
  node that had a connection to it (had sent to it: the shell keeps one
  DEALER per peer) gets `connection_refused` after `refusal_delay_s`, the
  reconnect-then-refused path; a node that never connected gets nothing.
  With `refusals` off a crash is a silent stop (the plain SWIM path).
* restarted: a fresh core for the same id (at an incarnation the caller
  gives) joins its seeds; nodes that had reported a refusal get
  `connection_ok` once they reconnect.
* slow (Lifeguard's scenario): inbound messages are handled in arrival
  order, each no earlier than its arrival plus a delay drawn from
  `slow_delay_s`; its timers still fire on time, so its own probes see late
  acks -- the case in which Lifeguard must keep it from failing healthy
  members.

Not modelled: bandwidth and queueing in the network, message reordering by
TCP (each message draws its own latency), CPU cost of healthy nodes, the
shell's bounded send queues (HWM) and its event publishing.
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
from transport.codec import decode_untrusted, encode
from transport.protocol import GossipMessage, NodeInfo

CLUSTER = "sim"
_WAKE, _ARRIVE, _PROCESS, _REFUSED, _OK, _ACTION = range(6)

EventListener = Callable[[float, int, MemberEvent], None]  # (now, observer index, event)
SendTap = Callable[[int, int, GossipMessage], None]  # (sender index, receiver index, message)


@dataclass
class NetModel:
    """Network behaviour; mutable so a scenario can change loss between phases."""

    latency: str = "uniform"  # uniform | lognormal
    latency_min_s: float = 0.0005
    latency_max_s: float = 0.005
    loss: float = 0.0
    slow_delay_s: tuple[float, float] = (0.5, 2.0)
    # The shell reconnects after RECONNECT_IVL (50 ms); the refusal comes a round trip later.
    refusal_delay_s: tuple[float, float] = (0.05, 0.1)
    codec: bool = True

    def draw_latency(self, rng: random.Random) -> float:
        lo, hi = self.latency_min_s, self.latency_max_s
        if self.latency == "lognormal":
            # ~95 % of draws inside [lo, hi]; the rest is a tail, floored at lo.
            mu, sigma = math.log(math.sqrt(lo * hi)), math.log(hi / lo) / 4
            return max(lo, rng.lognormvariate(mu, sigma))
        return rng.uniform(lo, hi)


@dataclass(eq=False)
class SimNode:
    """One simulated node: its core plus what its shell would know."""

    index: int
    info: NodeInfo
    core: Membership | None = None  # None until started
    up: bool = False
    slow: bool = False
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


@dataclass
class Meter:
    """Traffic since the last `Sim.reset_meter`: per type, all nodes together."""

    since: float = 0.0
    messages: dict[str, int] = field(default_factory=dict)
    bytes: dict[str, int] = field(default_factory=dict)
    largest: dict[str, int] = field(default_factory=dict)  # biggest message per type

    def add(self, msg_type: str, size: int) -> None:
        self.messages[msg_type] = self.messages.get(msg_type, 0) + 1
        self.bytes[msg_type] = self.bytes.get(msg_type, 0) + size
        if size > self.largest.get(msg_type, 0):
            self.largest[msg_type] = size


class Sim:
    """N membership cores on a virtual clock and a seeded, lossy network."""

    def __init__(self, n: int, timing: MembershipTiming, net: NetModel, seed: int) -> None:
        self.timing, self.net, self.seed = timing, net, seed
        self.rng = random.Random(seed)
        self.now = 0.0
        self.nodes = [SimNode(i, NodeInfo(f"n{i}", f"tcp://n{i}.sim:7946", {}))
                      for i in range(n)]
        self.index = {node.info.node_id: node.index for node in self.nodes}
        self._by_address = {node.info.address: node.index for node in self.nodes}
        self._heap: list[tuple[float, int, int, int, Any]] = []
        self._counter = 0
        self._groups: list[int] | None = None
        self.listeners: list[EventListener] = []
        self.tap: SendTap | None = None
        self.meter = Meter()
        self.handled = 0  # handle + tick calls, for progress and profiling
        self.retired_counters: dict[str, int] = {}  # counters of cores replaced by a restart

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

    def set_metadata(self, i: int, metadata: dict[str, Any]) -> None:
        node = self.nodes[i]
        assert node.core is not None and node.up  # scenario bug otherwise
        self._after(node, node.core.set_metadata(metadata, self.now))

    def partition(self, groups: list[int] | None) -> None:
        """groups[i] is node i's side; None heals."""
        self._groups = groups

    def schedule(self, at: float, action: Callable[[], None]) -> None:
        self._push(at, _ACTION, -1, action)

    def reset_meter(self) -> None:
        self.meter = Meter(since=self.now, largest=self.meter.largest)
        for node in self.nodes:
            node.sent = node.sent_bytes = 0

    # --- running -------------------------------------------------------------

    def run_until(
        self,
        end: float,
        until: Callable[[], bool] | None = None,
        check_every_s: float = 0.05,
        progress: Callable[[Sim], None] | None = None,
    ) -> bool:
        """Advance to `end`, or until `until()` holds (checked every `check_every_s`)."""
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
        node = self.nodes[i] if i >= 0 else None
        if kind == _ARRIVE:
            assert node is not None
            self._arrive(node, data)
        elif kind == _WAKE:
            assert node is not None
            if node.up and data == node.generation:
                node.wake_at = math.inf
                self._call(node, lambda core: core.tick(self.now))
        elif kind == _PROCESS:
            assert node is not None
            self._process(node, data)
        elif kind in (_REFUSED, _OK):
            assert node is not None
            self._connection_news(node, data, refused=kind == _REFUSED)
        else:
            data()

    def _connection_news(self, node: SimNode, peer: int, refused: bool) -> None:
        if not node.up:
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
        if deadline is not None and deadline < node.wake_at:
            node.generation += 1
            node.wake_at = max(deadline, self.now)
            self._push(node.wake_at, _WAKE, node.index, node.generation)

    def _send(self, src: SimNode, outbound: list[Outbound]) -> None:
        net = self.net
        for out in outbound:
            msg = out.message
            wire: Any = msg
            size = 0
            if net.codec:
                wire = encode(msg, CLUSTER)
                size = len(wire)
            src.sent += 1
            src.sent_bytes += size
            self.meter.add(msg.msg_type, size)
            j = self._by_address.get(out.address)
            if j is None:
                continue
            dst = self.nodes[j]
            if self.tap is not None:
                self.tap(src.index, j, msg)
            if not dst.up:
                continue  # a dial to a dead address: no connection, no refusal
            src.connected[j] = 1
            if self._groups is not None and self._groups[src.index] != self._groups[j]:
                continue
            if net.loss and self.rng.random() < net.loss:
                continue
            at = self.now + net.draw_latency(self.rng)
            self._push(at, _ARRIVE, j, (dst.life, wire))

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
        # The codec can be switched on for a metering window mid-run: decode what was encoded.
        msg = wire if isinstance(wire, GossipMessage) else decode_untrusted(wire, CLUSTER)
        self._call(dst, lambda core: core.handle(msg, self.now))

    def _push(self, at: float, kind: int, i: int, data: Any) -> None:
        self._counter += 1
        heapq.heappush(self._heap, (at, self._counter, kind, i, data))


class Views:
    """What every node believes, kept incrementally from the cores' events.

    `alive[i]` is how many other nodes observer i holds alive; `not_alive[i]`
    maps the others it knows in another status to that status. O(1) per
    event, so convergence can be checked often at any N.
    """

    def __init__(self, sim: Sim) -> None:
        n = len(sim.nodes)
        self._index = sim.index
        self.alive = [0] * n
        self.not_alive: list[dict[int, str]] = [{} for _ in range(n)]
        sim.listeners.append(self.on_event)

    def on_event(self, now: float, observer: int, event: MemberEvent) -> None:
        subject = self._index.get(event.node.node_id)
        if subject is None or subject == observer:
            return
        others = self.not_alive[observer]
        was_counted = event.kind != "node.joined" and subject not in others
        if event.status == "alive":
            if not was_counted:
                self.alive[observer] += 1
                others.pop(subject, None)
        else:
            if was_counted:
                self.alive[observer] -= 1
            others[subject] = event.status

    def reset(self, i: int) -> None:
        """Node i restarted with an empty table."""
        self.alive[i] = 0
        self.not_alive[i] = {}

    def converged(self, members: list[int]) -> None:
        """`members` started converged (no events): each sees the others alive."""
        for i in members:
            self.alive[i] = len(members) - 1
            self.not_alive[i] = {}

    def sees_all_alive(self, observer: int, others: int) -> bool:
        return self.alive[observer] == others and not self.not_alive[observer]


# --- scenario helpers ----------------------------------------------------------------


class OverBudget(Exception):
    """A run went past its CPU-time or memory budget."""


def rss_gb() -> float:
    """Resident memory of this process now (Linux)."""
    with open("/proc/self/statm") as f:
        return int(f.read().split()[1]) * 4096 / 1e9


class Run:
    """One simulated cluster plus the helpers scenario phases share."""

    def __init__(self, sim: Sim, label: str, seed: int, budget_s: float,
                 max_rss_gb: float) -> None:
        self.sim, self.label, self.phase = sim, label, "boot"
        self.n = len(sim.nodes)
        self.views = Views(sim)
        self.rng = random.Random(seed)  # scenario choices, apart from the network's
        self.seeds = list(range(min(3, self.n)))
        self.budget_s, self.max_rss_gb = budget_s, max_rss_gb
        self.wall0, self.cpu0 = time.monotonic(), time.process_time()

    def advance(self, end: float, until: Callable[[], bool] | None = None,
                every: float = 0.05) -> bool:
        """`Sim.run_until` with progress lines and the budget check.

        Raises:
            OverBudget: the CPU budget or the memory cap was exceeded.
        """
        return self.sim.run_until(end, until, every, self._progress)

    def _progress(self, sim: Sim) -> None:
        wall, cpu, rss = time.monotonic() - self.wall0, time.process_time() - self.cpu0, rss_gb()
        print(f"  [{self.label} {self.phase}] t={sim.now:.1f}s calls={sim.handled} "
              f"cpu={cpu:.0f}s wall={wall:.0f}s rss={rss:.2f}GB", flush=True)
        # CPU, not wall-clock: the machine is shared, and a slice of it should not abort a size.
        if cpu > self.budget_s:
            raise OverBudget(f"CPU budget {self.budget_s:.0f} s exceeded")
        if rss > self.max_rss_gb:
            raise OverBudget(f"memory cap {self.max_rss_gb} GB exceeded")

    def up(self) -> list[int]:
        return [node.index for node in self.sim.nodes if node.up]

    def all_see_all(self) -> bool:
        up = self.up()
        return all(self.views.sees_all_alive(i, len(up) - 1) for i in up)

    def counter(self, name: str) -> int:
        """A core counter summed over every node, restarted ones' earlier lives included."""
        live = sum(node.core.counters.get(name, 0) for node in self.sim.nodes if node.core)
        return live + self.sim.retired_counters.get(name, 0)

    def pick(self, k: int = 1) -> list[int]:
        """k random live non-seed nodes (victims, broadcasters, slow members)."""
        return self.rng.sample([i for i in self.up() if i not in self.seeds], k)


def quantiles(values: list[float]) -> dict[str, float]:
    if not values:
        return {"count": 0}
    v = sorted(values)
    return {"count": len(v), "mean": sum(v) / len(v), "median": v[len(v) // 2],
            "p90": v[min(len(v) - 1, int(0.9 * len(v)))], "max": v[-1], "min": v[0]}


class Alarms:
    """Suspicions and failures of members that are in fact up: every one is false.

    An episode is one (member, incarnation) accusation, however many
    observers report it; events count every observer's report.
    """

    def __init__(self, run: Run) -> None:
        self.nodes, self.index, self.listeners = run.sim.nodes, run.sim.index, run.sim.listeners
        self.events = {"suspect": {"healthy": 0, "slow": 0}, "failed": {"healthy": 0, "slow": 0}}
        self.episodes: dict[str, set[tuple[int, int, str]]] = {"suspect": set(), "failed": set()}
        self.listeners.append(self.on_event)

    def on_event(self, now: float, observer: int, ev: MemberEvent) -> None:
        kind = {"node.suspect": "suspect", "node.failed": "failed"}.get(ev.kind)
        subject = self.index.get(ev.node.node_id)
        if kind is None or subject is None or not self.nodes[subject].up:
            return
        group = "slow" if self.nodes[subject].slow else "healthy"
        self.events[kind][group] += 1
        self.episodes[kind].add((subject, ev.incarnation, group))

    def summary(self, seconds: float) -> dict[str, Any]:
        """Counts so far, over `seconds` of virtual time; stops listening."""
        if self.on_event in self.listeners:
            self.listeners.remove(self.on_event)

        def count(kind: str, group: str) -> int:
            return sum(1 for e in self.episodes[kind] if e[2] == group)

        healthy = sum(1 for node in self.nodes if node.up and not node.slow)
        return {"suspect_events": self.events["suspect"], "failed_events": self.events["failed"],
                "suspect_episodes": count("suspect", "healthy"),
                "failed_episodes": count("failed", "healthy"),
                "slow_suspect_episodes": count("suspect", "slow"),
                "slow_failed_episodes": count("failed", "slow"),
                "healthy_member_hours": healthy * seconds / 3600.0}
