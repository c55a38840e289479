"""Membership cores against forged news: a member wrongly held as left comes back."""

from __future__ import annotations

import random

from actors.membership.core.probe import Outbound
from actors.membership.core.swim import Membership
from actors.membership.core.timing import PROFILES
from transport.codec import decode_untrusted, encode
from transport.protocol import NodeInfo, make_message

A, B = "tcp://127.0.0.1:7000", "tcp://127.0.0.1:7001"


def _core(node_id: str, address: str) -> Membership:
    return Membership(NodeInfo(node_id, address, {}), PROFILES["local"], random.Random(1), 0.0,
                      incarnation=1)


def _deliver(outs: list[Outbound], cores: dict[str, Membership], now: float) -> None:
    """Pump messages between the cores (through the codec) until none are left."""
    queue = list(outs)
    while queue:
        out = queue.pop(0)
        target = cores.get(out.address)
        if target is not None:
            msg = decode_untrusted(encode(out.message, "c"), "c")
            queue += target.handle(msg, now)


def test_a_member_held_as_left_by_a_forged_leave_learns_it_and_refutes() -> None:
    a, b = _core("a", A), _core("b", B)
    cores = {A: a, B: b}
    _deliver(b.join([A], 0.0), cores, 0.0)
    assert {m.node.node_id: m.status for m in a.members()} == {"a": "alive", "b": "alive"}
    a.handle(make_message("leave", "b", None, payload={"inc": 1}), 0.1)  # forged
    assert {m.node.node_id: m.status for m in a.members()}["b"] == "left"
    now = 0.2
    while now < 10.0 and {m.node.node_id: m.status for m in a.members()}["b"] != "alive":
        _deliver(a.tick(now) + b.tick(now), cores, now)
        now += 0.05
    assert {m.node.node_id: m.status for m in a.members()}["b"] == "alive"
    assert b.incarnation() > 1 and b.counters["refutations"] >= 1
