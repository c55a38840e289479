"""Probing: ping/ack, ping-req/nack relays, late acks, round-robin, Lifeguard awareness."""

from __future__ import annotations

import pytest
from test_membership_support import (
    LAN,
    ack,
    extra,
    gossip_items,
    info,
    make_core,
    nack,
    of_type,
    seq_of,
    start_probe,
    status_of,
    suspect_item,
    target_index,
)

from transport.protocol import make_message, ping_message, ping_req_message


def test_a_probe_pings_the_member_and_its_ack_ends_the_probe_without_suspicion() -> None:
    core = make_core()
    t, ping = start_probe(core)
    assert ping.address == info(1).address
    assert ping.message.target == "n1"
    assert ping.message.payload is not None and ping.message.payload["addr"] == info(0).address
    core.handle(ack(1, seq_of(ping)), t + 0.1)
    out = core.tick(t + 1.0)
    assert not of_type(out, "ping-req")
    assert status_of(core, "n1") == "alive"
    assert core.counters["acks"] == 1


def test_a_ping_is_answered_with_an_ack_echoing_its_sequence_to_the_reply_address() -> None:
    core = make_core()
    out = core.handle(ping_message("n1", "n0", 42, payload_extra=extra(1)), 0.0)
    (reply,) = of_type(out, "ping-ack")
    assert reply.address == info(1).address
    assert reply.message.target == "n1"
    assert reply.message.payload is not None and reply.message.payload["seq"] == 42


def test_a_ping_meant_for_another_node_id_is_ignored_and_counted() -> None:
    core = make_core()
    assert core.handle(ping_message("n1", "someone-else", 1, payload_extra=extra(1)), 0.0) == []
    assert core.counters["rejected.wrong_target"] == 1


def test_no_ack_within_the_probe_timeout_sends_ping_req_through_k_other_members() -> None:
    core = make_core(peers=(1, 2, 3, 4, 5))
    t, ping = start_probe(core)
    target, seq = ping.message.target, seq_of(ping)
    assert of_type(core.tick(t + 0.49), "ping-req") == []
    reqs = of_type(core.tick(t + 0.5), "ping-req")
    assert len(reqs) == LAN.indirect_checks
    for req in reqs:
        payload = req.message.payload
        assert payload is not None
        assert (payload["node"], payload["seq"]) == (target, seq)
        assert req.message.target != target
        assert payload["taddr"] == f"tcp://{target}:7946"


def test_an_ack_relayed_by_an_intermediary_saves_the_target() -> None:
    core = make_core(peers=(1, 2, 3, 4))
    t, ping = start_probe(core)
    seq = seq_of(ping)
    reqs = of_type(core.tick(t + 0.5), "ping-req")
    relay = target_index(reqs[0])
    core.handle(ack(relay, seq), t + 0.7)
    core.tick(t + 1.0)
    assert status_of(core, ping.message.target or "") == "alive"
    assert core.drain_events() == []


@pytest.mark.parametrize(("nacks", "score"), [(0, 3), (1, 2), (2, 1), (3, 0)])
def test_a_failed_probe_suspects_the_target_and_each_missing_nack_costs_health(
    nacks: int, score: int
) -> None:
    core = make_core(peers=(1, 2, 3, 4))
    t, ping = start_probe(core)
    seq = seq_of(ping)
    reqs = of_type(core.tick(t + 0.5), "ping-req")
    for req in reqs[:nacks]:
        core.handle(nack(target_index(req), seq), t + 0.8)
    core.tick(t + 1.0)
    assert status_of(core, ping.message.target or "") == "suspect"
    assert core.health_score() == score
    assert [e.kind for e in core.drain_events()] == ["node.suspect"]


def test_a_failed_probe_without_relays_costs_one_health_point() -> None:
    core = make_core(peers=(1,))
    t, _ = start_probe(core)
    core.tick(t + 0.5)
    core.tick(t + 1.0)
    assert core.health_score() == 1


def test_a_successful_probe_restores_one_health_point() -> None:
    core = make_core(peers=(1,))
    t, _ = start_probe(core)
    core.tick(t + 0.5)
    (ping,) = of_type(core.tick(t + 1.0), "ping")  # failed (score 1); the next probe starts
    assert core.health_score() == 1
    core.handle(ack(1, seq_of(ping)), t + 1.1)
    assert core.health_score() == 0


def test_poor_health_stretches_the_probe_interval_but_not_the_probe_timeout() -> None:
    core = make_core(peers=(1, 2, 3))
    t, _ = start_probe(core)
    core.tick(t + 0.5)  # two ping-reqs, and no nack will come
    assert of_type(core.tick(t + 1.0), "ping")  # failed: score 2, so this probe runs 3 s
    assert core.health_score() == 2
    start = t + 1.0
    assert of_type(core.tick(start + 0.49), "ping-req") == []
    assert of_type(core.tick(start + 0.5), "ping-req")  # timeout unscaled
    assert of_type(core.tick(start + 2.99), "ping") == []
    assert of_type(core.tick(start + 3.0), "ping")  # interval scaled x3


@pytest.mark.parametrize("when", ["unknown sequence", "after the probe ended"])
def test_a_late_or_unknown_ack_is_dropped_and_counted(when: str) -> None:
    core = make_core(peers=(1,))
    t, ping = start_probe(core)
    seq = seq_of(ping)
    if when == "unknown sequence":
        seq += 1000
    else:
        core.tick(t + 0.5)
        core.tick(t + 1.0)
    core.drain_events()
    assert core.handle(ack(1, seq), t + 1.2) == []
    assert core.counters["late_acks"] == 1
    assert core.drain_events() == []


def test_an_intermediary_pings_the_target_and_relays_its_ack_with_the_requesters_sequence() -> None:
    core = make_core(peers=(1, 2))
    req = ping_req_message("n1", "n0", "n2", 77, payload_extra=extra(1))
    (ping,) = of_type(core.handle(req, 0.0), "ping")
    assert ping.address == info(2).address
    local_seq = seq_of(ping)
    (relayed,) = of_type(core.handle(ack(2, local_seq), 0.1), "ping-ack")
    assert relayed.address == info(1).address
    assert relayed.message.target == "n1"
    assert seq_of(relayed) == 77
    assert of_type(core.tick(1.0), "ping-nack") == []


def test_an_intermediary_that_hears_nothing_nacks_after_its_probe_timeout() -> None:
    core = make_core(peers=(1, 2))
    core.handle(ping_req_message("n1", "n0", "n2", 77, payload_extra=extra(1)), 0.0)
    assert of_type(core.tick(0.49), "ping-nack") == []
    (sent,) = of_type(core.tick(0.5), "ping-nack")
    assert sent.address == info(1).address
    assert seq_of(sent) == 77


def test_an_intermediary_asked_about_a_stranger_uses_the_address_in_the_request() -> None:
    core = make_core(peers=(1,))
    req = ping_req_message("n1", "n0", "n9", 5, payload_extra={**extra(1), "taddr": "tcp://n9:1"})
    (ping,) = of_type(core.handle(req, 0.0), "ping")
    assert ping.address == "tcp://n9:1"


def test_probes_visit_every_member_once_per_round() -> None:
    core = make_core(peers=(1, 2, 3, 4, 5))
    seen = []
    for _ in range(5):
        t, ping = start_probe(core)
        seen.append(target_index(ping))
        core.handle(ack(target_index(ping), seq_of(ping)), t)
    assert sorted(seen) == [1, 2, 3, 4, 5]


def test_a_probe_of_a_suspect_tells_it_that_it_is_suspected() -> None:
    core = make_core(peers=(1,))
    core.handle(make_message("suspect", "n2", None,
                             payload={"node": "n1", "incarnation": 0, **extra(2)}), 0.0)
    _, ping = start_probe(core)
    assert suspect_item("n1", 0, "n0") in gossip_items([ping])
