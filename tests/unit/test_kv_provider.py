"""Unit tests of actors.providers.kv: the built-in replicated key/value provider."""

from __future__ import annotations

from typing import Any

import pytest

from actors.anti_entropy.core.wire import MAX_SEEN
from actors.providers.base import ProviderOptionError
from actors.providers.kv import MAX_KEY_CHARS, MAX_VALUE_BYTES_LIMIT, KvError, KvProvider
from transport.codec import DEFAULT_LIMITS, encode
from transport.protocol import (
    LamportClock,
    StateProvider,
    SyncableState,
    make_message,
    make_syncable_state,
)


def kv(node_id: str = "a", **options: Any) -> KvProvider:
    return KvProvider(node_id, LamportClock(), options, now_fn=lambda: 0.0)


def remote(version: int, key: str = "k", value: Any = "r", source: str = "b",
           state_type: str = "kv") -> SyncableState:
    return make_syncable_state(state_type, key, value, version, source)


def test_the_kv_provider_implements_state_provider() -> None:
    provider = kv()
    assert isinstance(provider, StateProvider)
    assert provider.provider_type() == "kv"


def test_set_get_delete_and_items() -> None:
    provider = kv()
    first = provider.set("a", {"n": [1, 2]}, 0.0)
    provider.set("b", "x", 0.0)
    assert provider.get("a") == {"n": [1, 2]} and first.source_node == "a"
    deleted = provider.delete("a", 1.0)
    assert deleted.value is None and deleted.version > first.version
    assert provider.get("a") is None and provider.get("never") is None
    assert provider.items() == [("b", "x")]
    assert {s.key for s in provider.get_sync_state()} == {"a", "b"}  # tombstone included
    assert provider.get_state_digest() == {("kv", "a"): deleted.version, ("kv", "b"): 2}


@pytest.mark.parametrize(("key", "value", "reason"), [
    ("", 1, "bad_key"),
    ("k" * 257, 1, "bad_key"),
    (7, 1, "bad_key"),
    ("k", None, "bad_value"),
    ("k", {1: "int key"}, "bad_value"),
    ("k", object(), "bad_value"),
    ("k", "x" * 70_000, "value_too_large"),
])
def test_bad_keys_and_values_raise_a_clear_kv_error(key: Any, value: Any, reason: str) -> None:
    provider = kv()
    with pytest.raises(KvError) as info:
        provider.set(key, value, 0.0)
    assert info.value.reason == reason
    assert provider.get_sync_state() == []


def test_the_value_bound_is_an_option_and_counts_encoded_bytes() -> None:
    provider = kv(max_value_bytes=10)
    provider.set("k", "x" * 8, 0.0)  # 9 bytes encoded
    with pytest.raises(KvError, match="max_value_bytes is 10"):
        provider.set("k", "x" * 10, 0.0)


@pytest.mark.parametrize(("options", "option", "reason"), [
    ({"max_value_bytes": 0}, "max_value_bytes", "must be between 1 and"),
    ({"max_value_bytes": "big"}, "max_value_bytes", "must be an integer, not str"),
    ({"max_value_bytes": 1.5}, "max_value_bytes", "must be an integer, not float"),
    ({"max_value_bytes": True}, "max_value_bytes", "not a boolean"),
    ({"max_value_bytes": MAX_VALUE_BYTES_LIMIT + 1}, "max_value_bytes",
     f"and {MAX_VALUE_BYTES_LIMIT} "),
    ({"max_value_bytes": 64 << 20}, "max_value_bytes", "must be between"),
    ({"tombstone_grace_s": -1}, "tombstone_grace_s", "must be between"),
    ({"tombstone_grace_s": "1h"}, "tombstone_grace_s", "must be a number, not str"),
    ({"tombstone_grace_s": float("inf")}, "tombstone_grace_s", "finite"),
    ({"colour": "red"}, "colour", "unknown option"),
])
def test_bad_options_are_refused_at_load_naming_the_option(options: dict[str, Any], option: str,
                                                           reason: str) -> None:
    with pytest.raises(ProviderOptionError, match=reason) as info:
        KvProvider.validate_options(options)
    assert info.value.option == option
    with pytest.raises(ProviderOptionError):
        kv(**options)


def test_the_value_bound_may_reach_one_frame_less_its_headroom() -> None:
    assert DEFAULT_LIMITS.max_message_bytes > MAX_VALUE_BYTES_LIMIT
    writer = "w" * 128  # the longest node id, key and cluster name: the largest envelope
    provider = KvProvider(writer, LamportClock(), {"max_value_bytes": MAX_VALUE_BYTES_LIMIT})
    state = provider.set("\U0001f600" * MAX_KEY_CHARS, "x" * (MAX_VALUE_BYTES_LIMIT - 8), 0.0)
    # The largest value allowed still travels in one frame, in the largest message that
    # carries states: a fast push naming as many nodes as it may.
    seen = [f"{i:03d}" + "n" * 125 for i in range(MAX_SEEN)]
    msg = make_message("push", writer, "t" * 128, [state],
                       payload={"ae": "fast", "hops": 3, "seen": seen})
    assert len(encode(msg, "c" * 64)) <= DEFAULT_LIMITS.max_message_bytes


def test_remote_states_are_applied_by_version_and_counted() -> None:
    provider = kv()
    provider.set("mine", 1, 0.0)
    result = provider.apply_remote_state([
        remote(5), remote(4, "k"), remote(1, "mine", source="0"),
        remote(1, "mine", source="z"), remote(3, "other", state_type="health"),
    ])
    assert result == {"applied": 1, "conflicts": 2, "rejected": 2}
    assert provider.get("k") == "r" and provider.get("mine") == "r"


def test_remote_versions_are_witnessed_so_local_writes_win_afterwards() -> None:
    provider = kv()
    provider.apply_remote_state([remote(100)])
    assert provider.set("k", "local", 0.0).version == 101
    assert provider.get("k") == "local"


def test_a_remote_value_above_the_local_bound_is_still_accepted() -> None:
    provider = kv(max_value_bytes=10)
    assert provider.apply_remote_state([remote(1, value="x" * 100)])["applied"] == 1


def test_drain_changes_returns_local_and_remote_changes_once() -> None:
    provider = kv()
    provider.set("a", 1, 0.0)
    provider.set("a", 2, 0.0)
    provider.apply_remote_state([remote(9, "b")])
    assert sorted((s.key, s.value) for s in provider.drain_changes()) == [("a", 2), ("b", "r")]
    assert provider.drain_changes() == []


def test_tombstones_are_collected_after_the_grace_period() -> None:
    provider = kv(tombstone_grace_s=5)
    provider.set("k", "v", 0.0)
    provider.delete("k", 1.0)
    assert provider.gc(5.9) == 0 and provider.gc(6.0) == 1
    assert provider.state_of("k") is None and provider.get_sync_state() == []


def test_remote_states_are_not_held_to_the_providers_own_horizon() -> None:
    # The mirror is the one gate: what it offers is applied even after a local GC.
    provider = kv(tombstone_grace_s=5)
    provider.delete("gone", 0.0)
    provider.gc(5.0)
    result, _ = provider.apply_remote([remote(1, "late")], 6.0)
    assert result["applied"] == 1 and provider.get("late") == "r"


def test_commands_answer_what_the_cli_prints() -> None:
    provider = kv()
    assert provider.cmd_set({"key": "k", "value": 3}, 0.0) == {"key": "k", "version": 1}
    assert provider.cmd_get({"key": "k"}, 0.0) == {"key": "k", "found": True, "value": 3,
                                                   "version": 1}
    assert provider.cmd_del({"key": "k"}, 0.0) == {"key": "k", "version": 2, "existed": True}
    assert provider.cmd_get({"key": "k"}, 0.0) == {"key": "k", "found": False, "value": None,
                                                   "version": None}
    with pytest.raises(KvError, match="needs a value"):
        provider.cmd_set({"key": "k"}, 0.0)
    with pytest.raises(KvError, match="bad_key"):
        provider.cmd_get({}, 0.0)


def test_node_failure_changes_nothing() -> None:
    provider = kv()
    provider.set("k", 1, 0.0)
    provider.on_node_failure("b")
    assert provider.items() == [("k", 1)]


def test_the_digest_by_buckets_covers_the_whole_digest() -> None:
    """Reconcile reads a provider's table a bucket slice at a time: the slices of a
    provider's own (unsummarised) table must add up to its whole digest."""
    from actors.core.store import DIGEST_BUCKETS

    p = kv()
    for i in range(300):
        p.set(f"k{i}", i, 0.0)
    p.delete("k7", 0.0)
    whole = p.get_state_digest()
    halves = (p.get_state_digest_in(range(0, DIGEST_BUCKETS // 2)),
              p.get_state_digest_in(range(DIGEST_BUCKETS // 2, DIGEST_BUCKETS)))
    assert len(whole) == 300 and {**halves[0], **halves[1]} == whole
    assert not set(halves[0]) & set(halves[1])
