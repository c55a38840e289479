"""The anti-entropy shell's peer list: it follows membership events, and a periodic
`members` request repairs what a missed event left wrong."""

from __future__ import annotations

import socket
import time
from collections.abc import Callable
from typing import Any

import zmq
from conftest import MINIMAL_CONFIG

from actors.anti_entropy.actor import MEMBERS_REFRESH_S, AntiEntropyActor
from actors.anti_entropy.core.engine import Outbound
from actors.node.config import SYNC_META_KEY
from transport.peerpool import MAX_PEERS
from transport.protocol import make_message

CONFIG = MINIMAL_CONFIG


class FakeMembership:
    """Answers `members` with whatever the test put in `rows`."""

    def __init__(self) -> None:
        self.rows: list[dict[str, Any]] = []
        self.asked = 0

    def request(self, op: str, args: dict[str, Any], now: float, timeout_s: float,
                callback: Any) -> None:
        assert op == "members"
        self.asked += 1
        callback(list(self.rows), None)

    def expire(self, now: float) -> None:
        pass

    def next_deadline(self) -> float | None:
        return None


def _row(node_id: str, status: str = "alive") -> dict[str, Any]:
    return {"node_id": node_id, "status": status,
            "metadata": {SYNC_META_KEY: f"tcp://127.0.0.1:1{len(node_id)}000"}}


def _actor(ae_actor: Callable[[str], AntiEntropyActor]) -> tuple[AntiEntropyActor, FakeMembership]:
    actor = ae_actor(CONFIG)
    fake = FakeMembership()
    actor.membership = fake  # type: ignore[assignment]
    # No runtime polls here: the peer pool's monitors go unwatched.
    actor.watch = lambda sock, handler: None  # type: ignore[method-assign]
    actor.unwatch = lambda sock: None  # type: ignore[method-assign]
    return actor, fake


def test_a_peer_whose_join_event_was_missed_is_found_by_the_refresh(ae_actor):
    actor, members = _actor(ae_actor)
    members.rows = [_row("a"), _row("b")]
    actor.tick(0.0)
    assert set(actor.peers) == {"b"}
    members.rows.append(_row("c"))  # joined; its event never reached this actor
    actor.tick(MEMBERS_REFRESH_S / 2)
    assert set(actor.peers) == {"b"} and members.asked == 1
    actor.tick(MEMBERS_REFRESH_S + 0.01)
    assert set(actor.peers) == {"b", "c"} and members.asked == 2


def test_a_peer_failed_or_reaped_unseen_is_dropped_by_the_refresh(ae_actor):
    actor, members = _actor(ae_actor)
    members.rows = [_row("a"), _row("b"), _row("c")]
    actor.tick(0.0)
    assert set(actor.peers) == {"b", "c"}
    members.rows = [_row("a"), _row("b", "failed")]  # c is gone from the table
    actor.tick(MEMBERS_REFRESH_S + 0.01)
    assert actor.peers == {}


def test_the_refresh_is_due_in_the_actor_deadline(ae_actor):
    actor, _ = _actor(ae_actor)
    actor.tick(10.0)
    deadline = actor.next_deadline()
    assert deadline is not None and deadline <= 10.0 + MEMBERS_REFRESH_S


def _cut_short(sock, cluster, security, counters):
    """A read that ended its batch early (one slow message on a loaded machine)."""
    counters["inbox_yielded"] += 1
    yield from ()


def test_busy_only_while_something_still_waits_in_the_inbox(ae_actor, monkeypatch):
    monkeypatch.setattr("actors.anti_entropy.actor.read_inbox", _cut_short)
    actor, _ = _actor(ae_actor)
    ctx = zmq.Context.instance()
    actor.inbox = ctx.socket(zmq.PULL)
    actor.inbox.bind("inproc://ae-busy-test")
    push = ctx.socket(zmq.PUSH)
    push.connect("inproc://ae-busy-test")
    try:
        actor._on_inbox(0.0)
        assert actor.core.busy is False  # cut short, yet nothing waits: not busy
        push.send(b"pending")
        assert actor.inbox.poll(1000, zmq.POLLIN)
        actor._on_inbox(0.0)
        assert actor.core.busy is True
    finally:
        push.close(linger=0)
        actor.inbox.close(linger=0)


def _refusing(count: int, held: list[socket.socket]) -> list[str]:
    """Endpoints that refuse every dial: bound, never listening, held by the test."""
    for _ in range(count):
        s = socket.socket()
        s.bind(("127.0.0.1", 0))
        held.append(s)
    return [f"tcp://127.0.0.1:{s.getsockname()[1]}" for s in held[-count:]]


def test_fifteen_hundred_live_peers_cost_at_most_the_pool_cap_and_never_crash(ae_actor):
    actor, members = _actor(ae_actor)
    held: list[socket.socket] = []
    try:
        endpoints = _refusing(1500, held)
        members.rows = [{"node_id": f"p{i}", "status": "alive",
                         "metadata": {SYNC_META_KEY: e}} for i, e in enumerate(endpoints)]
        actor.tick(0.0)
        assert len(actor.peers) == 1500
        syn = make_message("summary", "a", None, payload={"ae": "syn"})
        for i, _ in enumerate(endpoints):
            actor._send([Outbound(f"p{i}", syn)])
            if i % 100 == 0:
                time.sleep(0.01)  # an actor's loop polls between bursts
        assert len(actor.pool) == actor.pool.max_peers == MAX_PEERS
        assert actor.counters["peers_evicted"] >= 1500 - MAX_PEERS - actor.counters["dial_failed"]
        assert actor.counters["sent"] + actor.counters["dial_failed"] >= 1500
    finally:
        for s in held:
            s.close()


def test_a_peer_that_fails_is_hung_up(ae_actor):
    actor, members = _actor(ae_actor)
    held: list[socket.socket] = []
    try:
        (endpoint,) = _refusing(1, held)
        members.rows = [{"node_id": "b", "status": "alive", "metadata": {SYNC_META_KEY: endpoint}}]
        actor.tick(0.0)
        actor._send([Outbound("b", make_message("summary", "a", None, payload={"ae": "syn"}))])
        assert endpoint in actor.pool
        actor.on_event({"type": "node.failed", "data": {"node_id": "b", "status": "failed"}}, 1.0)
        assert endpoint not in actor.pool and actor.peers == {}
    finally:
        for s in held:
            s.close()
