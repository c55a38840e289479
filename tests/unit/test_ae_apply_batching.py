"""The anti-entropy shell's hand-over to a provider: one `apply` per inbox wake-up,
at most APPLIES_IN_FLIGHT of them waiting (the rest coalesced), and no `clock`
notify the provider does not need (each is a provider wake-up)."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import pytest

import actors.anti_entropy.actor as ae_module
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
    monkeypatch.setattr(ae_module, "read_inbox", lambda *args: iter(msgs))
    actor.inbox = EmptyInbox()  # type: ignore[assignment]
    actor._on_inbox(1.0)


def test_what_one_wake_up_drained_goes_to_the_provider_as_one_apply(
        ae_actor, monkeypatch):
    actor, provider = _actor(ae_actor)
    msgs = [_push("b", _kv("x", 5)), _push("c", _kv("y", 6, "c")), _push("b", _kv("x", 7))]
    _drain(monkeypatch, actor, msgs)
    (args, _), = provider.applies()
    assert sorted((m["k"], m["ver"]) for m in args["states"]) == [("x", 7), ("y", 6)]


def _one_apply_waiting(ae_actor: Callable[[], AntiEntropyActor],
                       monkeypatch: pytest.MonkeyPatch
                       ) -> tuple[AntiEntropyActor, FakeClient, dict[str, Any], Any]:
    """An actor past its first tick (clocks told) with one remote write's apply sent:
    (actor, provider, the apply's args, its callback)."""
    actor, provider = _actor(ae_actor)
    actor.tick(0.5)
    provider.notes.clear()
    _drain(monkeypatch, actor, [_push("b", _kv("x", 40))])
    (args, done), = provider.applies()
    return actor, provider, args, done


def test_no_clock_notify_after_an_apply_that_carried_the_clock(ae_actor, monkeypatch):
    actor, provider, args, done = _one_apply_waiting(ae_actor, monkeypatch)
    assert args["clock"] >= 40
    done({"applied": 1}, None)
    actor.tick(1.0)
    assert provider.clocks() == []


def test_a_failed_apply_is_followed_by_a_clock_notify(ae_actor, monkeypatch):
    actor, provider, _, done = _one_apply_waiting(ae_actor, monkeypatch)
    done(None, RpcError("timeout", "no answer"))
    actor.tick(1.0)
    assert provider.clocks() == [actor.clock.current()]


def test_a_providers_own_write_needs_no_clock_notify_but_a_higher_horizon_does(ae_actor):
    actor, provider = _actor(ae_actor)
    actor.tick(0.5)
    provider.notes.clear()
    own = syncable_state_to_map(_kv("mine", 12, "a"))
    actor.handle_request(Request((), 0, "local", {"states": [own]}), 1.0)
    actor.tick(1.0)
    assert provider.clocks() == []
    actor.core._witness_horizons({"kv": 99})  # a peer forgot kv keys up to 99
    actor.tick(1.5)
    assert provider.clocks() == [99]
    actor.tick(2.0)
    assert provider.clocks() == [99]  # told once


def test_another_types_writes_raise_the_clock_without_waking_this_provider(
        ae_actor, monkeypatch):
    actor, provider = _actor(ae_actor)
    other = FakeClient()
    actor.providers["rate"] = other  # type: ignore[assignment]
    actor.tick(0.5)
    provider.notes.clear()
    _drain(monkeypatch, actor, [_push("b", SyncableState("rate", "r@b", [], 500, "b"))])
    (_, done), = other.applies()
    done({"applied": 1}, None)
    actor.tick(1.0)
    assert actor.clock.current() >= 500
    assert provider.clocks() == [] and provider.applies() == []
    actor.core._witness_horizons({"rate": 600})  # another type's horizon: still nothing
    actor.tick(1.5)
    assert provider.clocks() == []


def test_a_restarted_provider_is_told_the_clock_again(ae_actor):
    actor, provider = _actor(ae_actor)
    actor.clock.update(70)
    actor.tick(0.5)
    assert provider.clocks() == [70]
    actor.on_event({"type": "actor.started", "data": {"actor": "provider.kv"}}, 1.0)
    actor.tick(1.0)
    assert provider.clocks() == [70, 70]


def test_applies_in_flight_are_capped_and_what_waits_leaves_as_one_batch(
        ae_actor, monkeypatch):
    actor, provider = _actor(ae_actor)
    for i in range(ae_module.APPLIES_IN_FLIGHT):
        _drain(monkeypatch, actor, [_push("b", _kv(f"k{i}", 10 + i))])
    assert len(provider.applies()) == ae_module.APPLIES_IN_FLIGHT
    # The provider is slow: later pushes wait here, newest per key.
    _drain(monkeypatch, actor, [_push("b", _kv("x", 50))])
    _drain(monkeypatch, actor, [_push("c", _kv("y", 51, "c"))])
    _drain(monkeypatch, actor, [_push("b", _kv("x", 52))])
    assert len(provider.applies()) == ae_module.APPLIES_IN_FLIGHT
    assert actor.status()["waiting_to_apply"] == 2  # x (newest) and y
    _, done = provider.applies()[0]
    done({"applied": 1}, None)
    args, _ = provider.applies()[-1]
    assert len(provider.applies()) == ae_module.APPLIES_IN_FLIGHT + 1
    assert sorted((m["k"], m["ver"]) for m in args["states"]) == [("x", 52), ("y", 51)]
    assert not actor.to_offer


def test_a_refused_apply_leaves_the_rest_waiting_for_the_next_tick(ae_actor, monkeypatch):
    actor, provider = _actor(ae_actor)

    def refuse(op: str, args: dict[str, Any], now: float, timeout_s: float,
               callback: Any) -> None:
        provider.requests.append((op, args, callback))
        callback(None, RpcError("busy", "queue full"))
    monkeypatch.setattr(ae_module, "APPLY_BATCH", 1)
    provider.request = refuse  # type: ignore[method-assign]
    _drain(monkeypatch, actor, [_push("b", _kv("x", 5), _kv("y", 6))])
    assert len(provider.applies()) == 1  # not one refusal per waiting state
    assert actor.counters["apply_failed"] == 1 and "kv" in actor.dirty
    del provider.request  # the queue has room again
    actor.tick(2.0)
    (args, _), = provider.applies()[1:]
    assert [m["k"] for m in args["states"]] == ["y"]

