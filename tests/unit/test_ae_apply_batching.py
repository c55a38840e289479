"""The anti-entropy shell's hand-over to a provider: one `apply` per inbox wake-up,
and no `clock` notify the provider does not need (each is a provider wake-up)."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import pytest

import actors.anti_entropy.actor as ae_actor
from actors.anti_entropy.actor import AntiEntropyActor
from transport.protocol import SyncableState, make_message, syncable_state_to_map
from transport.rpc import Request, RpcError


class FakeClient:
    """Records what the actor asks of a provider; the test answers the requests."""

    def __init__(self) -> None:
        self.requests: list[tuple[str, dict[str, Any], Any]] = []
        self.notes: list[tuple[str, dict[str, Any]]] = []

    def request(self, op: str, args: dict[str, Any], now: float, timeout_s: float,
                callback: Any) -> None:
        self.requests.append((op, args, callback))

    def notify(self, op: str, args: dict[str, Any]) -> bool:
        self.notes.append((op, args))
        return True

    def expire(self, now: float) -> None:
        pass

    def next_deadline(self) -> float | None:
        return None

    def applies(self) -> list[tuple[dict[str, Any], Any]]:
        return [(args, cb) for op, args, cb in self.requests if op == "apply"]

    def clocks(self) -> list[int]:
        return [args["clock"] for op, args in self.notes if op == "clock"]


def _actor(ae_actor: Callable[[], AntiEntropyActor]) -> tuple[AntiEntropyActor, FakeClient]:
    actor = ae_actor()
    actor.membership = FakeClient()  # type: ignore[assignment]
    provider = FakeClient()
    actor.providers["kv"] = provider  # type: ignore[assignment]
    actor.next_members = actor.next_reconcile = actor.next_save = float("inf")
    return actor, provider


def _push(sender: str, *states: SyncableState) -> Any:
    return make_message("push", sender, None, states, payload={"ae": "fast", "hops": 1,
                                                               "seen": [sender]})


def _kv(key: str, version: int, source: str = "b") -> SyncableState:
    return SyncableState("kv", key, {"v": version}, version, source)


class EmptyInbox:
    def poll(self, *args: Any) -> int:
        return 0


def _drain(monkeypatch: pytest.MonkeyPatch, actor: AntiEntropyActor, msgs: list[Any]) -> None:
    """One inbox wake-up that reads `msgs`."""
    monkeypatch.setattr(ae_actor, "read_inbox", lambda *args: iter(msgs))
    actor.inbox = EmptyInbox()  # type: ignore[assignment]
    actor._on_inbox(1.0)


def test_what_one_wake_up_drained_goes_to_the_provider_as_one_apply(
        ae_actor, monkeypatch):
    actor, provider = _actor(ae_actor)
    msgs = [_push("b", _kv("x", 5)), _push("c", _kv("y", 6, "c")), _push("b", _kv("x", 7))]
    _drain(monkeypatch, actor, msgs)
    (args, _), = provider.applies()
    assert sorted((m["k"], m["ver"]) for m in args["states"]) == [("x", 7), ("y", 6)]


def test_no_clock_notify_after_an_apply_that_carried_the_clock(ae_actor, monkeypatch):
    actor, provider = _actor(ae_actor)
    actor.tick(0.5)
    provider.notes.clear()
    _drain(monkeypatch, actor, [_push("b", _kv("x", 40))])
    (args, done), = provider.applies()
    assert args["clock"] >= 40
    done({"applied": 1}, None)
    actor.tick(1.0)
    assert provider.clocks() == []


def test_a_failed_apply_is_followed_by_a_clock_notify(ae_actor, monkeypatch):
    actor, provider = _actor(ae_actor)
    actor.tick(0.5)
    provider.notes.clear()
    _drain(monkeypatch, actor, [_push("b", _kv("x", 40))])
    (_, done), = provider.applies()
    done(None, RpcError("timeout", "no answer"))
    actor.tick(1.0)
    assert provider.clocks() == [actor.clock.current()]


def test_a_providers_own_write_needs_no_clock_notify_but_a_higher_clock_does(ae_actor):
    actor, provider = _actor(ae_actor)
    actor.tick(0.5)
    provider.notes.clear()
    own = syncable_state_to_map(_kv("mine", 12, "a"))
    actor.handle_request(Request((), 0, "local", {"states": [own]}), 1.0)
    actor.tick(1.0)
    assert provider.clocks() == []
    actor.clock.update(99)  # e.g. a horizon learned from a peer
    actor.tick(1.5)
    assert provider.clocks() == [99]
