"""msgpack wire codec for gossip messages, with validation of untrusted bytes.

Theory of operation: one gossip message is one msgpack array, the envelope

    [b"LBC", PROTOCOL_VERSION, cluster, type_tag, body]

where `type_tag` is the index of the type in `MESSAGE_TYPES` (append-only)
and `body` is `gossip_message_to_map(msg)` without its "type" key. The magic
rejects stray traffic early, the version lets a later release refuse what it
cannot read, and the cluster name keeps nodes of different clusters from
ever merging (chitchat drops a SYN of another cluster_id the same way).

Decoding is bounded before it allocates: the frame size is checked first,
then msgpack's own `max_*_len` limits, then counts of states and digest
entries, then every field through `map_to_gossip_message`. The contract of
`decode_untrusted` and `unpack_untrusted` is that they return a value or
raise `DecodeError`; any other exception is a bug.
"""

from __future__ import annotations

import functools
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

import msgpack

from transport.protocol import (
    MESSAGE_TYPES,
    GossipMessage,
    ProtocolError,
    gossip_message_to_map,
    map_to_gossip_message,
    syncable_state_to_map,
    validate_value,
)

PROTOCOL_VERSION = 1
MAGIC = b"LBC"
_ENVELOPE_LEN = 5
_TAGS: dict[str, int] = {name: tag for tag, name in enumerate(MESSAGE_TYPES)}
_ENVELOPE_HEADER = msgpack.Packer().pack_array_header(_ENVELOPE_LEN)
_MAP_HEADER = msgpack.Packer().pack_map_header


class DecodeError(ProtocolError):
    """Untrusted bytes that are not a valid message; `.reason` is a constant slug.

    Reasons: no_frames, bad_frame, oversized, truncated, trailing_data,
    too_deep, bad_utf8, malformed (incl. msgpack limits and ext types),
    bad_envelope, bad_magic, bad_version, wrong_cluster, unknown_msg_type,
    too_many_states, too_many_digest_entries, plus the ProtocolError reason
    of a bad field (bad_field_type, bad_field_value, missing_field,
    out_of_range, bad_value_type, bad_map_key, not_a_map,
    duplicate_digest_key, ...), whose `.field` names it.
    """


@dataclass(frozen=True, slots=True)
class Limits:
    """Bounds applied to untrusted input before and while decoding it."""

    max_message_bytes: int = 1 << 20  # one frame; also the sockets' MAXMSGSIZE
    max_states: int = 10_000
    max_digest_entries: int = 100_000
    max_str_len: int = 1 << 20  # msgpack Unpacker limits: refuse a huge length
    max_bin_len: int = 1 << 20  # header before allocating for it
    max_array_len: int = 100_000  # the digest is the longest array
    max_map_len: int = 10_000
    max_depth: int = 40  # nesting of a whole decoded object (value depth is 32)


DEFAULT_LIMITS = Limits()
# Between the processes of one node (and from a node to its own CLI/SDK): a whole
# provider's state can travel in one reply, so the bounds are far wider.
LOCAL_LIMITS = Limits(max_message_bytes=256 << 20, max_states=10_000_000,
                      max_digest_entries=10_000_000, max_str_len=64 << 20,
                      max_bin_len=64 << 20, max_array_len=10_000_000, max_map_len=1_000_000)

# One frame (any buffer), or a multipart message whose last frame is the body.
Frames = bytes | bytearray | memoryview | Sequence[Any]


def _pack(obj: object) -> bytes:
    try:
        data: bytes = msgpack.packb(obj, use_bin_type=True)
    except (TypeError, ValueError, OverflowError) as err:
        # A value that slipped past validation (unpaired surrogate, foreign type).
        raise ProtocolError("unencodable") from err
    return data


def encode(msg: GossipMessage, cluster: str) -> bytes:
    """Encode `msg` for `cluster`.

    Size is not checked: a sender that may exceed `Limits.max_message_bytes`
    compares `len()` of the result and chunks. Raises: ProtocolError
    ("unencodable" or "unknown_msg_type") for a message not built by make_*.
    """
    tag = _TAGS.get(msg.msg_type)
    if tag is None:
        raise ProtocolError("unknown_msg_type", "msg_type")
    body = gossip_message_to_map(msg)
    del body["type"]  # carried by the tag
    return _pack([MAGIC, PROTOCOL_VERSION, cluster, tag, body])


def encode_many(msgs: Sequence[GossipMessage], cluster: str) -> list[bytes]:
    """`encode` of each message, byte for byte, packing a states tuple that several of
    them share (`protocol.retarget`: a push of the same states to every peer) once.
    Raises: ProtocolError, as `encode`."""
    if len(msgs) < 2:
        return [encode(m, cluster) for m in msgs]
    shared: dict[int, bytes] = {}  # id(states tuple) -> its packed array
    head = _envelope_heads(cluster)
    out = []
    for msg in msgs:
        if not msg.states:
            out.append(encode(msg, cluster))
            continue
        if msg.msg_type not in head:
            raise ProtocolError("unknown_msg_type", "msg_type")
        states = shared.get(id(msg.states))
        if states is None:
            states = shared[id(msg.states)] = _pack(
                [syncable_state_to_map(s) for s in msg.states])
        body = gossip_message_to_map(msg, states=False)
        del body["type"]
        # "st" sits where gossip_message_to_map puts it: after "from"/"to".
        parts = [_MAP_HEADER(len(body) + 1)]
        for key, value in body.items():
            if key in ("dg", "pl") and states:
                parts += [_pack("st"), states]
                states = b""
            parts += [_pack(key), _pack(value)]
        if states:
            parts += [_pack("st"), states]
        out.append(_ENVELOPE_HEADER + head[msg.msg_type] + b"".join(parts))
    return out


@functools.lru_cache(maxsize=8)
def _envelope_heads(cluster: str) -> dict[str, bytes]:
    """Per message type, the envelope's first four items, packed."""
    return {name: _pack([MAGIC, PROTOCOL_VERSION, cluster, tag])[1:]
            for name, tag in _TAGS.items()}


def pack(obj: Any) -> bytes:
    """Encode a plain map (internal/control messages). Raises: ProtocolError."""
    return _pack(obj)


def _body_frame(frames: Frames) -> memoryview:
    """The body: `frames` itself, or its last frame (ROUTER identities come first)."""
    frame: object = frames
    if not isinstance(frames, (bytes, bytearray, memoryview)):
        if not isinstance(frames, Sequence) or isinstance(frames, str):
            raise DecodeError("bad_frame")
        if not frames:
            raise DecodeError("no_frames")
        frame = frames[-1]
    try:
        # Any buffer: bytes, bytearray, memoryview, zmq.Frame.
        return memoryview(frame)  # type: ignore[arg-type]
    except TypeError:
        raise DecodeError("bad_frame") from None


def _unpack_one(data: memoryview, limits: Limits) -> Any:
    """Unpack exactly one msgpack object from `data`, within `limits`.

    `unpackb`, not an `Unpacker`: an Unpacker allocates its read buffer (up to
    1 MiB) for every message, which cost several times the decode itself on
    the per-request paths (see docs/perf/issue15-percall.md).
    """
    if data.nbytes > limits.max_message_bytes:
        raise DecodeError("oversized")
    try:
        return msgpack.unpackb(
            data,
            raw=False,
            use_list=True,
            strict_map_key=True,
            max_str_len=limits.max_str_len,
            max_bin_len=limits.max_bin_len,
            max_array_len=limits.max_array_len,
            max_map_len=limits.max_map_len,
            max_ext_len=0,  # no ext types on the wire
        )
    except msgpack.ExtraData:
        raise DecodeError("trailing_data") from None
    except msgpack.StackError:
        raise DecodeError("too_deep") from None
    except UnicodeDecodeError:
        raise DecodeError("bad_utf8") from None
    except ValueError as exc:
        # unpackb says "incomplete input" for a value cut short; anything else
        # (a max_*_len breach, a non-str map key, ...) is malformed.
        cut = type(exc) is ValueError and "incomplete" in str(exc)
        raise DecodeError("truncated" if cut else "malformed") from None
    except Exception:
        # FormatError and the like: the decode contract is DecodeError and nothing else.
        raise DecodeError("malformed") from None


def _check_depth(obj: object, limits: Limits) -> None:
    try:
        validate_value(obj, "body", limits.max_depth)
    except ProtocolError as err:
        raise DecodeError(err.reason, err.field) from None


def unpack_untrusted(data: bytes | bytearray | memoryview, limits: Limits = DEFAULT_LIMITS) -> Any:
    """Decode one plain msgpack value (internal/control messages).

    Returns msgpack-native data only (no ext types), nested at most
    `limits.max_depth`. Raises: DecodeError, and nothing else.
    """
    obj = _unpack_one(_body_frame(data), limits)
    _check_depth(obj, limits)
    return obj


def _open_envelope(obj: object, cluster: str) -> tuple[str, dict[Any, Any]]:
    """Check the envelope; return the message type and the body map."""
    if not isinstance(obj, list) or len(obj) != _ENVELOPE_LEN:
        raise DecodeError("bad_envelope")
    magic, version, their_cluster, tag, body = obj
    if magic != MAGIC:
        raise DecodeError("bad_magic")
    if isinstance(version, bool) or not isinstance(version, int) or version != PROTOCOL_VERSION:
        raise DecodeError("bad_version")
    if their_cluster != cluster:
        raise DecodeError("wrong_cluster")
    if isinstance(tag, bool) or not isinstance(tag, int) or not 0 <= tag < len(MESSAGE_TYPES):
        raise DecodeError("unknown_msg_type", "msg_type")
    if not isinstance(body, dict):
        raise DecodeError("bad_envelope", "body")
    return MESSAGE_TYPES[tag], body


def _check_counts(body: dict[Any, Any], limits: Limits) -> None:
    states = body.get("st")
    if isinstance(states, list) and len(states) > limits.max_states:
        raise DecodeError("too_many_states", "states")
    digest = body.get("dg")
    if isinstance(digest, list) and len(digest) > limits.max_digest_entries:
        raise DecodeError("too_many_digest_entries", "digest")


def decode_untrusted(
    frames: Frames, cluster: str, limits: Limits = DEFAULT_LIMITS
) -> GossipMessage:
    """Decode a gossip message received from the network.

    Args:
        frames: the body bytes, or a multipart message whose last frame is
            the body (a ROUTER puts the peer identity first).
        cluster: this node's cluster; a message of another is refused.
        limits: bounds on sizes, counts and nesting.

    Returns:
        The validated message.

    Raises:
        DecodeError: for anything malformed, oversized or foreign, and no
            other exception; `.reason` says why (see DecodeError).
    """
    obj = _unpack_one(_body_frame(frames), limits)
    msg_type, body = _open_envelope(obj, cluster)
    _check_counts(body, limits)
    body["type"] = msg_type
    try:
        return map_to_gossip_message(body)
    except ProtocolError as err:
        raise DecodeError(err.reason, err.field) from None
