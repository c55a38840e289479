"""Random inbound messages, ticks and commands never break the membership core's invariants.

Invariants checked after every step: no exception; the local incarnation
never decreases; every status is valid and the local node is alive until it
leaves; only suspect members have a suspicion timer; every drained event is
a legal transition from the status held before the step, and the statuses
after the step are exactly what the events imply (reaping aside).
"""

from __future__ import annotations

import random
from typing import Any

from hypothesis import HealthCheck, settings
from hypothesis import strategies as st
from hypothesis.stateful import RuleBasedStateMachine, invariant, precondition, rule

from actors.membership.core.members import STATUSES
from actors.membership.core.swim import Membership
from actors.membership.core.timing import PROFILES
from transport.protocol import GossipMessage, NodeInfo, make_message

IDS = ["n0", "n1", "n2", "n3", "n4"]
ME = NodeInfo("n0", "tcp://n0:1", {})

# event kind -> (statuses it may come from, status it leads to); None = unknown member.
LEGAL: dict[str, tuple[frozenset[str | None], str]] = {
    "node.joined": (frozenset({None, "left"}), "alive"),
    "node.alive": (frozenset({"suspect", "dead"}), "alive"),
    "node.updated": (frozenset({"alive"}), "alive"),
    "node.suspect": (frozenset({"alive"}), "suspect"),
    "node.failed": (frozenset({"alive", "suspect"}), "dead"),
    "node.left": (frozenset({"alive", "suspect", "dead"}), "left"),
}

node_ids = st.sampled_from(IDS)
others = st.sampled_from(IDS[1:])
senders = st.sampled_from([*IDS[1:], *IDS[1:], *IDS[1:], "n0"])  # rarely ourselves
incs = st.integers(0, 6)
small_meta = st.dictionaries(st.sampled_from(["role", "w"]), st.integers(0, 3), max_size=2)


def address(node_id: str) -> str:
    return f"tcp://{node_id}:1"


@st.composite
def gossip_items(draw: st.DrawFn) -> dict[str, Any]:
    """Mostly well-formed news items; sometimes a field is missing or the kind is bogus."""
    node = draw(node_ids)
    kind = draw(st.sampled_from([*STATUSES, *STATUSES, "bogus"]))
    item: dict[str, Any] = {"k": kind, "n": node, "i": draw(incs)}
    if kind == "alive" or draw(st.integers(0, 9)) == 0:
        item["a"] = address(node)
        if draw(st.booleans()):
            item["m"] = draw(small_meta)
    if kind in ("suspect", "dead") or draw(st.integers(0, 9)) == 0:
        item["f"] = draw(others)
        if draw(st.booleans()):
            item["r"] = True
    if draw(st.integers(0, 19)) == 0:
        del item[draw(st.sampled_from(sorted(item)))]
    return item


@st.composite
def member_entries(draw: st.DrawFn) -> dict[str, Any]:
    node = draw(node_ids)
    return {"id": node, "addr": address(node), "inc": draw(incs),
            "st": draw(st.sampled_from([*STATUSES, "zombie"]))}


@st.composite
def messages(draw: st.DrawFn) -> GossipMessage:
    msg_type = draw(st.sampled_from(["ping", "ping-ack", "ping-nack", "ping-req", "suspect",
                                     "alive", "dead", "leave", "join", "members"]))
    sender = draw(senders)
    payload: dict[str, Any] = {}
    if draw(st.integers(0, 9)) > 0:
        payload["addr"] = address(sender)
    if draw(st.booleans()):
        payload["inc"] = draw(incs)
    if draw(st.booleans()):
        payload["gossip"] = draw(st.lists(gossip_items(), min_size=1, max_size=4))
    seq = draw(st.integers(0, 8))
    match msg_type:
        case "ping" | "ping-ack" | "ping-nack":
            payload["seq"] = seq
        case "ping-req":
            payload.update(seq=seq, node=draw(node_ids))
        case "suspect" | "alive" | "dead":
            node = sender if msg_type == "alive" and draw(st.integers(0, 4)) else draw(node_ids)
            payload.update(node=node, incarnation=draw(incs))
            if msg_type == "alive" and draw(st.booleans()):
                payload["meta"] = draw(small_meta)
        case "join":
            joiner = draw(st.sampled_from([sender, sender, sender, "n3"]))
            payload["node"] = {"id": joiner, "addr": address(joiner)}
        case "members":
            payload.update(members=draw(st.lists(member_entries(), max_size=5)),
                           reply=draw(st.booleans()), join=draw(st.booleans()))
    target = draw(st.sampled_from([None, None, "n0", "n0", "n0", "n1"]))
    return make_message(msg_type, sender, target, payload=payload)


class MembershipMachine(RuleBasedStateMachine):
    def __init__(self) -> None:
        super().__init__()
        self.now = 0.0
        self.core = Membership(ME, PROFILES["test"], random.Random(0), self.now)
        self.incarnation = 0
        self.left = False

    def _step(self, action: Any) -> None:
        before = {m.node.node_id: m.status for m in self.core.members()}
        action()
        self._check_events(before)

    def _check_events(self, before: dict[str, str]) -> None:
        held: dict[str, str | None] = dict(before)
        for event in self.core.drain_events():
            node_id = event.node.node_id
            sources, target = LEGAL[event.kind]
            assert held.get(node_id) in sources, (event, held.get(node_id))
            assert event.status == target, event
            held[node_id] = target
        after = {m.node.node_id: m.status for m in self.core.members()}
        for node_id in set(held) | set(after):
            if node_id in after:
                assert after[node_id] == held.get(node_id), (node_id, held, after)
            else:  # only dead and left members disappear (reaped)
                assert held.get(node_id) in ("dead", "left"), (node_id, held)

    @rule(msg=messages())
    def receive(self, msg: GossipMessage) -> None:
        self._step(lambda: self.core.handle(msg, self.now))

    @rule(dt=st.floats(0.0, 3.0))
    def tick(self, dt: float) -> None:
        self.now += dt
        self._step(lambda: self.core.tick(self.now))

    @rule()
    def tick_at_deadline(self) -> None:
        deadline = self.core.next_deadline()
        if deadline is not None:
            self.now = max(self.now, deadline)
        self._step(lambda: self.core.tick(self.now))

    @rule(node=node_ids)
    def refused(self, node: str) -> None:
        self._step(lambda: self.core.connection_refused(node, self.now))

    @rule(node=node_ids)
    def reconnected(self, node: str) -> None:
        self._step(lambda: self.core.connection_ok(node, self.now))

    @precondition(lambda self: not self.left)
    @rule(meta=small_meta)
    def new_metadata(self, meta: dict[str, Any]) -> None:
        self._step(lambda: self.core.set_metadata(meta, self.now))

    @rule()
    def join(self) -> None:
        self._step(lambda: self.core.join([address("n1"), address("n2")], self.now))

    @precondition(lambda self: not self.left)
    @rule()
    def leave(self) -> None:
        self.left = True
        self._step(lambda: self.core.leave(self.now))

    @invariant()
    def incarnation_never_decreases(self) -> None:
        current = self.core.incarnation()
        assert current >= self.incarnation
        self.incarnation = current

    @invariant()
    def statuses_are_valid(self) -> None:
        for member in self.core.members():
            assert member.status in STATUSES
            has_timer = self.core.suspicion_deadline(member.node.node_id) is not None
            assert has_timer == (member.status == "suspect"), member
        me = next(m for m in self.core.members() if m.node.node_id == "n0")
        assert me.status == ("left" if self.left else "alive")

    @invariant()
    def deadline_is_a_time(self) -> None:
        deadline = self.core.next_deadline()
        assert deadline is None or deadline == deadline  # not NaN


MembershipMachine.TestCase.settings = settings(
    max_examples=80, stateful_step_count=40, deadline=None,
    suppress_health_check=[HealthCheck.too_slow],
)
TestMembershipMachine = MembershipMachine.TestCase
