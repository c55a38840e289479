"""The seed API (`lb.cluster.protocol`): records, messages, Lamport clock, events.

Theory of operation:

* Three frozen records travel between nodes: `NodeInfo` (a member and its
  gossip endpoint), `SyncableState` (one replicated value with its Lamport
  version and writer) and `GossipMessage` (one message, any type).
* Every record has a plain-map form (`*_to_map`) holding only msgpack-native
  values under short str keys, and a validating inverse (`map_to_*`).
  Invariant: `map_to_x(x_to_map(r)) == r`. `map_to_*` and the `make_*`
  constructors raise `ProtocolError` and nothing else, whatever the input:
  maps arrive from the network and are untrusted.
* Version order (DESIGN.md §2): a higher version wins; equal versions from
  different writers are a conflict won by the greater `source_node`, so every
  node resolves it the same way. A state whose value is None is a tombstone.
* The Lamport clock follows the usual witness rule: after `update(v)` the next
  local version is greater than `v`, and the clock never goes backwards.

This module is pure: no sockets, no logging, no random module. The one clock
read is `make_event`'s default timestamp (tests inject `timestamp=`).
"""

from __future__ import annotations

import enum
import secrets
import threading
import time
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any, NewType, Protocol, TypedDict, runtime_checkable

NodeId = NewType("NodeId", str)
Version = NewType("Version", int)
Incarnation = NewType("Incarnation", int)

MAX_ID_LEN = 256
MAX_KEY_LEN = 1024
MAX_U63 = 2**63 - 1  # versions, incarnations and sequence numbers stay below 2**63
MAX_VALUE_DEPTH = 32
_INT_MIN = -(2**63)  # msgpack integers: int64 .. uint64
_UINT_MAX = 2**64 - 1

# WARNING: ONLY APPEND TO THIS TUPLE. The index of a type is its wire tag
# (transport.codec puts it in the envelope), so reordering or removing an
# entry would make nodes of different releases misread each other.
MESSAGE_TYPES: tuple[str, ...] = (
    "ping", "ping-ack", "ping-req", "suspect", "alive", "join", "leave",
    "push", "pull", "push-pull", "dead", "ping-nack", "members", "summary",
)  # fmt: skip

EVENT_TYPES: tuple[str, ...] = (
    "node.joined", "node.alive", "node.suspect", "node.failed", "node.left", "node.updated",
    "state.changed",
    "actor.started", "actor.exited", "actor.restarted", "actor.gave_up",
)  # fmt: skip


class ProtocolError(ValueError):
    """Malformed record, map or argument.

    Attributes:
        reason: short constant slug (e.g. "missing_field"), safe to count.
        field: the offending field, or None.
    """

    def __init__(self, reason: str, field: str | None = None) -> None:
        super().__init__(f"{reason} (field={field})")
        self.reason = reason
        self.field = field

    def __reduce__(self) -> tuple[type[ProtocolError], tuple[str, str | None]]:
        # Keep reason/field when pickled (e.g. across a multiprocessing boundary).
        return (type(self), (self.reason, self.field))


# --- validation primitives -------------------------------------------------


def check_id(value: object, name: str, max_len: int = MAX_ID_LEN) -> str:
    """Return `value` if it is a non-empty str of at most `max_len` chars."""
    if not isinstance(value, str):
        raise ProtocolError("bad_field_type", name)
    if not value or len(value) > max_len:
        raise ProtocolError("bad_field_value", name)
    return value


def check_u63(value: object, name: str) -> int:
    """Return `value` if it is an int in [0, 2**63) (bool is refused)."""
    if isinstance(value, bool) or not isinstance(value, int):
        raise ProtocolError("bad_field_type", name)
    if not 0 <= value <= MAX_U63:
        raise ProtocolError("out_of_range", name)
    return value


# Exact scalar types accepted at a glance; subclasses take the _is_leaf path.
_LEAVES = frozenset({type(None), bool, str, bytes, float})


def _is_leaf(item: object, name: str) -> bool:
    """True for a native scalar, False for a container; raise on anything else."""
    if item is None or isinstance(item, (bool, str, bytes, float)):
        return True
    if isinstance(item, int):
        if not _INT_MIN <= item <= _UINT_MAX:
            raise ProtocolError("out_of_range", name)
        return True
    if isinstance(item, (list, tuple, dict)):
        return False
    raise ProtocolError("bad_value_type", name)


def validate_value(value: object, name: str = "value", max_depth: int = MAX_VALUE_DEPTH) -> None:
    """Check that `value` is msgpack-native and nested at most `max_depth` deep.

    Native: None, bool, int in the 64-bit range, float, str, bytes, list or
    tuple, dict with str keys. Iterative, so cyclic or absurdly deep input
    gives `ProtocolError("too_deep")`, never RecursionError. Hot on decode
    (every state value), hence the exact-type fast paths.
    """
    if type(value) in _LEAVES or _is_leaf(value, name):
        return
    stack: list[tuple[Any, int]] = [(value, 0)]  # containers only
    while stack:
        item, depth = stack.pop()
        if depth >= max_depth:
            raise ProtocolError("too_deep", name)
        children = item
        if isinstance(item, dict):
            try:
                "".join(item)  # a C-speed "every key is a str" check
            except TypeError:
                raise ProtocolError("bad_map_key", name) from None
            children = item.values()
        for child in children:
            kind = type(child)
            if kind in _LEAVES or (kind is int and _INT_MIN <= child <= _UINT_MAX):
                continue
            if not _is_leaf(child, name):
                stack.append((child, depth + 1))


def _check_map(value: object, name: str) -> dict[str, Any]:
    """Copy a str-keyed mapping of native values into a plain dict."""
    if not isinstance(value, Mapping):
        raise ProtocolError("bad_field_type", name)
    result = dict(value)
    validate_value(result, name)
    return result


def _as_map(value: object, name: str) -> Mapping[Any, Any]:
    if not isinstance(value, Mapping):
        raise ProtocolError("not_a_map", name)
    return value


def _required(m: Mapping[Any, Any], key: str, name: str) -> Any:
    if key not in m:
        raise ProtocolError("missing_field", name)
    return m[key]


# --- records ---------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class NodeInfo:
    """A cluster member; `address` is its gossip endpoint, "tcp://host:port"."""

    node_id: str
    address: str
    metadata: Mapping[str, Any] = field(default_factory=dict)


@dataclass(frozen=True, slots=True)
class SyncableState:
    """One replicated value. `value is None` marks a tombstone (deleted key)."""

    state_type: str
    key: str
    value: Any
    version: int
    source_node: str


@dataclass(frozen=True, slots=True)
class GossipMessage:
    """One message between nodes; `payload` carries the type-specific fields."""

    msg_type: str
    sender: str
    target: str | None = None
    states: tuple[SyncableState, ...] = ()
    digest: Mapping[tuple[str, str], int] | None = None
    payload: Mapping[str, Any] | None = None


def make_node_info(
    node_id: str, address: str, metadata: Mapping[str, Any] | None = None
) -> NodeInfo:
    """Build a validated NodeInfo. Raises: ProtocolError."""
    meta = {} if metadata is None else _check_map(metadata, "metadata")
    return NodeInfo(check_id(node_id, "node_id"), check_id(address, "address"), meta)


def make_syncable_state(
    state_type: str, key: str, value: Any, version: int, source_node: str
) -> SyncableState:
    """Build a validated SyncableState (value msgpack-native). Raises: ProtocolError."""
    validate_value(value)
    return SyncableState(
        check_id(state_type, "state_type"),
        check_id(key, "key", MAX_KEY_LEN),
        value,
        check_u63(version, "version"),
        check_id(source_node, "source_node"),
    )


def is_tombstone(state: SyncableState) -> bool:
    """True when the state records a deletion (its value is None)."""
    return state.value is None


def state_key(state: SyncableState) -> tuple[str, str]:
    """The identity of a state across versions: (state_type, key)."""
    return (state.state_type, state.key)


# --- messages --------------------------------------------------------------


def _check_node_map(value: object, name: str) -> object:
    map_to_node_info(value)
    return value


# Required payload fields of the types the seed constructors build. Other
# types (dead, ping-nack, members, summary) are defined by their layers.
_PayloadCheck = Callable[[object, str], object]
_PAYLOAD_SCHEMA: dict[str, tuple[tuple[str, _PayloadCheck], ...]] = {
    "ping": (("seq", check_u63),),
    "ping-ack": (("seq", check_u63),),
    "ping-req": (("seq", check_u63), ("node", check_id)),
    "suspect": (("node", check_id), ("incarnation", check_u63)),
    "alive": (("node", check_id), ("incarnation", check_u63)),
    "join": (("node", _check_node_map),),
}


def _check_payload(msg_type: str, payload: object) -> dict[str, Any] | None:
    schema = _PAYLOAD_SCHEMA.get(msg_type, ())
    if payload is None:
        if schema:
            raise ProtocolError("missing_field", "payload")
        return None
    checked = _check_map(payload, "payload")
    for key, check in schema:
        check(_required(checked, key, "payload." + key), "payload." + key)
    return checked


def _digest_entry(stype: object, key: object, version: object) -> tuple[tuple[str, str], int]:
    skey = (check_id(stype, "digest.state_type"), check_id(key, "digest.key", MAX_KEY_LEN))
    return skey, check_u63(version, "digest.version")


def _check_digest(digest: object) -> dict[tuple[str, str], int] | None:
    if digest is None:
        return None
    if not isinstance(digest, Mapping):
        raise ProtocolError("bad_field_type", "digest")
    result: dict[tuple[str, str], int] = {}
    for skey, version in digest.items():
        if not isinstance(skey, tuple) or len(skey) != 2:
            raise ProtocolError("bad_field_type", "digest")
        checked, ver = _digest_entry(skey[0], skey[1], version)
        result[checked] = ver
    return result


def _check_state(state: object) -> SyncableState:
    if not isinstance(state, SyncableState):
        raise ProtocolError("bad_field_type", "states")
    return make_syncable_state(
        state.state_type, state.key, state.value, state.version, state.source_node
    )


def _message(
    msg_type: object,
    sender: object,
    target: object,
    states: tuple[SyncableState, ...],
    digest: dict[tuple[str, str], int] | None,
    payload: object,
) -> GossipMessage:
    """Validate all but `states` and `digest` (the caller has) and build the message."""
    if not isinstance(msg_type, str) or msg_type not in MESSAGE_TYPES:
        raise ProtocolError("unknown_msg_type", "msg_type")
    return GossipMessage(
        msg_type,
        check_id(sender, "sender"),
        None if target is None else check_id(target, "target"),
        states,
        digest,
        _check_payload(msg_type, payload),
    )


def make_message(
    msg_type: str,
    sender: str,
    target: str | None = None,
    states: Sequence[SyncableState] = (),
    digest: Mapping[tuple[str, str], int] | None = None,
    payload: Mapping[str, Any] | None = None,
) -> GossipMessage:
    """Build a validated GossipMessage.

    The seed types with constructors below must carry their payload fields
    (e.g. a "ping" needs payload["seq"]). Raises: ProtocolError.
    """
    if not isinstance(states, (list, tuple)):
        raise ProtocolError("bad_field_type", "states")
    checked = tuple(_check_state(s) for s in states)
    return _message(msg_type, sender, target, checked, _check_digest(digest), payload)


# Short aliases keep the constructor signatures on one or two lines.
Msg = GossipMessage
To = str | None
Extra = Mapping[str, Any] | None
States = Sequence[SyncableState]
Digest = Mapping[tuple[str, str], int]


def _payload(own: dict[str, Any], extra: Extra) -> dict[str, Any]:
    """Merge piggybacked fields into a constructor's payload; no overrides."""
    if extra is None:
        return own
    if not isinstance(extra, Mapping):
        raise ProtocolError("bad_field_type", "payload_extra")
    if any(key in own for key in extra):
        raise ProtocolError("reserved_payload_key", "payload_extra")
    return {**extra, **own}


def _extra_only(extra: Extra) -> dict[str, Any] | None:
    return None if extra is None else _payload({}, extra)


def ping_message(sender: str, target: str, seq_num: int, *, payload_extra: Extra = None) -> Msg:
    """A direct probe of `target` (SWIM). Payload: {"seq"}."""
    return make_message("ping", sender, target, payload=_payload({"seq": seq_num}, payload_extra))


def ping_ack_message(sender: str, target: str, seq_num: int, *, payload_extra: Extra = None) -> Msg:
    """The answer to a ping, echoing its sequence number. Payload: {"seq"}."""
    payload = _payload({"seq": seq_num}, payload_extra)
    return make_message("ping-ack", sender, target, payload=payload)


def ping_req_message(
    sender: str, intermediary: str, target: str, seq_num: int, *, payload_extra: Extra = None
) -> Msg:
    """Ask `intermediary` to probe `target`. Payload: {"seq", "node": target}."""
    payload = _payload({"seq": seq_num, "node": target}, payload_extra)
    return make_message("ping-req", sender, intermediary, payload=payload)


def suspect_message(
    sender: str,
    suspect_node: str,
    incarnation: int,
    *,
    target: To = None,
    payload_extra: Extra = None,
) -> Msg:
    """Gossip that `suspect_node` may have failed. Payload: {"node", "incarnation"}."""
    payload = _payload({"node": suspect_node, "incarnation": incarnation}, payload_extra)
    return make_message("suspect", sender, target, payload=payload)


def alive_message(
    sender: str, incarnation: int, *, target: To = None, payload_extra: Extra = None
) -> Msg:
    """Refute suspicion of `sender`. Payload: {"node": sender, "incarnation"}."""
    payload = _payload({"node": sender, "incarnation": incarnation}, payload_extra)
    return make_message("alive", sender, target, payload=payload)


def join_message(sender: str, node_info: NodeInfo, *, payload_extra: Extra = None) -> Msg:
    """Announce a joining node. Payload: {"node": node_info_to_map(node_info)}."""
    if not isinstance(node_info, NodeInfo):
        raise ProtocolError("bad_field_type", "node_info")
    payload = _payload({"node": node_info_to_map(node_info)}, payload_extra)
    return make_message("join", sender, payload=payload)


def leave_message(sender: str, *, payload_extra: Extra = None) -> Msg:
    """Announce a graceful leave of `sender`."""
    return make_message("leave", sender, payload=_extra_only(payload_extra))


def push_message(
    sender: str, states: States, *, target: To = None, payload_extra: Extra = None
) -> Msg:
    """Send state updates."""
    return make_message("push", sender, target, states, payload=_extra_only(payload_extra))


def pull_message(
    sender: str, digest: Digest, *, target: To = None, payload_extra: Extra = None
) -> Msg:
    """Send a digest so the peer answers with what the sender lacks."""
    extra = _extra_only(payload_extra)
    return make_message("pull", sender, target, digest=digest, payload=extra)


def push_pull_message(
    sender: str, states: States, digest: Digest, *, target: To = None, payload_extra: Extra = None
) -> Msg:
    """Send states and a digest: a bidirectional sync."""
    extra = _extra_only(payload_extra)
    return make_message("push-pull", sender, target, states, digest, extra)


# --- plain-map forms -------------------------------------------------------


def node_info_to_map(info: NodeInfo) -> dict[str, Any]:
    """NodeInfo -> {"id", "addr", "meta"?} ("meta" omitted when empty)."""
    result: dict[str, Any] = {"id": info.node_id, "addr": info.address}
    if info.metadata:
        result["meta"] = dict(info.metadata)
    return result


def map_to_node_info(m: object) -> NodeInfo:
    """Inverse of node_info_to_map. Raises: ProtocolError (only)."""
    d = _as_map(m, "node_info")
    node_id = _required(d, "id", "node_id")
    return make_node_info(node_id, _required(d, "addr", "address"), d.get("meta"))


def syncable_state_to_map(state: SyncableState) -> dict[str, Any]:
    """SyncableState -> {"t", "k", "v", "ver", "src"}."""
    return {
        "t": state.state_type,
        "k": state.key,
        "v": state.value,
        "ver": state.version,
        "src": state.source_node,
    }


def map_to_syncable_state(m: object) -> SyncableState:
    """Inverse of syncable_state_to_map. Raises: ProtocolError (only)."""
    d = _as_map(m, "state")
    return make_syncable_state(
        _required(d, "t", "state_type"),
        _required(d, "k", "key"),
        _required(d, "v", "value"),
        _required(d, "ver", "version"),
        _required(d, "src", "source_node"),
    )


def gossip_message_to_map(msg: GossipMessage) -> dict[str, Any]:
    """GossipMessage -> {"type", "from", "to"?, "st"?, "dg"?, "pl"?}.

    Absent/empty optional fields are omitted; the digest becomes a list of
    [state_type, key, version] triples because msgpack map keys are str.
    """
    result: dict[str, Any] = {"type": msg.msg_type, "from": msg.sender}
    if msg.target is not None:
        result["to"] = msg.target
    if msg.states:
        result["st"] = [syncable_state_to_map(s) for s in msg.states]
    if msg.digest is not None:
        result["dg"] = [[stype, key, ver] for (stype, key), ver in msg.digest.items()]
    if msg.payload is not None:
        result["pl"] = dict(msg.payload)
    return result


def _digest_from_triples(raw: object) -> dict[tuple[str, str], int] | None:
    if raw is None:
        return None
    if not isinstance(raw, (list, tuple)):
        raise ProtocolError("bad_field_type", "digest")
    result: dict[tuple[str, str], int] = {}
    for triple in raw:
        if not isinstance(triple, (list, tuple)) or len(triple) != 3:
            raise ProtocolError("bad_field_type", "digest")
        skey, version = _digest_entry(*triple)
        if skey in result:
            raise ProtocolError("duplicate_digest_key", "digest")
        result[skey] = version
    return result


def map_to_gossip_message(m: object) -> GossipMessage:
    """Inverse of gossip_message_to_map. Raises: ProtocolError (only)."""
    d = _as_map(m, "message")
    raw_states = d.get("st", ())
    if not isinstance(raw_states, (list, tuple)):
        raise ProtocolError("bad_field_type", "states")
    states = tuple(map_to_syncable_state(s) for s in raw_states)
    digest = _digest_from_triples(d.get("dg"))
    msg_type = _required(d, "type", "msg_type")
    sender = _required(d, "from", "sender")
    return _message(msg_type, sender, d.get("to"), states, digest, d.get("pl"))


# --- version order ---------------------------------------------------------


class Order(enum.Enum):
    """How state `a` relates to state `b` (see compare_states)."""

    NEWER = "newer"  # higher version
    OLDER = "older"  # lower version
    SAME = "same"  # same version, same writer
    CONFLICT_WIN = "conflict_win"  # same version, other writer, a wins
    CONFLICT_LOSE = "conflict_lose"  # same version, other writer, b wins


def compare_states(a: SyncableState, b: SyncableState) -> Order:
    """Order `a` against `b` by (version, source_node).

    Equal versions from different writers are a conflict; the greater
    source_node wins, so every node picks the same winner.
    """
    if a.version != b.version:
        return Order.NEWER if a.version > b.version else Order.OLDER
    if a.source_node == b.source_node:
        return Order.SAME
    return Order.CONFLICT_WIN if a.source_node > b.source_node else Order.CONFLICT_LOSE


def newer(a: SyncableState, b: SyncableState) -> bool:
    """True iff `a` should replace `b` (a strict total order on (version, source))."""
    return compare_states(a, b) in (Order.NEWER, Order.CONFLICT_WIN)


# --- Lamport clock ---------------------------------------------------------


class LamportClock:
    """A thread-safe Lamport clock.

    Rule: `next()` ticks and returns the new time; `update(v)` witnesses a
    received version, time = max(time, v), so the next local version is > v.
    The time never goes backwards except through an explicit `reset`.
    """

    def __init__(self, start: int = 0) -> None:
        self._time = check_u63(start, "start")
        # Guards _time: providers may stamp versions from several threads.
        self._lock = threading.Lock()

    def current(self) -> int:
        """The last issued or witnessed time, without ticking."""
        with self._lock:
            return self._time

    def next(self) -> int:
        """Tick and return the new time. Raises: ProtocolError at 2**63 - 1."""
        with self._lock:
            if self._time >= MAX_U63:
                raise ProtocolError("clock_exhausted", "version")
            self._time += 1
            return self._time

    def update(self, received: int) -> int:
        """Witness a received version; return the (possibly raised) time.

        Raises: ProtocolError if `received` is not an int in [0, 2**63).
        """
        check_u63(received, "received")
        with self._lock:
            if received > self._time:
                self._time = received
            return self._time

    def reset(self, to: int = 0) -> None:
        """Set the time (tests; restoring a persisted high-water mark)."""
        check_u63(to, "to")
        with self._lock:
            self._time = to


default_clock = LamportClock()


def next_version() -> int:
    """Tick the module's default clock and return the new version."""
    return default_clock.next()


def current_version() -> int:
    """The default clock's time, without ticking."""
    return default_clock.current()


def update_clock(received: int) -> int:
    """Witness `received` on the default clock (Lamport receive rule)."""
    return default_clock.update(received)


def reset_clock() -> None:
    """Reset the default clock to 0 (tests)."""
    default_clock.reset()


# --- ids, events, providers ------------------------------------------------


def generate_node_id() -> str:
    """A unique, URL-safe, 16-character node id (96 random bits)."""
    return secrets.token_urlsafe(12)


def make_event(
    event_type: str,
    node_id: str,
    data: Mapping[str, Any] | None,
    *,
    timestamp: float | None = None,
) -> dict[str, Any]:
    """Build a cluster event {"type", "node_id", "data", "timestamp"}.

    `node_id` is the node the event is about. The supervisor adds "source"
    and "seq" when it publishes. Raises: ProtocolError on an unknown type.
    """
    if not isinstance(event_type, str) or event_type not in EVENT_TYPES:
        raise ProtocolError("unknown_event_type", "type")
    return {
        "type": event_type,
        "node_id": check_id(node_id, "node_id"),
        "data": {} if data is None else _check_map(data, "data"),
        "timestamp": time.time() if timestamp is None else timestamp,
    }


class ApplyResult(TypedDict):
    """What apply_remote_state did with a batch of states."""

    applied: int  # newer than held (or new keys): stored
    conflicts: int  # equal version, other writer: resolved by source_node, won or lost
    rejected: int  # older than held, or malformed: dropped


@runtime_checkable
class StateProvider(Protocol):
    """A module that owns one kind of replicated state (the seed's IStateProvider)."""

    def provider_type(self) -> str:
        """The state_type this provider owns, e.g. "kv", "health"."""
        ...

    def get_sync_state(self) -> list[SyncableState]:
        """All current states, tombstones included; used for anti-entropy."""
        ...

    def get_state_digest(self) -> dict[tuple[str, str], int]:
        """(state_type, key) -> version for every held state; for delta sync."""
        ...

    def apply_remote_state(self, states: list[SyncableState]) -> ApplyResult:
        """Apply states gossip brought; keep a state only if `newer` than held.

        Returns {"applied": n, "conflicts": n, "rejected": n}.
        """
        ...

    def on_node_failure(self, node_id: str) -> None:
        """A node was confirmed dead: promote shadow state, claim ownership, etc."""
        ...
