"""Unit tests of transport.protocol: records, maps, messages, clock, order, events."""

from __future__ import annotations

import pickle
import string
import threading
from collections.abc import Iterator
from typing import Any

import pytest

from transport import protocol as p
from transport.protocol import (
    EVENT_TYPES,
    MAX_U63,
    MESSAGE_TYPES,
    GossipMessage,
    LamportClock,
    NodeInfo,
    Order,
    ProtocolError,
    SyncableState,
    make_message,
    make_node_info,
    make_syncable_state,
)


@pytest.fixture(autouse=True)
def _clean_default_clock() -> Iterator[None]:
    p.reset_clock()
    yield
    p.reset_clock()


def state(version: int = 1, source: str = "a", value: Any = "v", key: str = "k") -> SyncableState:
    return make_syncable_state("kv", key, value, version, source)


def reason_of(fn: Any, *args: Any, **kwargs: Any) -> tuple[str, str | None]:
    with pytest.raises(ProtocolError) as info:
        fn(*args, **kwargs)
    return info.value.reason, info.value.field


# --- constants -------------------------------------------------------------


def test_message_types_keep_their_wire_order() -> None:
    assert MESSAGE_TYPES == (
        "ping", "ping-ack", "ping-req", "suspect", "alive", "join", "leave",
        "push", "pull", "push-pull", "dead", "ping-nack", "members", "summary",
    )  # fmt: skip


def test_event_types_are_exactly_the_documented_ones() -> None:
    assert set(EVENT_TYPES) == {
        "node.joined", "node.alive", "node.suspect", "node.failed", "node.left", "node.updated",
        "state.changed", "actor.started", "actor.exited", "actor.restarted", "actor.gave_up",
        "provider.error",
    }  # fmt: skip
    assert len(EVENT_TYPES) == 12


def test_protocol_error_is_a_value_error_with_reason_and_field() -> None:
    err = ProtocolError("missing_field", "sender")
    assert isinstance(err, ValueError)
    assert (err.reason, err.field) == ("missing_field", "sender")


def test_protocol_error_keeps_reason_and_field_when_pickled() -> None:
    err = pickle.loads(pickle.dumps(ProtocolError("bad_field_type", "seq")))
    assert (type(err), err.reason, err.field) == (ProtocolError, "bad_field_type", "seq")


# --- records ---------------------------------------------------------------


def test_make_node_info_defaults_metadata_to_an_empty_map() -> None:
    info = make_node_info("n1", "tcp://127.0.0.1:7946")
    assert info == NodeInfo("n1", "tcp://127.0.0.1:7946", {})


def test_make_node_info_copies_metadata() -> None:
    meta = {"zone": "a"}
    info = make_node_info("n1", "tcp://h:1", meta)
    meta["zone"] = "b"
    assert info.metadata == {"zone": "a"}


@pytest.mark.parametrize(
    ("args", "expected"),
    [
        (("", "tcp://h:1"), ("bad_field_value", "node_id")),
        ((1, "tcp://h:1"), ("bad_field_type", "node_id")),
        (("x" * 257, "tcp://h:1"), ("bad_field_value", "node_id")),
        (("n", None), ("bad_field_type", "address")),
        (("n", "tcp://h:1", {1: "x"}), ("bad_map_key", "metadata")),
        (("n", "tcp://h:1", {"x": {1, 2}}), ("bad_value_type", "metadata")),
        (("n", "tcp://h:1", ["x"]), ("bad_field_type", "metadata")),
    ],
)
def test_make_node_info_rejects_bad_fields(
    args: tuple[Any, ...], expected: tuple[str, str]
) -> None:
    assert reason_of(make_node_info, *args) == expected


def test_make_syncable_state_accepts_every_native_value_kind() -> None:
    value = {"n": None, "b": True, "i": -(2**63), "u": 2**64 - 1, "f": 1.5, "s": "x", "y": b"\0"}
    assert make_syncable_state("kv", "k", [value, (1, 2)], 3, "a").value == [value, (1, 2)]


@pytest.mark.parametrize(
    ("args", "expected"),
    [
        (("", "k", 1, 1, "a"), ("bad_field_value", "state_type")),
        (("kv", "", 1, 1, "a"), ("bad_field_value", "key")),
        (("kv", "k", 1, -1, "a"), ("out_of_range", "version")),
        (("kv", "k", 1, 2**63, "a"), ("out_of_range", "version")),
        (("kv", "k", 1, True, "a"), ("bad_field_type", "version")),
        (("kv", "k", 1, 1.0, "a"), ("bad_field_type", "version")),
        (("kv", "k", 1, 1, ""), ("bad_field_value", "source_node")),
        (("kv", "k", object(), 1, "a"), ("bad_value_type", "value")),
        (("kv", "k", 2**64, 1, "a"), ("out_of_range", "value")),
        (("kv", "k", {b"k": 1}, 1, "a"), ("bad_map_key", "value")),
    ],
)
def test_make_syncable_state_rejects_bad_fields(
    args: tuple[Any, ...], expected: tuple[str, str]
) -> None:
    assert reason_of(make_syncable_state, *args) == expected


def test_values_nested_32_deep_are_accepted_and_33_refused() -> None:
    def nest(depth: int) -> Any:
        value: Any = 1
        for _ in range(depth):
            value = [value]
        return value

    assert state(value=nest(32)).value == nest(32)
    assert reason_of(state, value=nest(33)) == ("too_deep", "value")


def test_a_cyclic_value_is_refused_without_recursion_error() -> None:
    cyclic: list[Any] = []
    cyclic.append(cyclic)
    assert reason_of(state, value=cyclic) == ("too_deep", "value")


def test_a_none_value_is_a_tombstone() -> None:
    assert p.is_tombstone(state(value=None))
    assert not p.is_tombstone(state(value=0))


def test_state_key_is_type_and_key() -> None:
    assert p.state_key(state(key="x")) == ("kv", "x")


# --- messages --------------------------------------------------------------


def test_make_message_turns_states_into_a_tuple_and_copies_the_digest() -> None:
    digest = {("kv", "k"): 1}
    msg = make_message("push-pull", "a", None, [state()], digest, None)
    digest[("kv", "j")] = 2
    assert msg.states == (state(),)
    assert msg.digest == {("kv", "k"): 1}


@pytest.mark.parametrize(
    ("kwargs", "expected"),
    [
        ({"msg_type": "gossip"}, ("unknown_msg_type", "msg_type")),
        ({"msg_type": None}, ("unknown_msg_type", "msg_type")),
        ({"sender": ""}, ("bad_field_value", "sender")),
        ({"target": 3}, ("bad_field_type", "target")),
        ({"states": ["x"]}, ("bad_field_type", "states")),
        ({"states": "ab"}, ("bad_field_type", "states")),
        ({"states": [SyncableState("kv", "k", 1, -5, "a")]}, ("out_of_range", "version")),
        ({"digest": {"kv": 1}}, ("bad_field_type", "digest")),
        ({"digest": {("kv", "k"): -1}}, ("out_of_range", "digest.version")),
        ({"payload": {1: 2}}, ("bad_map_key", "payload")),
        ({"payload": "x"}, ("bad_field_type", "payload")),
    ],
)
def test_make_message_rejects_bad_fields(kwargs: dict[str, Any], expected: tuple[str, str]) -> None:
    args: dict[str, Any] = {"msg_type": "push", "sender": "a"} | kwargs
    assert reason_of(make_message, **args) == expected


@pytest.mark.parametrize(
    ("msg_type", "payload", "expected"),
    [
        ("ping", None, ("missing_field", "payload")),
        ("ping", {}, ("missing_field", "payload.seq")),
        ("ping-ack", {"seq": -1}, ("out_of_range", "payload.seq")),
        ("ping-req", {"seq": 1}, ("missing_field", "payload.node")),
        ("suspect", {"node": "b", "incarnation": "1"}, ("bad_field_type", "payload.incarnation")),
        ("alive", {"node": "", "incarnation": 1}, ("bad_field_value", "payload.node")),
        ("join", {"node": {"id": "b"}}, ("missing_field", "address")),
    ],
)
def test_seed_message_types_require_their_payload_fields(
    msg_type: str, payload: Any, expected: tuple[str, str]
) -> None:
    assert reason_of(make_message, msg_type, "a", "b", payload=payload) == expected


def test_ping_and_ack_carry_the_sequence_number() -> None:
    assert p.ping_message("a", "b", 7) == GossipMessage("ping", "a", "b", payload={"seq": 7})
    ack = p.ping_ack_message("b", "a", 7)
    assert ack == GossipMessage("ping-ack", "b", "a", payload={"seq": 7})


def test_ping_req_targets_the_intermediary_and_names_the_probed_node() -> None:
    msg = p.ping_req_message("a", "c", "b", 9)
    assert (msg.msg_type, msg.target, msg.payload) == ("ping-req", "c", {"seq": 9, "node": "b"})


def test_suspect_and_alive_carry_node_and_incarnation() -> None:
    assert p.suspect_message("a", "b", 4).payload == {"node": "b", "incarnation": 4}
    alive = p.alive_message("b", 5, target="a")
    assert (alive.target, alive.payload) == ("a", {"node": "b", "incarnation": 5})


def test_join_carries_the_node_info_map() -> None:
    info = make_node_info("b", "tcp://h:2", {"role": "lb"})
    msg = p.join_message("b", info)
    assert msg.payload == {"node": {"id": "b", "addr": "tcp://h:2", "meta": {"role": "lb"}}}
    assert reason_of(p.join_message, "b", {"id": "b"}) == ("bad_field_type", "node_info")


def test_leave_has_no_payload_unless_extra_is_given() -> None:
    assert p.leave_message("a") == GossipMessage("leave", "a")
    assert p.leave_message("a", payload_extra={"inc": 2}).payload == {"inc": 2}


def test_push_pull_and_push_pull_carry_states_and_digests() -> None:
    digest = {("kv", "k"): 1}
    assert p.push_message("a", [state()]).states == (state(),)
    assert p.pull_message("a", digest, target="b").digest == digest
    both = p.push_pull_message("a", [state()], digest)
    assert (both.msg_type, both.states, both.digest) == ("push-pull", (state(),), digest)


def test_payload_extra_is_merged_but_cannot_override_constructor_fields() -> None:
    msg = p.ping_message("a", "b", 1, payload_extra={"gossip": [["suspect", "c", 1]]})
    assert msg.payload == {"gossip": [["suspect", "c", 1]], "seq": 1}
    assert reason_of(p.ping_message, "a", "b", 1, payload_extra={"seq": 2}) == (
        "reserved_payload_key",
        "payload_extra",
    )
    assert reason_of(p.leave_message, "a", payload_extra=[1]) == ("bad_field_type", "payload_extra")


# --- maps ------------------------------------------------------------------


def test_node_info_map_omits_empty_metadata_and_round_trips() -> None:
    bare = make_node_info("n", "tcp://h:1")
    assert p.node_info_to_map(bare) == {"id": "n", "addr": "tcp://h:1"}
    full = make_node_info("n", "tcp://h:1", {"w": 1})
    assert p.map_to_node_info(p.node_info_to_map(full)) == full
    assert p.map_to_node_info(p.node_info_to_map(bare)) == bare


def test_syncable_state_map_uses_short_keys_and_round_trips() -> None:
    s = state(version=4, value={"up": True})
    m = p.syncable_state_to_map(s)
    assert m == {"t": "kv", "k": "k", "v": {"up": True}, "ver": 4, "src": "a"}
    assert p.map_to_syncable_state(m) == s


def test_gossip_message_map_puts_the_digest_as_triples_and_omits_absent_fields() -> None:
    msg = p.pull_message("a", {("kv", "k"): 3, ("hc", "x"): 1})
    assert p.gossip_message_to_map(msg) == {
        "type": "pull",
        "from": "a",
        "dg": [["kv", "k", 3], ["hc", "x", 1]],
    }
    assert p.gossip_message_to_map(GossipMessage("leave", "a")) == {"type": "leave", "from": "a"}
    assert p.map_to_gossip_message(p.gossip_message_to_map(msg)) == msg


def test_gossip_message_map_round_trips_an_empty_digest_and_payload() -> None:
    msg = make_message("summary", "a", "b", [state()], {}, {})
    assert p.map_to_gossip_message(p.gossip_message_to_map(msg)) == msg


_NI, _SS, _GM = p.map_to_node_info, p.map_to_syncable_state, p.map_to_gossip_message


@pytest.mark.parametrize(
    ("fn", "m", "expected"),
    [
        (_NI, None, ("not_a_map", "node_info")),
        (_NI, {"addr": "tcp://h:1"}, ("missing_field", "node_id")),
        (_SS, [1], ("not_a_map", "state")),
        (_SS, {"t": "kv", "k": "k", "v": 1, "src": "a"}, ("missing_field", "version")),
        (_GM, {"from": "a"}, ("missing_field", "msg_type")),
        (_GM, {"type": "leave"}, ("missing_field", "sender")),
        (_GM, {"type": "push", "from": "a", "st": {}}, ("bad_field_type", "states")),
        (_GM, {"type": "push", "from": "a", "st": [3]}, ("not_a_map", "state")),
        (_GM, {"type": "pull", "from": "a", "dg": {}}, ("bad_field_type", "digest")),
        (_GM, {"type": "pull", "from": "a", "dg": [["kv", "k"]]}, ("bad_field_type", "digest")),
        (_GM, {"type": "pull", "from": "a", "dg": [5]}, ("bad_field_type", "digest")),
        (
            _GM,
            {"type": "pull", "from": "a", "dg": [["kv", "k", 1], ["kv", "k", 2]]},
            ("duplicate_digest_key", "digest"),
        ),
        (_GM, {"type": "leave", "from": "a", "to": ""}, ("bad_field_value", "target")),
    ],
)
def test_map_to_functions_name_the_reason_and_field(
    fn: Any, m: Any, expected: tuple[str, str]
) -> None:
    assert reason_of(fn, m) == expected


# --- version order ---------------------------------------------------------


@pytest.mark.parametrize(
    ("a", "b", "order"),
    [
        ((2, "a"), (1, "z"), Order.NEWER),
        ((1, "z"), (2, "a"), Order.OLDER),
        ((3, "a"), (3, "a"), Order.SAME),
        ((3, "b"), (3, "a"), Order.CONFLICT_WIN),
        ((3, "a"), (3, "b"), Order.CONFLICT_LOSE),
    ],
)
def test_compare_states_orders_by_version_then_source(
    a: tuple[int, str], b: tuple[int, str], order: Order
) -> None:
    assert p.compare_states(state(*a), state(*b)) is order


def test_newer_is_true_only_for_a_higher_version_or_a_won_conflict() -> None:
    assert p.newer(state(2, "a"), state(1, "b"))
    assert p.newer(state(1, "b"), state(1, "a"))
    assert not p.newer(state(1, "a"), state(1, "b"))
    assert not p.newer(state(1, "a", value=1), state(1, "a", value=2))


# --- Lamport clock ---------------------------------------------------------


def test_next_ticks_and_returns_the_new_time() -> None:
    clock = LamportClock(start=5)
    assert (clock.current(), clock.next(), clock.next(), clock.current()) == (5, 6, 7, 7)


@pytest.mark.parametrize(("start", "received", "after"), [(0, 10, 10), (10, 3, 10), (10, 10, 10)])
def test_update_takes_the_max_so_the_next_version_exceeds_the_received_one(
    start: int, received: int, after: int
) -> None:
    clock = LamportClock(start)
    assert clock.update(received) == after
    assert clock.next() == after + 1 > received


@pytest.mark.parametrize("bad", [-1, True, 1.5, "3", None, 2**63])
def test_the_clock_refuses_bad_received_versions(bad: Any) -> None:
    clock = LamportClock()
    with pytest.raises(ProtocolError):
        clock.update(bad)
    assert clock.current() == 0


def test_the_clock_refuses_a_bad_start() -> None:
    assert reason_of(LamportClock, -1) == ("out_of_range", "start")


def test_the_clock_refuses_to_tick_past_the_version_range() -> None:
    clock = LamportClock(MAX_U63)
    assert reason_of(clock.next) == ("clock_exhausted", "version")


def test_reset_sets_the_time() -> None:
    clock = LamportClock(9)
    clock.reset()
    assert clock.current() == 0
    clock.reset(to=4)
    assert clock.next() == 5


def test_module_level_clock_functions_share_the_default_clock() -> None:
    assert p.current_version() == 0
    assert p.next_version() == 1
    assert p.update_clock(41) == 41
    assert p.next_version() == 42
    p.reset_clock()
    assert p.current_version() == 0


def test_threads_calling_next_get_unique_consecutive_versions() -> None:
    clock = LamportClock()
    results: list[list[int]] = [[] for _ in range(4)]

    def work(out: list[int]) -> None:
        for _ in range(2000):
            out.append(clock.next())

    threads = [threading.Thread(target=work, args=(out,)) for out in results]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    issued = [v for out in results for v in out]
    assert sorted(issued) == list(range(1, 8001))


# --- ids, events, providers ------------------------------------------------


def test_generated_node_ids_are_short_url_safe_and_unique() -> None:
    ids = {p.generate_node_id() for _ in range(1000)}
    assert len(ids) == 1000
    allowed = set(string.ascii_letters + string.digits + "-_")
    assert all(len(i) == 16 and set(i) <= allowed for i in ids)


def test_make_event_builds_the_documented_map() -> None:
    event = p.make_event("node.joined", "n1", {"address": "tcp://h:1"}, timestamp=12.5)
    assert event == {
        "type": "node.joined",
        "node_id": "n1",
        "data": {"address": "tcp://h:1"},
        "timestamp": 12.5,
    }


def test_make_event_stamps_the_wall_clock_by_default() -> None:
    event = p.make_event("actor.started", "n1", None)
    assert isinstance(event["timestamp"], float) and event["timestamp"] > 1.6e9
    assert event["data"] == {}


def test_make_event_refuses_an_unknown_type() -> None:
    assert reason_of(p.make_event, "node.exploded", "n1", {}) == ("unknown_event_type", "type")


class _KvProvider:
    def provider_type(self) -> str:
        return "kv"

    def get_sync_state(self) -> list[SyncableState]:
        return []

    def get_state_digest(self) -> dict[tuple[str, str], int]:
        return {}

    def apply_remote_state(self, states: list[SyncableState]) -> p.ApplyResult:
        return {"applied": len(states), "conflicts": 0, "rejected": 0}

    def on_node_failure(self, node_id: str) -> None:
        return None


def test_a_class_with_the_provider_methods_is_a_state_provider() -> None:
    assert isinstance(_KvProvider(), p.StateProvider)
    assert not isinstance(object(), p.StateProvider)
    assert _KvProvider().apply_remote_state([state()]) == {
        "applied": 1,
        "conflicts": 0,
        "rejected": 0,
    }
