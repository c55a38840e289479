"""RecentlySent: what anti-entropy holds back per peer, and for how long."""

from __future__ import annotations

from actors.anti_entropy.core.recent import RecentlySent


def test_held_per_peer_and_version_until_the_hold_expires() -> None:
    r = RecentlySent(hold_s=4.0)
    r.record("p", [(("kv", "a"), 1), (("kv", "b"), 1)], now=10.0)
    assert not r.fresh("p", ("kv", "a"), 1, 13.9)
    assert r.fresh("p", ("kv", "a"), 2, 13.9)
    assert r.fresh("q", ("kv", "a"), 1, 13.9)
    assert r.fresh("p", ("kv", "a"), 1, 14.0)
    assert len(r) == 0  # expired entries are gone, not just ignored


def test_peers_that_left_are_forgotten() -> None:
    r = RecentlySent(hold_s=4.0)
    r.record("p", [(("kv", "a"), 1)], now=0.0)
    r.record("q", [(("kv", "a"), 1)], now=0.0)
    r.forget_peers(["q"])
    assert r.fresh("p", ("kv", "a"), 1, 1.0) and not r.fresh("q", ("kv", "a"), 1, 1.0)
    assert len(r) == 1
