"""The supervisor's event log: a packed event from an actor goes out byte for byte as
the same event published decoded would."""

from __future__ import annotations

from conftest import SentFrames

from actors.node.eventlog import MAX_TYPES, EventLog
from transport.codec import pack, unpack_untrusted
from transport.protocol import make_event


def _logs() -> tuple[EventLog, SentFrames, EventLog, SentFrames]:
    a, b = SentFrames(), SentFrames()
    return EventLog("n0", [a]), a, EventLog("n0", [b]), b  # type: ignore[list-item]


def test_a_packed_event_is_published_as_the_decoded_one_would_be() -> None:
    by_dict, dict_sink, by_bytes, bytes_sink = _logs()
    for i in range(3):
        event = make_event("state.changed", "n1", {"key": f"k{i}", "value": [1, {"a": i}]},
                           timestamp=1700000000.5 + i)
        by_dict.publish(event)
        by_bytes.publish_packed("state.changed", pack(event))
    assert bytes_sink.sent == dict_sink.sent
    assert unpack_untrusted(bytes_sink.sent[-1][-1])["seq"] == by_bytes.seq == 3
    assert by_bytes.by_type == by_dict.by_type


def test_packed_node_events_still_reach_the_member_table() -> None:
    log, sink, _, _ = _logs()
    event = make_event("node.joined", "n2", {"node_id": "n2", "status": "alive"})
    log.publish_packed("node.joined", pack(event))
    assert log.members["n2"]["status"] == "alive"
    assert unpack_untrusted(sink.sent[0][-1])["source"] == "n0"


def test_an_undecodable_packed_event_is_dropped() -> None:
    log, sink, _, _ = _logs()
    log.publish_packed("state.changed", b"\xc1junk")
    log.publish_packed("state.changed", b"")
    assert sink.sent == [] and log.seq == 0


def test_event_types_past_the_cap_are_counted_as_other_but_keep_their_topic() -> None:
    log, sink, _, _ = _logs()
    for i in range(MAX_TYPES + 2):
        log.publish({"type": f"custom.t{i}", "node_id": "n1", "timestamp": 0.0, "data": {}})
    assert [frames[0] for frames in sink.sent[-2:]] == [
        f"custom.t{MAX_TYPES}".encode(), f"custom.t{MAX_TYPES + 1}".encode()]
    assert log.by_type["other"] == 2 and len(log.by_type) == MAX_TYPES + 1


def test_a_batch_from_an_actor_skips_what_is_not_a_kind_and_bytes_pair() -> None:
    log, sink, _, _ = _logs()
    good = pack(make_event("state.changed", "n1", {"key": "k"}))
    log.publish_packed_many([["state.changed", good], ["x"], [1, good], "junk",
                             ["state.changed", "not bytes"], ["state.changed", good]])
    log.publish_packed_many({"not": "a list"})
    assert len(sink.sent) == 2 and log.seq == 2
