"""Property tests of transport.protocol: map round trips, garbage, clock, version order."""

from __future__ import annotations

import contextlib
from typing import Any

from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from transport import protocol as p
from transport.protocol import (
    MAX_U63,
    MESSAGE_TYPES,
    GossipMessage,
    LamportClock,
    NodeInfo,
    Order,
    ProtocolError,
    SyncableState,
)

SETTINGS = settings(max_examples=300, deadline=None, suppress_health_check=[HealthCheck.too_slow])

# --- strategies of valid records (shared with test_codec_props) -------------

ids = st.text(min_size=1, max_size=24)
u63 = st.integers(min_value=0, max_value=MAX_U63)
scalars = (
    st.none()
    | st.booleans()
    | st.integers(min_value=-(2**63), max_value=2**64 - 1)
    | st.floats(allow_nan=False)
    | st.text(max_size=20)
    | st.binary(max_size=20)
)
# Lists only (no tuples): msgpack gives lists back, and the codec props reuse this.
values = st.recursive(
    scalars,
    lambda inner: (
        st.lists(inner, max_size=4) | st.dictionaries(st.text(max_size=8), inner, max_size=4)
    ),
    max_leaves=12,
)
maps = st.dictionaries(st.text(max_size=8), values, max_size=4)

node_infos = st.builds(p.make_node_info, ids, ids, maps)
states = st.builds(p.make_syncable_state, ids, ids, values, u63, ids)
digests = st.dictionaries(st.tuples(ids, ids), u63, max_size=5)

_REQUIRED: dict[str, dict[str, st.SearchStrategy[Any]]] = {
    "ping": {"seq": u63},
    "ping-ack": {"seq": u63},
    "ping-req": {"seq": u63, "node": ids},
    "suspect": {"node": ids, "incarnation": u63},
    "alive": {"node": ids, "incarnation": u63},
    "join": {"node": node_infos.map(p.node_info_to_map)},
}


@st.composite
def messages(draw: st.DrawFn) -> GossipMessage:
    msg_type = draw(st.sampled_from(MESSAGE_TYPES))
    required = {key: draw(strategy) for key, strategy in _REQUIRED.get(msg_type, {}).items()}
    extra = draw(st.none() | maps) if not required else draw(maps)
    payload = None if extra is None else {**extra, **required}
    return p.make_message(
        msg_type,
        draw(ids),
        draw(st.none() | ids),
        draw(st.lists(states, max_size=4)),
        draw(st.none() | digests),
        payload,
    )


# --- garbage ---------------------------------------------------------------

garbage_leaves = (
    scalars
    | st.integers()
    | st.floats()
    | st.complex_numbers()
    | st.sets(st.integers(), max_size=3)
    | st.builds(object)
    | st.sampled_from([p.make_node_info("a", "b"), p.make_syncable_state("t", "k", 1, 1, "a")])
)
_KEYS = st.sampled_from(
    ["id", "addr", "meta", "t", "k", "v", "ver", "src", "type", "from", "to", "st", "dg", "pl"]
)
garbage = st.recursive(
    garbage_leaves,
    lambda inner: (
        st.lists(inner, max_size=4)
        | st.tuples(inner, inner, inner)
        | st.dictionaries(_KEYS | st.text(max_size=4) | st.integers(), inner, max_size=6)
    ),
    max_leaves=20,
)


Path = tuple[Any, ...]


def _replaced(tree: Any, path: Path, junk: Any, delete: bool) -> Any:
    """A copy of `tree` with the item at `path` replaced by `junk` (or deleted)."""
    if not path:
        return junk
    copy = dict(tree) if isinstance(tree, dict) else list(tree)
    head, rest = path[0], path[1:]
    if delete and not rest:
        del copy[head]
    else:
        copy[head] = _replaced(tree[head], rest, junk, delete)
    return copy


@st.composite
def spoilt(draw: st.DrawFn, valid_maps: st.SearchStrategy[Any]) -> Any:
    """A valid map with one item inside replaced by garbage or removed.

    The item is found by a random walk from the root that stops after at
    most four steps, so it lands on the fields the validator walks (record
    fields, digest triples, payload entries) rather than mostly on values.
    """
    tree = draw(valid_maps)
    path: Path = ()
    node = tree
    while isinstance(node, (dict, list)) and node and len(path) < 4:
        key = draw(st.sampled_from(list(node) if isinstance(node, dict) else range(len(node))))
        path, node = (*path, key), node[key]
        if not draw(st.booleans()):
            break
    delete = bool(path) and draw(st.booleans())
    return _replaced(tree, path, None if delete else draw(garbage), delete)


spoilt_messages = spoilt(messages().map(p.gossip_message_to_map))


# --- round trips -----------------------------------------------------------


@SETTINGS
@given(node_infos)
def test_node_infos_survive_the_map_round_trip(info: NodeInfo) -> None:
    assert p.map_to_node_info(p.node_info_to_map(info)) == info


@SETTINGS
@given(states)
def test_states_survive_the_map_round_trip(state: SyncableState) -> None:
    assert p.map_to_syncable_state(p.syncable_state_to_map(state)) == state


@SETTINGS
@given(messages())
def test_messages_survive_the_map_round_trip(msg: GossipMessage) -> None:
    assert p.map_to_gossip_message(p.gossip_message_to_map(msg)) == msg


@SETTINGS
@given(st.lists(values, max_size=4))
def test_tuples_in_values_are_accepted_like_lists(items: list[Any]) -> None:
    value = {"tuple": tuple(items)}
    assert (
        p.map_to_syncable_state(
            p.syncable_state_to_map(p.make_syncable_state("t", "k", value, 1, "a"))
        ).value
        == value
    )


# --- garbage raises only ProtocolError -------------------------------------


def _only_protocol_error(fn: Any, m: Any) -> None:
    with contextlib.suppress(ProtocolError):
        fn(m)


@SETTINGS
@given(garbage)
def test_map_to_functions_raise_only_protocol_error_on_garbage(m: Any) -> None:
    for fn in (p.map_to_node_info, p.map_to_syncable_state, p.map_to_gossip_message):
        _only_protocol_error(fn, m)


@settings(SETTINGS, max_examples=1000)
@given(spoilt_messages)
def test_a_message_map_spoilt_anywhere_raises_only_protocol_error(m: Any) -> None:
    _only_protocol_error(p.map_to_gossip_message, m)


@SETTINGS
@given(spoilt(states.map(p.syncable_state_to_map)))
def test_a_state_map_spoilt_anywhere_raises_only_protocol_error(m: Any) -> None:
    _only_protocol_error(p.map_to_syncable_state, m)


@SETTINGS
@given(spoilt(node_infos.map(p.node_info_to_map)))
def test_a_node_info_map_spoilt_anywhere_raises_only_protocol_error(m: Any) -> None:
    _only_protocol_error(p.map_to_node_info, m)


# --- Lamport clock ---------------------------------------------------------

clock_ops = st.lists(st.none() | u63, max_size=40)  # None: next(); int v: update(v)


@SETTINGS
@given(u63, clock_ops)
def test_the_clock_never_goes_back_and_next_exceeds_everything_witnessed(
    start: int, ops: list[int | None]
) -> None:
    clock = LamportClock(start)
    seen = start
    for op in ops:
        before = clock.current()
        if op is None:
            if before == MAX_U63:
                continue
            assert clock.next() == before + 1
        else:
            assert clock.update(op) == max(before, op)
            seen = max(seen, op)
        assert clock.current() >= before
    if clock.current() < MAX_U63:
        assert clock.next() > seen


# --- version order ---------------------------------------------------------

few_states = st.builds(
    p.make_syncable_state,
    st.just("kv"),
    st.just("k"),
    st.integers(min_value=0, max_value=9),
    st.integers(min_value=0, max_value=3),
    st.sampled_from(["a", "b", "c"]),
)
_MIRROR = {
    Order.NEWER: Order.OLDER,
    Order.OLDER: Order.NEWER,
    Order.SAME: Order.SAME,
    Order.CONFLICT_WIN: Order.CONFLICT_LOSE,
    Order.CONFLICT_LOSE: Order.CONFLICT_WIN,
}


@SETTINGS
@given(few_states, few_states)
def test_newer_is_total_and_antisymmetric_on_version_and_source(
    a: SyncableState, b: SyncableState
) -> None:
    assert p.compare_states(b, a) is _MIRROR[p.compare_states(a, b)]
    if (a.version, a.source_node) == (b.version, b.source_node):
        assert not p.newer(a, b) and not p.newer(b, a)
    else:
        assert p.newer(a, b) != p.newer(b, a)
        assert p.newer(a, b) == ((a.version, a.source_node) > (b.version, b.source_node))


@SETTINGS
@given(few_states, few_states, few_states)
def test_newer_is_transitive(a: SyncableState, b: SyncableState, c: SyncableState) -> None:
    if p.newer(a, b) and p.newer(b, c):
        assert p.newer(a, c)
