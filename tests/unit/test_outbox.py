"""LocalOutbox: local writes wait, newest per key, until anti-entropy takes them."""

from __future__ import annotations

from actors.providers import outbox
from actors.providers.outbox import LocalOutbox
from transport.protocol import SyncableState, make_syncable_state


def st(key: str, version: int) -> SyncableState:
    return make_syncable_state("kv", key, "v", version, "n0")


def test_writes_refused_by_a_full_queue_are_kept_and_sent_later() -> None:
    box, sent, accept = LocalOutbox(), [], [False]

    def send(states: list[SyncableState]) -> bool:
        if accept[0]:
            sent.append([(s.key, s.version) for s in states])
        return accept[0]

    box.add([st("a", 1), st("b", 1)])
    assert not box.flush(send) and len(box.pending) == 2
    box.add([st("a", 2), st("c", 1)])  # a newer a replaces the waiting one
    accept[0] = True
    assert box.flush(send)
    assert sent == [[("a", 2), ("b", 1), ("c", 1)]] and not box.pending


def test_a_large_backlog_goes_in_chunks_and_stops_at_the_first_refusal(monkeypatch) -> None:
    monkeypatch.setattr(outbox, "CHUNK", 2)
    box, calls = LocalOutbox(), []

    def send(states: list[SyncableState]) -> bool:
        calls.append(len(states))
        return len(calls) < 2

    box.add([st(f"k{i}", 1) for i in range(5)])
    assert not box.flush(send)
    assert calls == [2, 2] and sorted(box.pending) == [("kv", "k2"), ("kv", "k3"), ("kv", "k4")]
