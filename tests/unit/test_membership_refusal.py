"""The crash fast path: refused connections as near-proof of a crashed node."""

from __future__ import annotations

import pytest
from test_membership_support import (
    LAN,
    extra,
    gossip_items,
    info,
    make_core,
    news,
    status_of,
    suspect_item,
)

from transport.protocol import alive_message


def test_a_refusal_suspects_the_member_at_once_and_spreads_it_immediately() -> None:
    core = make_core(peers=(1, 2, 3, 4))
    out = core.connection_refused("n1", 5.0)
    assert status_of(core, "n1") == "suspect"
    assert [e.kind for e in core.drain_events()] == ["node.suspect"]
    assert len(out) == LAN.gossip_nodes  # not waiting for the next gossip round
    assert info(1).address not in {o.address for o in out}  # nor wasted on the crashed node
    assert suspect_item("n1", 0, "n0", refused=True) in gossip_items(out)
    assert core.counters["refused"] == 1


def test_a_refusal_backed_suspicion_expires_after_the_refused_timeout() -> None:
    core = make_core(peers=range(1, 10))  # the Lifeguard timer alone would be 24 s
    core.connection_refused("n1", 5.0)
    assert core.next_deadline() is not None
    core.tick(5.0 + LAN.refused_timeout_s - 0.01)
    assert status_of(core, "n1") == "suspect"
    core.tick(5.0 + LAN.refused_timeout_s)
    assert status_of(core, "n1") == "dead"
    assert core.counters["refused_deaths"] == 1


def test_a_refusal_reported_by_another_member_starts_the_short_timer_on_receipt() -> None:
    core = make_core(peers=range(1, 10))
    out = core.handle(news(2, [suspect_item("n1", 0, "n2", refused=True)]), 7.0)
    assert suspect_item("n1", 0, "n2", refused=True) in gossip_items(out)  # forwarded at once
    assert core.suspicion_deadline("n1") == pytest.approx(7.0 + LAN.refused_timeout_s)
    assert core.counters["refused_confirmations"] == 1


def test_a_refusal_added_to_an_ordinary_suspicion_shortens_it() -> None:
    core = make_core(peers=range(1, 10))
    core.handle(news(2, [suspect_item("n1", 0, "n2")]), 0.0)
    assert core.suspicion_deadline("n1") == pytest.approx(24.0)
    core.handle(news(3, [suspect_item("n1", 0, "n3", refused=True)]), 3.0)
    assert core.suspicion_deadline("n1") == pytest.approx(3.0 + LAN.refused_timeout_s)


def test_connection_ok_withdraws_our_refusal_and_the_lifeguard_timer_resumes() -> None:
    core = make_core(peers=range(1, 10))
    core.connection_refused("n1", 5.0)
    core.connection_ok("n1", 5.1)
    assert core.suspicion_deadline("n1") == pytest.approx(5.0 + 24.0)
    core.tick(6.0)
    assert status_of(core, "n1") == "suspect"
    assert core.counters["refused_withdrawn"] == 1


def test_connection_ok_keeps_other_members_refusals() -> None:
    core = make_core(peers=range(1, 10))
    core.connection_refused("n1", 5.0)
    core.handle(news(2, [suspect_item("n1", 0, "n2", refused=True)]), 5.05)
    core.connection_ok("n1", 5.1)
    assert core.suspicion_deadline("n1") == pytest.approx(5.0 + LAN.refused_timeout_s)


def test_a_refusal_backed_suspicion_is_refuted_like_any_other() -> None:
    core = make_core(peers=range(1, 10))
    core.connection_refused("n1", 5.0)
    core.handle(alive_message("n1", 1, payload_extra=extra(1, 1)), 5.2)
    core.tick(10.0)
    assert status_of(core, "n1") == "alive"
    assert [e.kind for e in core.drain_events()] == ["node.suspect", "node.alive"]


def test_a_refusal_at_a_new_incarnation_suspects_again() -> None:
    core = make_core(peers=range(1, 10))
    core.connection_refused("n1", 5.0)
    core.handle(alive_message("n1", 1, payload_extra=extra(1, 1)), 5.2)
    core.connection_refused("n1", 6.0)
    assert status_of(core, "n1") == "suspect"


@pytest.mark.parametrize("node_id", ["n0", "n42"])
def test_a_refusal_about_ourselves_or_a_stranger_is_ignored(node_id: str) -> None:
    core = make_core(peers=(1,))
    assert core.connection_refused(node_id, 1.0) == []
    assert core.counters["refused_ignored"] == 1
    assert core.drain_events() == []


def test_a_repeated_refusal_adds_no_event_and_no_new_gossip_burst() -> None:
    core = make_core(peers=(1, 2, 3))
    core.connection_refused("n1", 1.0)
    core.drain_events()
    assert core.connection_refused("n1", 1.1) == []
    assert core.drain_events() == []


def test_a_refusal_about_a_dead_member_is_ignored() -> None:
    core = make_core(peers=(1, 2))
    core.connection_refused("n1", 1.0)
    core.tick(1.0 + LAN.refused_timeout_s)
    assert core.connection_refused("n1", 2.0) == []
    assert core.counters["refused_ignored"] == 1
