"""Helpers shared by the membership unit tests (no tests here).

Node `i` is "n{i}" at "tcp://n{i}:7946"; cores run the "lan" profile
(probe 1 s, timeout 0.5 s, suspicion mult 4 / max 6) on a fake clock that
the tests pass explicitly, with `random.Random(seed)`.
"""

from __future__ import annotations

import random
from collections.abc import Iterable
from dataclasses import replace
from typing import Any

from actors.membership.core.swim import Membership, Outbound
from actors.membership.core.timing import PROFILES, MembershipTiming
from transport.protocol import (
    GossipMessage,
    NodeInfo,
    alive_message,
    make_message,
    ping_ack_message,
)

LAN = PROFILES["lan"]


def info(i: int, metadata: dict[str, Any] | None = None) -> NodeInfo:
    return NodeInfo(f"n{i}", f"tcp://n{i}:7946", metadata or {})


def extra(i: int, inc: int = 0) -> dict[str, Any]:
    """The payload fields every member message carries."""
    return {"addr": info(i).address, "inc": inc}


def make_core(
    peers: Iterable[int] = (1,), seed: int = 0, timing: MembershipTiming = LAN, now: float = 0.0,
    me: int = 0, incarnation: int = 0, **overrides: Any,
) -> Membership:
    """n{me} (n0) at `now`, knowing `peers` as alive at incarnation 0, with its events drained."""
    timing = replace(timing, **overrides)
    core = Membership(info(me), timing, random.Random(seed), now, incarnation=incarnation)
    for p in peers:
        core.handle(alive_message(f"n{p}", 0, payload_extra=extra(p)), now)
    core.drain_events()
    return core


def of_type(out: list[Outbound], msg_type: str) -> list[Outbound]:
    return [o for o in out if o.message.msg_type == msg_type]


def start_probe(core: Membership) -> tuple[float, Outbound]:
    """Tick until the next probe goes out; return its time and its ping."""
    for _ in range(20):
        now = core.next_deadline()
        assert now is not None
        pings = of_type(core.tick(now), "ping")
        if pings:
            assert len(pings) == 1
            return now, pings[0]
    raise AssertionError("no probe was sent")


def seq_of(out: Outbound) -> int:
    assert out.message.payload is not None
    seq = out.message.payload["seq"]
    assert isinstance(seq, int)
    return seq


def target_index(out: Outbound) -> int:
    assert out.message.target is not None
    return int(out.message.target[1:])


def ack(sender: int, seq: int, to: str = "n0") -> GossipMessage:
    return ping_ack_message(f"n{sender}", to, seq, payload_extra=extra(sender))


def nack(sender: int, seq: int) -> GossipMessage:
    return make_message("ping-nack", f"n{sender}", "n0", payload={"seq": seq, **extra(sender)})


def news(sender: int, items: list[dict[str, Any]], inc: int = 0) -> GossipMessage:
    """An alive heartbeat from n{sender} carrying gossip `items` (a gossip round)."""
    return alive_message(f"n{sender}", inc, payload_extra={**extra(sender, inc), "gossip": items})


def suspect_item(node: str, inc: int, accuser: str, refused: bool = False) -> dict[str, Any]:
    item: dict[str, Any] = {"k": "suspect", "n": node, "i": inc, "f": accuser}
    if refused:
        item["r"] = True
    return item


def status_of(core: Membership, node_id: str) -> str | None:
    return next((m.status for m in core.members() if m.node.node_id == node_id), None)


def gossip_items(out: Iterable[Outbound]) -> list[dict[str, Any]]:
    """Every piggybacked news item in `out`."""
    return [item for o in out for item in (o.message.payload or {}).get("gossip", [])]
