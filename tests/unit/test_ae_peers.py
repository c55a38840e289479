"""The anti-entropy shell's peer list: it follows membership events, and a periodic
`members` request repairs what a missed event left wrong."""

from __future__ import annotations

import random
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
import zmq

from actors.anti_entropy.actor import MEMBERS_REFRESH_S, AntiEntropyActor
from actors.anti_entropy.core.engine import AntiEntropy
from actors.node.config import SYNC_META_KEY, load_config
from actors.runtime import NodeEnv

CONFIG = """
[node]
id = "a"
cluster = "c1"
data_dir = "data"
[network]
gossip = "tcp://127.0.0.1:7946"
sync = "tcp://127.0.0.1:7947"
[local]
events = "tcp://127.0.0.1:7948"
control = "ipc://data/control.sock"
"""


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


_made: list[AntiEntropyActor] = []


@pytest.fixture(autouse=True)
def _close_pools() -> Iterator[None]:
    yield
    while _made:
        _made.pop().pool.close()


def _actor(tmp_path: Path) -> tuple[AntiEntropyActor, FakeMembership]:
    path = tmp_path / "node.toml"
    path.write_text(CONFIG)
    env = NodeEnv(load_config(path), "a", "t")
    actor = AntiEntropyActor("anti_entropy", env, zmq.Context.instance())
    actor.core = AntiEntropy("a", actor.store, actor.config, random.Random(1), actor.clock)
    fake = FakeMembership()
    actor.membership = fake  # type: ignore[assignment]
    # No runtime polls here: the peer pool's monitors go unwatched.
    actor.watch = lambda sock, handler: None  # type: ignore[method-assign]
    actor.unwatch = lambda sock: None  # type: ignore[method-assign]
    env.config.node.data_dir.mkdir(parents=True, exist_ok=True)
    _made.append(actor)
    return actor, fake


def test_a_peer_whose_join_event_was_missed_is_found_by_the_refresh(tmp_path):
    actor, members = _actor(tmp_path)
    members.rows = [_row("a"), _row("b")]
    actor.tick(0.0)
    assert set(actor.peers) == {"b"}
    members.rows.append(_row("c"))  # joined; its event never reached this actor
    actor.tick(MEMBERS_REFRESH_S / 2)
    assert set(actor.peers) == {"b"} and members.asked == 1
    actor.tick(MEMBERS_REFRESH_S + 0.01)
    assert set(actor.peers) == {"b", "c"} and members.asked == 2


def test_a_peer_failed_or_reaped_unseen_is_dropped_by_the_refresh(tmp_path):
    actor, members = _actor(tmp_path)
    members.rows = [_row("a"), _row("b"), _row("c")]
    actor.tick(0.0)
    assert set(actor.peers) == {"b", "c"}
    members.rows = [_row("a"), _row("b", "failed")]  # c is gone from the table
    actor.tick(MEMBERS_REFRESH_S + 0.01)
    assert actor.peers == {}


def test_the_refresh_is_due_in_the_actor_deadline(tmp_path):
    actor, _ = _actor(tmp_path)
    actor.tick(10.0)
    deadline = actor.next_deadline()
    assert deadline is not None and deadline <= 10.0 + MEMBERS_REFRESH_S


def _cut_short(sock, cluster, security, counters):
    """A read that ended its batch early (one slow message on a loaded machine)."""
    counters["inbox_yielded"] += 1
    yield from ()


def test_busy_only_while_something_still_waits_in_the_inbox(tmp_path, monkeypatch):
    monkeypatch.setattr("actors.anti_entropy.actor.read_inbox", _cut_short)
    actor, _ = _actor(tmp_path)
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
