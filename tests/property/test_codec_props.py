"""Property tests of transport.codec: round trip, and DecodeError as the only failure."""

from __future__ import annotations

import contextlib
from typing import Any

import msgpack
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from test_protocol_props import garbage, messages, spoilt_messages, values

from transport.codec import (
    MAGIC,
    PROTOCOL_VERSION,
    DecodeError,
    decode_untrusted,
    encode,
    encode_many,
    pack,
    unpack_untrusted,
)
from transport.protocol import MESSAGE_TYPES, GossipMessage, retarget

SETTINGS = settings(max_examples=300, deadline=None, suppress_health_check=[HealthCheck.too_slow])
CLUSTER = "demo"


def decodes_or_refuses(data: Any) -> GossipMessage | None:
    """Decode; a DecodeError is an accepted outcome, any other exception fails the test."""
    try:
        return decode_untrusted(data, CLUSTER)
    except DecodeError:
        return None


@SETTINGS
@given(messages())
def test_every_valid_message_survives_encode_and_decode(msg: GossipMessage) -> None:
    assert decode_untrusted(encode(msg, CLUSTER), CLUSTER) == msg


@SETTINGS
@given(st.lists(messages(), max_size=4), st.lists(st.sampled_from(["n1", "n2", "n3"]),
                                                  max_size=3))
def test_encode_many_is_encode_of_each_with_shared_states_packed_once(
        msgs: list[GossipMessage], peers: list[str]) -> None:
    batch = [*msgs, *(retarget(m, p) for m in msgs for p in peers)]
    assert encode_many(batch, CLUSTER) == [encode(m, CLUSTER) for m in batch]


@SETTINGS
@given(st.binary(max_size=200))
def test_random_bytes_raise_only_decode_error(data: bytes) -> None:
    decodes_or_refuses(data)


@st.composite
def mutated_encodings(draw: st.DrawFn) -> bytes:
    data = bytearray(encode(draw(messages()), CLUSTER))
    for _ in range(draw(st.integers(min_value=1, max_value=4))):
        kind = draw(st.sampled_from(["flip", "cut", "insert", "delete"]))
        at = draw(st.integers(min_value=0, max_value=max(len(data) - 1, 0)))
        if kind == "flip" and data:
            data[at] ^= draw(st.integers(min_value=1, max_value=255))
        elif kind == "cut":
            del data[at:]
        elif kind == "insert":
            data[at:at] = draw(st.binary(min_size=1, max_size=4))
        elif data:
            del data[at]
    return bytes(data)


@SETTINGS
@given(mutated_encodings())
def test_mutated_encodings_raise_only_decode_error(data: bytes) -> None:
    decodes_or_refuses(data)


@SETTINGS
@given(st.integers(min_value=-1, max_value=len(MESSAGE_TYPES)), garbage)
def test_well_framed_envelopes_with_garbage_bodies_raise_only_decode_error(
    tag: int, body: Any
) -> None:
    try:
        data = msgpack.packb([MAGIC, PROTOCOL_VERSION, CLUSTER, tag, body], use_bin_type=True)
    except (TypeError, ValueError, OverflowError):
        return  # garbage msgpack cannot carry
    decodes_or_refuses(data)


@SETTINGS
@given(st.integers(min_value=0, max_value=len(MESSAGE_TYPES) - 1), spoilt_messages)
def test_envelopes_with_spoilt_message_bodies_raise_only_decode_error(tag: int, body: Any) -> None:
    if isinstance(body, dict):
        body.pop("type", None)  # the tag carries it
    try:
        data = msgpack.packb([MAGIC, PROTOCOL_VERSION, CLUSTER, tag, body], use_bin_type=True)
    except (TypeError, ValueError, OverflowError):
        return  # garbage msgpack cannot carry
    decodes_or_refuses(data)


@SETTINGS
@given(values)
def test_plain_values_survive_pack_and_unpack_untrusted(value: Any) -> None:
    assert unpack_untrusted(pack(value)) == value


@SETTINGS
@given(st.binary(max_size=200))
def test_unpack_untrusted_of_random_bytes_raises_only_decode_error(data: bytes) -> None:
    with contextlib.suppress(DecodeError):
        unpack_untrusted(data)
