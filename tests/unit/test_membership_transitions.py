"""Member transitions: suspicion, refutation, death, leave, metadata, events exactly once."""

from __future__ import annotations

from typing import Any

import pytest
from test_membership_support import (
    LAN,
    ack,
    extra,
    gossip_items,
    info,
    make_core,
    news,
    of_type,
    seq_of,
    status_of,
    suspect_item,
    target_index,
)

from actors.membership.core.suspicion import suspicion_timeout
from transport.protocol import (
    GossipMessage,
    alive_message,
    leave_message,
    make_message,
    ping_message,
)


def dead_item(node: str, inc: int, accuser: str) -> dict[str, Any]:
    return {"k": "dead", "n": node, "i": inc, "f": accuser}


def left_item(node: str, inc: int) -> dict[str, Any]:
    return {"k": "left", "n": node, "i": inc}


def alive_item(i: int, inc: int, meta: dict[str, Any] | None = None) -> dict[str, Any]:
    item: dict[str, Any] = {"k": "alive", "n": f"n{i}", "i": inc, "a": info(i).address}
    if meta:
        item["m"] = meta
    return item


def kinds(core: Any) -> list[tuple[str, str]]:
    return [(e.kind, e.node.node_id) for e in core.drain_events()]


# --- refutation ---------------------------------------------------------------

REFUTE_CASES = [
    # (incarnation before, news about n0, incarnation after)
    (0, suspect_item("n0", 0, "n1"), 1),
    (2, suspect_item("n0", 5, "n1"), 6),  # bump past the accuser's number
    (3, dead_item("n0", 3, "n1"), 4),
    (0, left_item("n0", 0), 1),
    (0, alive_item(0, 4), 5),  # someone holds a newer "us" (state lost on restart)
    (2, alive_item(0, 2, {"x": 1}), 3),  # same incarnation, other metadata
]


@pytest.mark.parametrize(("before", "item", "after"), REFUTE_CASES)
def test_news_that_contradicts_this_node_is_refuted_with_a_higher_incarnation(
    before: int, item: dict[str, Any], after: int
) -> None:
    core = make_core(peers=(1,), incarnation=before)  # as restored from its data_dir
    out = core.handle(news(1, [item]), 1.0)
    assert core.incarnation() == after
    assert core.counters["refutations"] == 1
    assert core.health_score() == 1
    (direct,) = of_type(out, "alive")
    assert direct.address == info(1).address
    assert direct.message.payload is not None
    assert direct.message.payload["incarnation"] == after
    assert status_of(core, "n0") == "alive"


@pytest.mark.parametrize("item", [suspect_item("n0", 1, "n1"), dead_item("n0", 0, "n1"),
                                  alive_item(0, 2)])
def test_stale_news_about_this_node_is_ignored(item: dict[str, Any]) -> None:
    core = make_core(peers=(1,), incarnation=2)
    assert core.handle(news(1, [item]), 1.0) == []
    assert core.incarnation() == 2
    assert "refutations" not in core.counters


# --- suspicion and death ------------------------------------------------------


def test_a_suspect_member_is_declared_dead_when_its_suspicion_times_out() -> None:
    core = make_core(peers=(1, 2))  # n = 3 < k + 2: no confirmations wanted, timer = min
    core.handle(news(2, [suspect_item("n1", 0, "n2")]), 10.0)
    assert kinds(core) == [("node.suspect", "n1")]
    timeout = LAN.suspicion_mult * LAN.probe_interval_s  # log10(3) < 1
    core.tick(10.0 + timeout - 0.01)
    assert status_of(core, "n1") == "suspect"
    core.tick(10.0 + timeout)
    assert status_of(core, "n1") == "dead"
    assert kinds(core) == [("node.failed", "n1")]
    gossip = core.tick(10.0 + timeout + LAN.gossip_interval_s)  # the next gossip round
    assert dead_item("n1", 0, "n0") in gossip_items(gossip)


def test_a_refuted_suspicion_never_becomes_dead_and_reports_the_member_alive() -> None:
    core = make_core(peers=(1, 2))
    core.handle(news(2, [suspect_item("n1", 0, "n2")]), 0.0)
    core.handle(alive_message("n1", 1, payload_extra=extra(1, 1)), 1.0)
    core.tick(100.0)
    assert status_of(core, "n1") == "alive"
    assert kinds(core) == [("node.suspect", "n1"), ("node.alive", "n1")]


def test_independent_confirmations_shrink_the_suspicion_timer() -> None:
    peers = range(1, 10)  # n = 10: k = 2, min 4 s, max 24 s
    core = make_core(peers=peers)
    core.handle(news(2, [suspect_item("n1", 0, "n2")]), 0.0)
    expiry = core.suspicion_deadline("n1")
    assert expiry == pytest.approx(24.0)
    core.handle(news(3, [suspect_item("n1", 0, "n3")]), 1.0)
    assert core.suspicion_deadline("n1") == pytest.approx(suspicion_timeout(1, 2, 4.0, 24.0))
    core.handle(news(3, [suspect_item("n1", 0, "n3")]), 1.5)  # the same accuser again
    assert core.suspicion_deadline("n1") == pytest.approx(suspicion_timeout(1, 2, 4.0, 24.0))
    core.handle(news(4, [suspect_item("n1", 0, "n4")]), 2.0)
    assert core.suspicion_deadline("n1") == pytest.approx(4.0)


def test_a_confirmation_is_regossiped_and_the_originator_does_not_confirm_itself() -> None:
    core = make_core(peers=range(1, 10))
    core.handle(news(2, [suspect_item("n1", 0, "n2")]), 0.0)
    core.handle(news(2, [suspect_item("n1", 0, "n2")]), 0.5)
    assert core.suspicion_deadline("n1") == pytest.approx(24.0)


def test_dead_news_is_final_for_its_incarnation_and_a_higher_alive_revives() -> None:
    core = make_core(peers=(1, 2))
    core.handle(news(2, [dead_item("n1", 0, "n2")]), 0.0)
    core.handle(news(2, [suspect_item("n1", 0, "n2"), alive_item(1, 0)]), 0.1)
    assert status_of(core, "n1") == "dead"
    core.handle(news(2, [alive_item(1, 1)]), 0.2)
    assert status_of(core, "n1") == "alive"
    assert kinds(core) == [("node.failed", "n1"), ("node.alive", "n1")]


TRANSITIONS = [
    # (news items about n1, in order; final status; events)
    ([suspect_item("n1", 0, "n2")], "suspect", ["node.suspect"]),
    ([dead_item("n1", 0, "n2")], "dead", ["node.failed"]),
    ([left_item("n1", 0)], "left", ["node.left"]),
    ([suspect_item("n1", 0, "n2"), dead_item("n1", 0, "n2")], "dead",
     ["node.suspect", "node.failed"]),
    ([alive_item(1, 1, {"role": "lb"})], "alive", ["node.updated"]),
    ([alive_item(1, 1)], "alive", []),  # an incarnation bump alone is no event
    ([suspect_item("n1", 0, "n2"), alive_item(1, 1, {"v": 2})], "alive",
     ["node.suspect", "node.alive", "node.updated"]),
    ([left_item("n1", 0), alive_item(1, 1)], "alive", ["node.left", "node.joined"]),
    ([left_item("n1", 0), dead_item("n1", 0, "n2"), suspect_item("n1", 0, "n2")], "left",
     ["node.left"]),
    ([alive_item(1, 0), suspect_item("n1", 0, "n2"), suspect_item("n1", 0, "n2")], "suspect",
     ["node.suspect"]),
]


@pytest.mark.parametrize(("items", "status", "events"), TRANSITIONS)
def test_each_transition_is_reported_exactly_once(
    items: list[dict[str, Any]], status: str, events: list[str]
) -> None:
    core = make_core(peers=(1, 2))
    core.handle(news(2, items), 1.0)
    core.handle(news(2, items), 1.1)  # duplicates change nothing
    assert status_of(core, "n1") == status
    assert [e.kind for e in core.drain_events()] == events
    assert core.drain_events() == []


def test_news_about_a_stranger_that_is_not_alive_is_ignored() -> None:
    core = make_core(peers=(2,))
    core.handle(news(2, [suspect_item("n7", 0, "n2"), dead_item("n8", 0, "n2")]), 0.0)
    assert status_of(core, "n7") is None and status_of(core, "n8") is None
    assert core.counters["news_unknown"] == 2


def test_a_malformed_gossip_item_is_counted_and_the_rest_still_applies() -> None:
    core = make_core(peers=(2,))
    core.handle(news(2, [{"k": "bogus"}, {"k": "alive", "n": "n5"}, alive_item(6, 0)]), 0.0)
    assert core.counters["rejected.bad_gossip"] == 2
    assert status_of(core, "n6") == "alive"


# --- leave ----------------------------------------------------------------------


def test_leave_tells_members_and_marks_this_node_left_without_a_failure() -> None:
    core = make_core(peers=(1, 2, 3))
    out = core.leave(5.0)
    assert sorted(o.address for o in of_type(out, "leave")) == [info(i).address for i in (1, 2, 3)]
    assert status_of(core, "n0") == "left"
    assert kinds(core) == [("node.left", "n0")]
    assert core.leave(5.1) == []


def test_a_left_member_is_not_failed_and_its_later_messages_are_ignored() -> None:
    core = make_core(peers=(1, 2))
    core.handle(leave_message("n1", payload_extra=extra(1)), 1.0)
    assert status_of(core, "n1") == "left"
    # A ping is answered, though, with the news that it left: a forged leave is refuted.
    (ack,) = core.handle(ping_message("n1", "n0", 3, payload_extra=extra(1)), 2.0)
    assert ack.message.msg_type == "ping-ack"
    assert {"k": "left", "n": "n1", "i": 0} in (ack.message.payload or {})["gossip"]
    assert core.handle(alive_message("n1", 0, payload_extra=extra(1)), 2.1) == []
    assert core.counters["rejected.from_left"] == 2
    core.tick(1000.0)
    assert kinds(core) == [("node.left", "n1")]


def test_a_left_member_that_comes_back_with_a_higher_incarnation_rejoins() -> None:
    core = make_core(peers=(1, 2))
    core.handle(leave_message("n1", payload_extra=extra(1)), 1.0)
    core.handle(alive_message("n1", 1, payload_extra=extra(1, 1)), 2.0)
    assert status_of(core, "n1") == "alive"
    assert kinds(core) == [("node.left", "n1"), ("node.joined", "n1")]


def test_a_leaving_node_does_not_refute_and_stops_probing() -> None:
    core = make_core(peers=(1,))
    core.leave(0.0)
    core.handle(news(1, [suspect_item("n0", 0, "n1")]), 0.1)
    assert core.incarnation() == 0
    assert of_type(core.tick(10.0), "ping") == []


# --- metadata ---------------------------------------------------------------------


def test_new_metadata_bumps_the_incarnation_and_reaches_members_as_an_update() -> None:
    core = make_core(peers=(1, 2, 3))
    out = core.set_metadata({"role": "lb", "weight": 3}, 1.0)
    assert core.incarnation() == 1
    assert kinds(core) == [("node.updated", "n0")]
    assert {"k": "alive", "n": "n0", "i": 1, "a": info(0).address,
            "m": {"role": "lb", "weight": 3}} in gossip_items(out)
    peer = make_core(me=2, peers=(0, 1))  # a member that receives it
    (to_peer,) = [o for o in out if o.address == info(2).address]
    peer.handle(to_peer.message, 1.1)
    (event,) = [e for e in peer.drain_events() if e.node.node_id == "n0"]
    assert (event.kind, event.node.metadata, event.incarnation) == (
        "node.updated", {"role": "lb", "weight": 3}, 1)


def test_metadata_larger_than_the_limit_is_refused() -> None:
    core = make_core()
    with pytest.raises(ValueError, match="limit"):
        core.set_metadata({"blob": "x" * 600}, 0.0)
    assert core.incarnation() == 0


# --- odd input --------------------------------------------------------------------


ODD_MESSAGES: list[GossipMessage] = [
    ping_message("n0", "n0", 1, payload_extra=extra(0)),  # from ourselves
    make_message("push", "n1", None),  # not a membership message
    make_message("ping", "n1", "n0", payload={"seq": 1}),  # nowhere to reply
    make_message("members", "n1", None, payload={"members": "nope"}),
    make_message("alive", "n1", None, payload={"node": "n2", "incarnation": 3}),  # not self
    make_message("dead", "n1", None, payload={"node": 5}),
    make_message("ping-req", "n1", "n0", payload={"seq": 1, "node": "n2"}),
    GossipMessage("ping-ack", "n1", "n0", (), None, {"seq": "x"}),  # bypasses validation
]


@pytest.mark.parametrize("msg", ODD_MESSAGES)
def test_odd_input_is_counted_never_raised(msg: GossipMessage) -> None:
    core = make_core(peers=(1, 2))
    assert core.handle(msg, 0.0) == []
    assert sum(core.counters.values()) >= 1
    assert status_of(core, "n1") == "alive"


def moved_item(i: int, inc: int, address: str) -> dict[str, Any]:
    return {**alive_item(i, inc), "a": address}


def address_of(core: Any, node_id: str) -> str | None:
    return next((m.node.address for m in core.members() if m.node.node_id == node_id), None)


@pytest.mark.parametrize("before", [[], [suspect_item("n1", 0, "n2")]])
def test_a_live_member_is_not_moved_by_news_of_another_address(
        before: list[dict[str, Any]]) -> None:
    # Believed, such news would send n1's traffic to the forged address, where n1
    # could never hear it to refute it: the member would be cut off for good.
    core = make_core(peers=(1, 2))
    core.handle(news(2, before), 0.5)
    status = status_of(core, "n1")
    core.drain_events()
    core.handle(news(2, [moved_item(1, 7, "tcp://127.0.0.1:9")]), 1.0)
    assert address_of(core, "n1") == info(1).address
    assert status_of(core, "n1") == status
    assert core.drain_events() == []
    assert core.counters["news_address_conflict"] == 1


def test_a_dead_member_may_come_back_at_a_new_address() -> None:
    core = make_core(peers=(1, 2))
    core.handle(news(2, [dead_item("n1", 0, "n2")]), 1.0)
    core.handle(news(2, [moved_item(1, 1, "tcp://127.0.0.1:7001")]), 2.0)
    assert (status_of(core, "n1"), address_of(core, "n1")) == ("alive", "tcp://127.0.0.1:7001")
    assert kinds(core) == [("node.failed", "n1"), ("node.alive", "n1"), ("node.updated", "n1")]


# --- suspicion reminders --------------------------------------------------------


def _reminders_to(out: list[Any], node: str) -> int:
    return sum(1 for o in out if o.address == info(int(node[1:])).address
               and o.message.msg_type == "alive"
               and any(item.get("k") == "suspect" and item.get("n") == node
                       for item in gossip_items([o])))


def _acking(core: Any, out: list[Any], now: float) -> list[Any]:
    """Every probe is answered, so the only suspect is the one the test made."""
    for o in of_type(out, "ping"):
        core.handle(ack(target_index(o), seq_of(o)), now)
    return out


def test_a_suspect_that_does_not_refute_is_reminded_every_two_intervals_until_it_does():
    # Twenty peers, so round-robin probing reaches n5 at most once in these 9 s.
    core = make_core(peers=range(1, 21))
    core.handle(alive_message("n1", 0, payload_extra={
        **extra(1), "gossip": [suspect_item("n5", 0, "n1")]}), 0.0)
    assert status_of(core, "n5") == "suspect"
    out: list[Any] = []
    now = 0.0
    while now < 9.0:
        now = core.next_deadline() or now + 0.1
        out += _acking(core, core.tick(now), now)
    assert core.counters["suspect_reminders"] == 4  # at 2, 4, 6 and 8 s
    assert _reminders_to(out, "n5") >= 4  # gossip rounds may pick n5 too
    core.handle(alive_message("n5", 1, payload_extra=extra(5, 1)), now)
    assert status_of(core, "n5") == "alive"
    later: list[Any] = []
    while now < 15.0:
        now = core.next_deadline() or now + 0.1
        later += _acking(core, core.tick(now), now)
    assert core.counters["suspect_reminders"] == 4
    assert _reminders_to(later, "n5") == 0  # nothing it sends n5 accuses it any more
