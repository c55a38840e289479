"""Starting cores from one shared converged view, and the table's memory-saving paths.

`Membership.adopt` is how the simulator fits 10,000 cores in memory
(docs/simulation.md): it must leave a core exactly where a completed join
leaves it, share the view's entries without letting one core's changes leak
into another's, and the interning, lazy address index, sampling and
stale-row shortcut must not change what the table decides.
"""

from __future__ import annotations

import random
from collections import Counter

import pytest

from actors.membership.core.members import ALIVE, Member, MemberTable, MemberView, News, shared_info
from actors.membership.core.swim import Membership
from actors.membership.core.timing import PROFILES
from actors.testing.sim import NetModel, Scenario, Sim, Views, start
from transport.codec import decode_untrusted, encode
from transport.protocol import GossipMessage, NodeInfo

LAN = PROFILES["lan"]


def info(i: int, meta: dict[str, object] | None = None) -> NodeInfo:
    return NodeInfo(f"n{i}", f"tcp://n{i}.sim:7946", meta or {})


def converged(n: int, seed: int = 5) -> Sim:
    sim, _ = start(Scenario("lan-joined", "lan", n, seed))
    assert sim.run_until(60.0, lambda: all(
        sum(s == ALIVE for s in sim.view(i).values()) == n for i in range(n)))
    return sim


def rows(core: Membership) -> list[tuple[str, str, str, int]]:
    return [(m.node.node_id, m.node.address, m.status, m.incarnation) for m in core.members()]


def test_adopting_a_view_gives_the_table_a_join_gives() -> None:
    sim = converged(12)
    joined = sim.nodes[7].core
    assert joined is not None
    view = MemberView(joined.members())
    fresh = Membership(joined.me, LAN, random.Random(1), sim.now)
    fresh.adopt(view, sim.now)
    assert rows(fresh) == rows(joined)
    assert fresh.drain_events() == []  # converged long ago: nothing new to report
    assert fresh.node_at("tcp://n3.sim:7946") == "n3" == joined.node_at("tcp://n3.sim:7946")


def test_an_adopted_core_probes_gossips_and_push_pulls_like_a_joined_one() -> None:
    view = MemberView(Member(info(i), ALIVE, 0, 0.0) for i in range(40))
    core = Membership(info(0), LAN, random.Random(2), 0.0)
    core.adopt(view, 0.0)
    targets: Counter[str] = Counter()
    now = 0.0
    for _ in range(400):  # no answers: probes fail, suspicions are raised and gossiped
        deadline = core.next_deadline()
        assert deadline is not None
        now = max(now, deadline)
        for out in core.tick(now):
            targets[out.message.msg_type] += 1
    assert targets["ping"] > 0 and targets["ping-req"] > 0 and targets["members"] > 0
    assert targets["suspect"] + targets["alive"] > 0  # gossip rounds carry the suspicions
    # The view itself is untouched by the core's suspicions.
    assert all(e.status == ALIVE for e in view.entries.values())


def test_a_change_copies_the_shared_entry_and_leaves_other_cores_alone() -> None:
    view = MemberView(Member(info(i), ALIVE, 0, 0.0) for i in range(5))
    a = Membership(info(0), LAN, random.Random(1), 0.0)
    b = Membership(info(1), LAN, random.Random(2), 0.0)
    a.adopt(view, 0.0)
    b.adopt(view, 0.0)
    suspect = GossipMessage("suspect", "n1", None, (), None,
                            {"node": "n3", "incarnation": 0, "addr": "tcp://n1.sim:7946",
                             "inc": 0})
    a.handle(suspect, 1.0)
    assert {m.node.node_id: m.status for m in a.members()}["n3"] == "suspect"
    assert {m.node.node_id: m.status for m in b.members()}["n3"] == ALIVE
    assert view.entries["n3"].status == ALIVE and view.entries["n3"].since == 0.0


def test_adopt_refuses_a_core_that_already_knows_members_and_views_of_non_alive() -> None:
    core = Membership(info(0), LAN, random.Random(1), 0.0)
    core.join(["tcp://n1.sim:7946"], 0.0)
    with pytest.raises(ValueError):
        core.adopt(MemberView([Member(info(1), ALIVE, 0, 0.0)]), 0.0)
    table = MemberTable(info(0), 0, 0.0, LAN)
    table.apply(News(ALIVE, "n1", 0, info=info(1)), 0.0)
    with pytest.raises(ValueError):
        table.adopt(MemberView([Member(info(2), ALIVE, 0, 0.0)]))
    with pytest.raises(ValueError):
        MemberView([Member(info(1), "dead", 0, 0.0)])


def test_tables_keep_one_shared_record_per_member_not_each_decoded_copy() -> None:
    msg = GossipMessage("alive", "n2", None, (), None,
                        {"node": "n2", "incarnation": 1, "addr": "tcp://n2.sim:7946",
                         "inc": 1, "meta": {"zone": "a"}})
    cores = [Membership(info(i), LAN, random.Random(i), 0.0) for i in range(2)]
    for core in cores:
        core.handle(decode_untrusted(encode(msg, "c"), "c"), 0.0)  # a fresh copy each
    held = [next(m.node for m in core.members() if m.node.node_id == "n2") for core in cores]
    assert held[0] is held[1] and held[0].metadata == {"zone": "a"}
    assert shared_info(NodeInfo("n2", "tcp://n2.sim:7946", {"zone": "b"})) is not held[0]


def test_node_at_built_late_matches_claims_made_all_along() -> None:
    table = MemberTable(info(0), 0, 0.0, LAN)
    for i in range(1, 6):
        table.apply(News(ALIVE, f"n{i}", 0, info=info(i)), 0.0)
    # n9 claims n2's address (a restart under a new id): the first claimant wins.
    table.apply(News(ALIVE, "n9", 0, info=NodeInfo("n9", "tcp://n2.sim:7946", {})), 0.0)
    assert table.node_at("tcp://n2.sim:7946") == "n2"
    assert table.node_at("tcp://n0.sim:7946") is None  # ourselves
    table.apply(News(ALIVE, "n6", 0, info=info(6)), 0.0)  # claimed after the build
    assert table.node_at("tcp://n6.sim:7946") == "n6"


def test_sample_is_uniform_over_the_eligible_and_never_us() -> None:
    table = MemberTable(info(0), 0, 0.0, LAN)
    table.adopt(MemberView(Member(info(i), ALIVE, 0, 0.0) for i in range(1, 11)))
    rng, seen = random.Random(3), Counter[str]()
    for _ in range(6000):
        picked = table.sample(rng, 3, lambda e: e.node.node_id != "n5")
        assert len({e.node.node_id for e in picked}) == 3
        seen.update(e.node.node_id for e in picked)
    assert "n0" not in seen and "n5" not in seen and len(seen) == 9
    assert max(seen.values()) < 1.1 * min(seen.values())  # 2,000 each expected
    # Few eligible (here one): the exact draw after the rejection tries.
    assert [e.node.node_id for e in table.sample(rng, 3, lambda e: e.node.node_id == "n8")
            ] == ["n8"]
    assert table.sample(rng, 1, lambda e: True, gone=True) == []


def test_push_pull_rows_we_already_hold_count_as_stale_without_parsing() -> None:
    core = Membership(info(0), LAN, random.Random(1), 0.0)
    core.adopt(MemberView(Member(info(i), ALIVE, 2, 0.0) for i in range(1, 4)), 0.0)
    table = [{"id": "n1", "addr": "tcp://n1.sim:7946", "inc": 2, "st": ALIVE},  # same
             {"id": "n2", "addr": "tcp://n2.sim:7946", "inc": 1, "st": ALIVE},  # older
             {"id": "n3", "addr": "tcp://n3.sim:7946", "inc": 2, "st": ALIVE,
              "meta": {"zone": "b"}},  # new metadata at the same incarnation: still stale
             {"id": "n1", "addr": "tcp://n1.sim:7946", "inc": -1, "st": ALIVE},  # malformed
             {"id": "n4", "addr": "tcp://n4.sim:7946", "inc": 0, "st": ALIVE}]  # new
    msg = GossipMessage("members", "n1", None, (), None,
                        {"members": table, "reply": False, "join": False,
                         "addr": "tcp://n1.sim:7946", "inc": 2})
    core.handle(decode_untrusted(encode(msg, "c"), "c"), 1.0)
    assert core.counters["news_stale"] == 3
    assert core.counters["rejected.bad_member"] == 1
    assert "n4" in {m.node.node_id for m in core.members()}


def test_a_converged_simulated_cluster_takes_joiners_and_detects_a_crash() -> None:
    sim = Sim(60, LAN, NetModel(), seed=4)
    views = Views(sim)
    members = list(range(55))
    sim.start_converged(members)
    views.converged(members)
    for i in range(55, 60):
        sim.start(i, 0.5, [0, 1, 2])
    assert sim.run_until(30.0, lambda: all(views.sees_all_alive(i, 59) for i in range(60)))
    victim = 20
    sim.crash(victim, refusals=False)
    assert sim.run_until(sim.now + 60.0, lambda: all(
        views.not_alive[i].get(victim) == "dead" for i in sim.up()))
