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
* Layout: the field checks and value-shape rules live in `transport.validate`,
  the clock class in `transport.lamport` and `ProtocolError` in
  `transport.errors`; this module re-exports them all, so callers import
  every seed name from here.

This module is pure: no sockets, no logging, no random module. The one clock
read is `make_event`'s default timestamp (tests inject `timestamp=`).
"""

from __future__ import annotations

import base64
import enum
import os
import time
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any, Protocol, TypedDict, runtime_checkable

# Some of these moved out of this module; callers still import them all from here
# (`X as X`: imported only to re-export).
from transport.errors import ProtocolError
from transport.lamport import LamportClock
from transport.validate import MAX_ID_LEN as MAX_ID_LEN
from transport.validate import (
    MAX_KEY_LEN,
    as_map,
    check_digest,
    check_id,
    check_map,
    check_u63,
    digest_from_triples,
    required,
    validate_value,
)
from transport.validate import MAX_U63 as MAX_U63
from transport.validate import MAX_VALUE_DEPTH as MAX_VALUE_DEPTH

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
    "provider.error",
)  # fmt: skip


class MemberStatus(enum.StrEnum):
    """A member's status as every public shape spells it (`members --json`, events)."""

    ALIVE = "alive"
    SUSPECT = "suspect"
    DEAD = "dead"
    LEFT = "left"


# Members that are probed, hold shards and count toward cluster size.
LIVE = frozenset({MemberStatus.ALIVE, MemberStatus.SUSPECT})


# --- records ---------------------------------------------------------------


# weakref_slot: member tables share one instance per distinct member (members.shared_info).
@dataclass(frozen=True, slots=True, weakref_slot=True)
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
    meta = {} if metadata is None else check_map(metadata, "metadata")
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
    checked = check_map(payload, "payload")
    for key, check in schema:
        check(required(checked, key, "payload." + key), "payload." + key)
    return checked


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
    return _message(msg_type, sender, target, checked, check_digest(digest), payload)


def retarget(msg: GossipMessage, target: str) -> GossipMessage:
    """`msg` addressed to `target`, sharing its checked states: a push of the same
    states to many peers checks them once, and the codec packs them once
    (`transport.codec.encode_many`). Raises: ProtocolError for a bad target."""
    return GossipMessage(msg.msg_type, msg.sender, check_id(target, "target"), msg.states,
                         msg.digest, msg.payload)


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
    d = as_map(m, "node_info")
    node_id = required(d, "id", "node_id")
    return make_node_info(node_id, required(d, "addr", "address"), d.get("meta"))


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
    d = as_map(m, "state")
    return make_syncable_state(
        required(d, "t", "state_type"),
        required(d, "k", "key"),
        required(d, "v", "value"),
        required(d, "ver", "version"),
        required(d, "src", "source_node"),
    )


def gossip_message_to_map(msg: GossipMessage, states: bool = True) -> dict[str, Any]:
    """GossipMessage -> {"type", "from", "to"?, "st"?, "dg"?, "pl"?}.

    Absent/empty optional fields are omitted; the digest becomes a list of
    [state_type, key, version] triples because msgpack map keys are str.
    `states` False leaves "st" out (a caller that packs the states itself).
    """
    result: dict[str, Any] = {"type": msg.msg_type, "from": msg.sender}
    if msg.target is not None:
        result["to"] = msg.target
    if msg.states and states:
        result["st"] = [syncable_state_to_map(s) for s in msg.states]
    if msg.digest is not None:
        result["dg"] = [[stype, key, ver] for (stype, key), ver in msg.digest.items()]
    if msg.payload is not None:
        result["pl"] = dict(msg.payload)
    return result


def map_to_gossip_message(m: object) -> GossipMessage:
    """Inverse of gossip_message_to_map. Raises: ProtocolError (only)."""
    d = as_map(m, "message")
    raw_states = d.get("st", ())
    if not isinstance(raw_states, (list, tuple)):
        raise ProtocolError("bad_field_type", "states")
    states = tuple(map_to_syncable_state(s) for s in raw_states)
    digest = digest_from_triples(d.get("dg"))
    msg_type = required(d, "type", "msg_type")
    sender = required(d, "from", "sender")
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


# --- Lamport clock (the class is transport.lamport's) ----------------------


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
    """A unique, URL-safe, 16-character node id (96 random bits). os.urandom is what
    secrets.token_urlsafe reads; importing secrets would load OpenSSL into every actor
    (through hmac), ~0.5 MiB."""
    return base64.urlsafe_b64encode(os.urandom(12)).decode()


def make_event(
    event_type: str,
    node_id: str,
    data: Mapping[str, Any] | None,
    *,
    timestamp: float | None = None,
    checked: bool = False,
) -> dict[str, Any]:
    """Build a cluster event {"type", "node_id", "data", "timestamp"}.

    `node_id` is the node the event is about. The supervisor adds "source"
    and "seq" when it publishes. `checked`: the caller built `node_id` and
    `data` from validated states (a write's `state.changed`), so they are not
    walked again. Raises: ProtocolError on an unknown type.
    """
    if not isinstance(event_type, str) or event_type not in EVENT_TYPES:
        raise ProtocolError("unknown_event_type", "type")
    return {
        "type": event_type,
        "node_id": node_id if checked else check_id(node_id, "node_id"),
        "data": {} if data is None else data if checked else check_map(data, "data"),
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
