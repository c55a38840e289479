"""Join with retry, push-pull merging, gossip to the dead, reaping."""

from __future__ import annotations

import itertools
import random
from typing import Any

import pytest
from test_membership_support import LAN, ack, extra, info, make_core, of_type, seq_of, status_of

from actors.membership.core.swim import Membership
from actors.membership.core.timing import push_pull_scale
from transport.protocol import join_message, make_message, ping_message


def members_msg(sender: int, entries: list[dict[str, Any]], reply: bool = False,
                join: bool = False) -> Any:
    payload = {**extra(sender), "members": entries, "reply": reply, "join": join}
    return make_message("members", f"n{sender}", None, payload=payload)


def entry(i: int, status: str, inc: int = 0) -> dict[str, Any]:
    return {"id": f"n{i}", "addr": info(i).address, "inc": inc, "st": status}


def test_join_contacts_every_seed_but_itself() -> None:
    core = make_core(peers=())
    out = core.join([info(1).address, info(0).address, info(2).address], 0.0)
    assert [o.address for o in of_type(out, "join")] == [info(1).address, info(2).address]
    msg = out[0].message
    assert msg.payload is not None and msg.payload["node"]["id"] == "n0"


def test_join_with_no_other_seed_is_immediately_done() -> None:
    core = make_core(peers=())
    assert core.join([info(0).address], 0.0) == []
    assert core.tick(100.0) == []


def test_join_is_retried_with_doubling_backoff_until_a_members_reply() -> None:
    core = make_core(peers=(), join_retry_s=1.0, join_retry_max_s=4.0)
    core.join([info(1).address], 0.0)
    sent_at = []
    now = 0.0
    while now < 20.0:
        deadline = core.next_deadline()
        assert deadline is not None
        now = deadline
        if of_type(core.tick(now), "join"):
            sent_at.append(now)
    assert sent_at[:5] == [1.0, 3.0, 7.0, 11.0, 15.0]
    core.handle(members_msg(1, [entry(1, "alive")], join=True), now)
    assert of_type(core.tick(now + 100.0), "join") == []
    assert status_of(core, "n1") == "alive"
    assert core.counters["join_replies"] == 1


def test_known_peers_from_a_previous_run_are_contacted_with_the_seeds() -> None:
    core = Membership(info(0), LAN, random.Random(0), 0.0, incarnation=7, known=[info(3)])
    out = core.join([info(1).address], 0.0)
    assert [o.address for o in out] == [info(1).address, info(3).address]
    assert core.incarnation() == 7


def test_a_seed_answers_a_join_with_its_whole_table_and_reports_the_joiner() -> None:
    seed = make_core(peers=(1, 2))
    out = seed.handle(join_message("n5", info(5), payload_extra=extra(5)), 1.0)
    (reply,) = of_type(out, "members")
    assert reply.address == info(5).address
    payload = reply.message.payload
    assert payload is not None and payload["join"] is True and payload["reply"] is False
    assert sorted(e["id"] for e in payload["members"]) == ["n0", "n1", "n2", "n5"]
    assert [(e.kind, e.node.node_id) for e in seed.drain_events()] == [("node.joined", "n5")]


def test_a_join_that_claims_another_identity_is_refused() -> None:
    seed = make_core(peers=(1,))
    assert seed.handle(join_message("n5", info(6), payload_extra=extra(5)), 1.0) == []
    assert seed.counters["rejected.join_not_self"] == 1


MERGES = [
    # (remote entry about n1, which we hold alive at incarnation 0) -> (our status, event kinds)
    (entry(1, "alive", 0), "alive", []),
    (entry(1, "alive", 2), "alive", []),
    (entry(1, "suspect", 0), "suspect", ["node.suspect"]),
    (entry(1, "dead", 0), "suspect", ["node.suspect"]),  # memberlist mergeState: dead -> suspect
    (entry(1, "left", 0), "left", ["node.left"]),
    (entry(1, "dead", 1), "suspect", ["node.suspect"]),
]


@pytest.mark.parametrize(("remote", "status", "events"), MERGES)
def test_a_push_pull_merge_follows_memberlist_merge_state(
    remote: dict[str, Any], status: str, events: list[str]
) -> None:
    core = make_core(peers=(1, 2))
    core.handle(members_msg(2, [remote, entry(2, "alive")]), 1.0)
    assert status_of(core, "n1") == status
    assert [e.kind for e in core.drain_events()] == events


def test_a_push_pull_teaches_new_members_and_is_answered_with_our_table() -> None:
    core = make_core(peers=(2,))
    out = core.handle(members_msg(2, [entry(2, "alive"), entry(7, "alive", 3)], reply=True), 1.0)
    assert status_of(core, "n7") == "alive"
    (answer,) = of_type(out, "members")
    assert answer.address == info(2).address
    assert answer.message.payload is not None and answer.message.payload["reply"] is False
    assert {e["id"] for e in answer.message.payload["members"]} == {"n0", "n2", "n7"}


def test_a_remote_table_that_holds_this_node_dead_makes_it_refute() -> None:
    core = make_core(peers=(2,))
    out = core.handle(members_msg(2, [entry(0, "dead", 0)]), 1.0)
    assert core.incarnation() == 1
    assert of_type(out, "alive")


@pytest.mark.parametrize(("n", "factor"), [(1, 1), (32, 1), (33, 2), (64, 2), (65, 3),
                                           (100, 3), (1000, 6), (10_000, 10)])
def test_the_push_pull_interval_scales_past_32_nodes(n: int, factor: int) -> None:
    assert push_pull_scale(30.0, n) == pytest.approx(30.0 * factor)


def test_push_pull_runs_periodically_with_a_live_member() -> None:
    core = make_core(peers=(1,), push_pull_interval_s=10.0)
    sent = []
    for tenth in range(400):
        out = core.tick(tenth / 10)
        for ping in of_type(out, "ping"):  # n1 stays healthy
            core.handle(ack(1, seq_of(ping)), tenth / 10)
        if of_type(out, "members"):
            sent.append(tenth / 10)
    assert len(sent) == 4
    assert all(b - a == pytest.approx(10.0, abs=0.11) for a, b in itertools.pairwise(sent))


def test_dead_members_get_a_push_pull_every_gossip_to_dead_period() -> None:
    core = make_core(peers=(1, 2), gossip_to_dead_s=5.0, push_pull_interval_s=1000.0)
    core.handle(members_msg(2, [], reply=False), 0.0)
    core.handle(make_message("dead", "n2", None,
                             payload={"node": "n1", "incarnation": 0, **extra(2)}), 0.0)
    to_dead = [o for t in range(1, 120) for o in of_type(core.tick(t / 10), "members")
               if o.address == info(1).address]
    assert len(to_dead) == 2
    assert to_dead[0].message.payload is not None and to_dead[0].message.payload["reply"] is True


def test_dead_and_left_members_are_forgotten_after_the_reap_timeout() -> None:
    core = make_core(peers=(1, 2, 3), reap_after_s=100.0)
    core.handle(make_message("dead", "n3", None,
                             payload={"node": "n1", "incarnation": 0, **extra(3)}), 10.0)
    core.handle(make_message("leave", "n2", None, payload=extra(2)), 20.0)
    core.tick(109.9)
    assert status_of(core, "n1") == "dead"
    core.tick(110.0)
    assert status_of(core, "n1") is None and status_of(core, "n2") == "left"
    core.tick(120.0)
    assert status_of(core, "n2") is None
    assert core.counters["reaped"] == 2
    reaped = [e.kind for e in core.drain_events() if e.node.node_id in ("n1", "n2")]
    assert reaped == ["node.failed", "node.left"]  # reaping itself is not an event


def test_a_ping_from_a_member_we_never_heard_of_triggers_a_push_pull_with_it() -> None:
    core = make_core(peers=(1,))
    out = core.handle(ping_message("n8", "n0", 4, payload_extra=extra(8)), 1.0)
    (pull,) = of_type(out, "members")
    assert pull.address == info(8).address
    assert pull.message.payload is not None and pull.message.payload["reply"] is True
    assert of_type(core.handle(ping_message("n1", "n0", 5, payload_extra=extra(1)), 1.1),
                   "members") == []


def test_an_idle_node_has_no_gossip_deadline_once_its_news_is_spent() -> None:
    core = make_core(peers=(1,), probe_interval_s=100.0, probe_timeout_s=50.0,
                     push_pull_interval_s=1000.0)
    core.tick(0.0)  # a gossip round: the news about n1 has transmits left
    assert core.next_deadline() == pytest.approx(LAN.gossip_interval_s)
    for tenth in range(1, 50):
        core.tick(tenth / 10)
    deadline = core.next_deadline()
    assert deadline is not None and deadline > 10.0  # only the first probe is left
