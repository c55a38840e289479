"""ProviderAdapter: dispatch, change detection and the fault rules, without processes."""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

import pytest

from actors.providers.adapter import QUARANTINE_RETRY_S, ProviderAdapter, own_writes
from examples.sticky import StickyProvider
from transport.protocol import (
    ApplyResult,
    LamportClock,
    SyncableState,
    make_syncable_state,
    syncable_state_to_map,
)
from transport.rpc import RpcError


class Poisoned(StickyProvider):
    """Raises on any batch holding a value listed in `poison` (a bug tied to data)."""

    poison: set[str] = {"bad"}
    raise_in: set[str] = set()

    def apply_remote_state(self, states: list[SyncableState]) -> ApplyResult:
        if any(s.value in self.poison for s in states):
            raise AttributeError("'list' object has no attribute 'key'")
        return super().apply_remote_state(states)

    def get_state_digest(self) -> dict[tuple[str, str], int]:
        if "digest" in self.raise_in:
            raise OSError("disk gone")
        return super().get_state_digest()

    def cmd_crash(self, args: Mapping[str, Any], now: float) -> None:
        raise RuntimeError("boom")

    def cmd_strict(self, args: Mapping[str, Any], now: float) -> None:
        raise KeyError("key")


class NoDrain:
    """A minimal provider without drain_changes: changes are found by a diff."""

    def __init__(self) -> None:
        self.states: dict[str, SyncableState] = {}

    def provider_type(self) -> str:
        return "nodrain"

    def get_sync_state(self) -> list[SyncableState]:
        return list(self.states.values())

    def get_state_digest(self) -> dict[tuple[str, str], int]:
        return {("nodrain", k): s.version for k, s in self.states.items()}

    def apply_remote_state(self, states: list[SyncableState]) -> ApplyResult:
        for s in states:
            self.states[s.key] = s
        return {"applied": len(states), "conflicts": 0, "rejected": 0}

    def on_node_failure(self, node_id: str) -> None:
        pass


def state(key: str, value: Any, version: int, source: str = "n9") -> SyncableState:
    return make_syncable_state("sticky", key, value, version, source)


@pytest.fixture
def adapter() -> ProviderAdapter:
    clock = LamportClock()
    return ProviderAdapter(Poisoned("n1", clock), clock)


def test_one_poisoned_state_is_quarantined_and_the_rest_of_its_batch_applies(adapter):
    result = adapter.apply([state("a", "web1", 3), state("b", "bad", 4), state("c", "x", 5)],
                           now=0.0)
    assert result == {"applied": 2, "conflicts": 0, "rejected": 0, "quarantined": 1}
    assert set(adapter.provider.entries) == {"a", "c"}  # type: ignore[attr-defined]
    assert [r["key"] for r in adapter.quarantine_rows()] == ["b"]
    assert adapter.counters["errors.apply"] == 1 and adapter.counters["quarantined"] == 1
    assert adapter.clock.current() == 5  # every version witnessed, the poisoned one too


def test_a_quarantined_state_is_reported_as_held_and_not_offered_again(adapter):
    adapter.apply([state("b", "bad", 4)], now=0.0)
    assert adapter.digest(0.0)[("sticky", "b")] == 4  # so anti-entropy stops offering it
    again = adapter.apply([state("b", "bad", 4)], now=1.0)
    assert again["quarantined"] == 1 and adapter.counters["errors.apply"] == 1  # no new call


def test_a_newer_version_of_a_quarantined_key_replaces_it_and_may_apply(adapter):
    adapter.apply([state("b", "bad", 4)], now=0.0)
    result = adapter.apply([state("b", "good", 6)], now=1.0)
    assert result["applied"] == 1 and adapter.quarantined == 0


def test_a_quarantined_state_is_retried_with_backoff_and_heals_when_the_fault_passes(adapter):
    adapter.apply([state("b", "bad", 4)], now=0.0)
    assert adapter.next_deadline() == QUARANTINE_RETRY_S[0]
    adapter.tick(QUARANTINE_RETRY_S[0])  # still raising: held again, for longer
    assert adapter.quarantined == 1 and adapter.quarantine_rows()[0]["tries"] == 2
    assert adapter.next_deadline() == QUARANTINE_RETRY_S[0] + QUARANTINE_RETRY_S[1]
    adapter.provider.poison = set()  # type: ignore[attr-defined]  # the bug was fixed
    adapter.tick(QUARANTINE_RETRY_S[0] + QUARANTINE_RETRY_S[1])
    assert adapter.quarantined == 0 and adapter.counters["unquarantined"] == 1
    assert adapter.provider.entries["b"].value == "bad"  # type: ignore[attr-defined]


def test_a_command_that_raises_answers_provider_error_with_type_and_message(adapter):
    with pytest.raises(RpcError) as raised:
        adapter.handle("crash", {}, now=0.0)
    assert (raised.value.code, raised.value.message) == ("provider_error", "RuntimeError: boom")
    assert adapter.counters["errors.command"] == 1


def test_a_callers_mistake_in_a_command_is_a_bad_request(adapter):
    with pytest.raises(RpcError) as raised:
        adapter.handle("put", {"key": ""}, now=0.0)
    assert raised.value.code == "bad_request"
    with pytest.raises(RpcError, match="key") as raised:
        adapter.handle("strict", {}, now=0.0)
    assert raised.value.code == "bad_request" and not adapter.counters


def test_an_unknown_or_private_command_is_unknown_op(adapter):
    for op in ("nope", "_keep"):
        with pytest.raises(RpcError) as raised:
            adapter.handle(op, {}, now=0.0)
        assert raised.value.code == "unknown_op"


def test_the_same_error_is_reported_once_per_period_but_counted_every_time(adapter):
    for now in (0.0, 1.0, 2.0):
        with pytest.raises(RpcError):
            adapter.handle("crash", {}, now=now)
    faults = adapter.take_faults()
    assert [(f.method, f.error) for f in faults] == [("command", "RuntimeError: boom")]
    assert "Traceback" in faults[0].trace and adapter.counters["errors.command"] == 3
    with pytest.raises(RpcError):
        adapter.handle("crash", {}, now=1000.0)
    assert len(adapter.take_faults()) == 1


def test_a_query_the_provider_fails_is_a_provider_error(adapter):
    adapter.provider.raise_in = {"digest"}  # type: ignore[attr-defined]
    with pytest.raises(RpcError) as raised:
        adapter.handle("digest", {}, now=0.0)
    assert raised.value.message == "OSError: disk gone"
    assert adapter.last_error == {"method": "digest", "error": "OSError: disk gone"}


def test_apply_over_the_wire_counts_malformed_states_as_rejected(adapter):
    args = {"states": [syncable_state_to_map(state("a", "web1", 2)), {"junk": 1}], "clock": 40}
    assert adapter.handle("apply", args, now=0.0)["rejected"] == 1
    assert adapter.clock.current() == 40


def test_a_journal_replay_that_raises_quarantines_instead_of_crashing(adapter):
    result = adapter.replay([state("a", "web1", 1), state("b", "bad", 2)], now=0.0)
    assert result["quarantined"] == 1 and adapter.changes(0.0) == []


def test_changes_come_from_drain_changes_or_from_a_diff_of_versions():
    clock = LamportClock()
    sticky = ProviderAdapter(StickyProvider("n1", clock), clock)
    sticky.handle("put", {"key": "k", "value": "v"}, now=0.0)
    assert [s.key for s in sticky.changes(0.0)] == ["k"] and sticky.changes(0.0) == []
    plain = ProviderAdapter(NoDrain(), clock)  # type: ignore[arg-type]
    plain.apply([make_syncable_state("nodrain", "x", 1, 1, "n2")], now=0.0)
    assert [s.key for s in plain.changes(0.0)] == ["x"] and plain.changes(0.0) == []


def test_reconcile_applies_what_the_node_holds_newer_and_returns_what_it_lacks(adapter):
    adapter.handle("put", {"key": "mine", "value": "w"}, now=0.0)
    adapter.changes(0.0)
    lacking = adapter.reconcile([state("theirs", "w2", 7)], now=0.0)
    assert [s.key for s in lacking] == ["mine"]
    assert "theirs" in adapter.provider.entries  # type: ignore[attr-defined]


def test_the_key_count_comes_from_len_when_the_provider_has_one(adapter):
    from actors.providers.kv import KvProvider

    clock = LamportClock()
    kv = ProviderAdapter(KvProvider("n1", clock), clock)
    kv.handle("set", {"key": "a", "value": 1}, now=0.0)
    kv.handle("del", {"key": "a"}, now=0.0)
    assert kv.key_count() == 1  # the tombstone is held too
    assert adapter.key_count() is None  # the sticky example has no __len__


def test_own_writes_during_a_request_are_the_nodes_own_states_it_did_not_deliver():
    delivered = SyncableState("rate", "api@me", {"b": []}, 7, "me")  # an earlier life's
    remote = SyncableState("rate", "api@other", {"b": []}, 9, "other")
    flushed = SyncableState("rate", "api@me", {"b": []}, 12, "me")  # written meanwhile
    args = {"states": [syncable_state_to_map(delivered), syncable_state_to_map(remote)]}
    assert own_writes([delivered, remote, flushed], "me", "apply", args) == [flushed]
    assert own_writes([flushed, remote], "me", "clock", {"clock": 40}) == [flushed]
    assert own_writes([remote], "me", "apply", {"states": "junk"}) == []
