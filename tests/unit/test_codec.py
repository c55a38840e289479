"""Unit tests of transport.codec: envelope, limits and the DecodeError contract."""

from __future__ import annotations

import pickle
from typing import Any

import msgpack
import pytest

from transport import protocol as p
from transport.codec import (
    DEFAULT_LIMITS,
    MAGIC,
    PROTOCOL_VERSION,
    DecodeError,
    Limits,
    decode_untrusted,
    encode,
    pack,
    unpack_untrusted,
)
from transport.protocol import GossipMessage, ProtocolError

CLUSTER = "demo"
ID_A = "Xk3v9QpL2mZt7RbW"  # generate_node_id() shape: 16 url-safe chars
ID_B = "a8Jd0sPq4nVe1YcU"


def envelope(*fields: Any) -> bytes:
    return msgpack.packb(list(fields), use_bin_type=True)


def body(msg: GossipMessage) -> dict[str, Any]:
    m = p.gossip_message_to_map(msg)
    del m["type"]
    return m


def decode_reason(data: Any, limits: Limits = DEFAULT_LIMITS) -> tuple[str, str | None]:
    with pytest.raises(DecodeError) as info:
        decode_untrusted(data, CLUSTER, limits)
    return info.value.reason, info.value.field


def push_of(count: int) -> GossipMessage:
    states = [
        p.make_syncable_state("health", f"backend-{i}", {"up": True, "rtt_ms": 3}, 1000 + i, ID_A)
        for i in range(count)
    ]
    return p.push_message(ID_A, states)


def test_decode_error_is_a_protocol_error() -> None:
    assert issubclass(DecodeError, ProtocolError)
    assert DecodeError("bad_magic").reason == "bad_magic"
    err = pickle.loads(pickle.dumps(DecodeError("wrong_cluster")))
    assert (type(err), err.reason) == (DecodeError, "wrong_cluster")


def test_a_ping_round_trips_and_encodes_in_well_under_100_bytes() -> None:
    msg = p.ping_message(ID_A, ID_B, 2**31)
    data = encode(msg, CLUSTER)
    assert len(data) < 80
    assert decode_untrusted(data, CLUSTER) == msg


def test_the_envelope_is_magic_version_cluster_tag_body() -> None:
    msg = p.suspect_message(ID_A, ID_B, 3)
    decoded = msgpack.unpackb(encode(msg, CLUSTER), raw=False)
    assert decoded == [
        MAGIC,
        PROTOCOL_VERSION,
        CLUSTER,
        p.MESSAGE_TYPES.index("suspect"),
        body(msg),
    ]


def test_decode_uses_the_last_frame_so_router_identities_are_skipped() -> None:
    msg = p.leave_message(ID_A)
    data = encode(msg, CLUSTER)
    assert decode_untrusted([b"peer-id", b"", data], CLUSTER) == msg
    assert decode_untrusted(bytearray(data), CLUSTER) == msg
    assert decode_untrusted(memoryview(data), CLUSTER) == msg


def test_a_push_of_100_states_round_trips_within_12_kib() -> None:
    msg = push_of(100)
    data = encode(msg, CLUSTER)
    assert len(data) < 12 * 1024
    assert decode_untrusted(data, CLUSTER) == msg


def test_a_message_of_another_cluster_is_refused() -> None:
    data = encode(p.leave_message(ID_A), "other")
    assert decode_reason(data) == ("wrong_cluster", None)


@pytest.mark.parametrize(
    ("fields", "reason"),
    [
        ((b"LBX", 1, CLUSTER, 0, {}), "bad_magic"),
        (("LBC", 1, CLUSTER, 0, {}), "bad_magic"),
        ((MAGIC, 2, CLUSTER, 0, {}), "bad_version"),
        ((MAGIC, True, CLUSTER, 0, {}), "bad_version"),
        ((MAGIC, 1.0, CLUSTER, 0, {}), "bad_version"),
        ((MAGIC, 1, CLUSTER, 0), "bad_envelope"),
        ((MAGIC, 1, CLUSTER, 0, {}, 0), "bad_envelope"),
        ((MAGIC, 1, CLUSTER, 6, []), "bad_envelope"),
        ((MAGIC, 1, CLUSTER, len(p.MESSAGE_TYPES), {"from": ID_A}), "unknown_msg_type"),
        ((MAGIC, 1, CLUSTER, -1, {"from": ID_A}), "unknown_msg_type"),
        ((MAGIC, 1, CLUSTER, "leave", {"from": ID_A}), "unknown_msg_type"),
        ((MAGIC, 1, CLUSTER, 0, {"from": ID_A, "to": ID_B}), "missing_field"),
        ((MAGIC, 1, CLUSTER, 6, {"from": 5}), "bad_field_type"),
    ],
)
def test_malformed_envelopes_are_refused_with_a_reason(
    fields: tuple[Any, ...], reason: str
) -> None:
    assert decode_reason(envelope(*fields))[0] == reason


def test_a_field_error_keeps_its_field_name() -> None:
    data = envelope(MAGIC, 1, CLUSTER, 0, {"from": ID_A, "to": ID_B, "pl": {"seq": -3}})
    assert decode_reason(data) == ("out_of_range", "payload.seq")


@pytest.mark.parametrize(
    ("data", "reason"),
    [
        (b"", "truncated"),
        (b"\x95\xc4\x03LBC", "truncated"),
        (b"\xc1", "malformed"),  # a reserved msgpack byte
        (b"\x81\x01\x02", "malformed"),  # a map with an int key
        (b"\xd4\x05\x00", "malformed"),  # an ext type
        (b"\xa2\xff\xfe", "bad_utf8"),
        (b"\x91" * 5000 + b"\x00", "too_deep"),
        ([], "no_frames"),
        ("text", "bad_frame"),
        ([b"id", 42], "bad_frame"),
        (None, "bad_frame"),
    ],
)
def test_undecodable_input_is_refused_with_a_reason(data: Any, reason: str) -> None:
    assert decode_reason(data)[0] == reason


def test_trailing_bytes_after_the_envelope_are_refused() -> None:
    data = encode(p.leave_message(ID_A), CLUSTER)
    assert decode_reason(data + b"\x00") == ("trailing_data", None)


def test_a_frame_over_the_size_limit_is_refused_before_unpacking() -> None:
    data = encode(push_of(10), CLUSTER)
    assert decode_reason(data, Limits(max_message_bytes=len(data) - 1)) == ("oversized", None)
    assert decode_untrusted(data, CLUSTER, Limits(max_message_bytes=len(data))) == push_of(10)


def test_too_many_states_or_digest_entries_are_refused() -> None:
    assert decode_reason(encode(push_of(3), CLUSTER), Limits(max_states=2)) == (
        "too_many_states",
        "states",
    )
    pull = p.pull_message(ID_A, {("kv", str(i)): i for i in range(3)})
    assert decode_reason(encode(pull, CLUSTER), Limits(max_digest_entries=2)) == (
        "too_many_digest_entries",
        "digest",
    )


def test_msgpack_length_limits_apply_before_allocation() -> None:
    # A str header claiming 4 GiB in a 10-byte frame.
    assert decode_reason(b"\xdb\xff\xff\xff\xff" + b"x" * 5)[0] in {"malformed", "truncated"}
    data = encode(p.leave_message(ID_A, payload_extra={"blob": b"x" * 100}), CLUSTER)
    assert decode_reason(data, Limits(max_bin_len=99))[0] == "malformed"


def test_encode_refuses_a_message_it_cannot_represent() -> None:
    with pytest.raises(ProtocolError) as info:
        encode(GossipMessage("gossip", ID_A), CLUSTER)
    assert info.value.reason == "unknown_msg_type"
    with pytest.raises(ProtocolError) as info:
        encode(GossipMessage("leave", ID_A, payload={"x": object()}), CLUSTER)
    assert info.value.reason == "unencodable"


def test_pack_and_unpack_untrusted_round_trip_plain_maps() -> None:
    obj = {"cmd": "members", "args": [1, None, b"\x00", {"json": True}], "f": 0.5}
    assert unpack_untrusted(pack(obj)) == obj


@pytest.mark.parametrize(
    ("data", "reason"),
    [
        (b"\x92\x01", "truncated"),
        (b"\x01\x02", "trailing_data"),
        (b"\x91" * 41 + b"\x00", "too_deep"),
        (b"\xd6\xff\x00\x00\x00\x00", "malformed"),  # msgpack timestamp ext
    ],
)
def test_unpack_untrusted_refuses_bad_input_with_a_reason(data: bytes, reason: str) -> None:
    with pytest.raises(DecodeError) as info:
        unpack_untrusted(data)
    assert info.value.reason == reason


def test_unpack_untrusted_accepts_nesting_up_to_the_depth_limit() -> None:
    assert unpack_untrusted(b"\x91" * 40 + b"\x00") is not None


def test_pack_refuses_unencodable_objects() -> None:
    with pytest.raises(ProtocolError) as info:
        pack({"x": {1, 2}})
    assert info.value.reason == "unencodable"
