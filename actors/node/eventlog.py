"""The node's event log: sequence numbers, the member table, the Clone-pattern snapshot.

Every event of the node passes through `publish`: it is stamped with
``source`` (this node) and the next ``seq``, sent to the public events PUB
and to the actors' fan-out, and folded into the member table. Because the
table and the counter change together, a `snapshot` taken between two
events is exactly the state at its ``seq``: a client subscribes, takes the
snapshot, then applies only newer events (the ZeroMQ guide's Clone pattern).
"""

from __future__ import annotations

import contextlib
from collections import Counter
from collections.abc import Sequence
from typing import Any

import zmq

from transport.codec import LOCAL_LIMITS, DecodeError, pack, unpack_untrusted
from transport.protocol import make_event

# Distinct event types counted one by one (`lbcluster_events_total{type}`); past it they
# are counted as "other", so a buggy publisher cannot grow the table without end.
MAX_TYPES = 256
_FOUR_KEYS, _SIX_KEYS = b"\x84", b"\x86"  # msgpack fixmap headers: an event, stamped
# Plain ints: pyzmq's enum flags cost a microsecond per `|`. Every event of a write
# burst passes here, twice (the events PUB and the actors' fan-out).
_NOBLOCK = int(zmq.NOBLOCK)
_MORE_NOBLOCK = int(zmq.SNDMORE) | _NOBLOCK


class EventLog:
    def __init__(self, node_id: str, sinks: Sequence[zmq.Socket]) -> None:
        self.node_id = node_id
        self.sinks = sinks
        self.seq = 0
        # node id -> the data of the latest node.* event about it
        self.members: dict[str, dict[str, Any]] = {}
        self.by_type: Counter[str] = Counter()
        self._stamp = pack("source") + pack(node_id) + pack("seq")  # see publish_packed
        self._sends = [sock.send for sock in sinks]
        self._topics: dict[str, bytes] = {}  # at most MAX_TYPES, like by_type

    def emit(self, event_type: str, data: dict[str, Any], node_id: str | None = None) -> None:
        self.publish(make_event(event_type, node_id or self.node_id, data))

    def publish(self, event: dict[str, Any]) -> None:
        self.seq += 1
        event = {**event, "source": self.node_id, "seq": self.seq}
        kind = str(event.get("type"))
        self._track(kind, event.get("data"))
        self._send(kind, pack(event))

    def publish_packed_many(self, items: Any) -> None:
        """`publish_packed` of each ``[kind, body]`` pair of an actor's ``events.packed``
        message; a pair of another shape is skipped."""
        if not isinstance(items, list):
            return
        for item in items:
            if isinstance(item, list) and len(item) == 2:
                kind, body = item
                if isinstance(kind, str) and isinstance(body, bytes):
                    self.publish_packed(kind, body)

    def publish_packed(self, kind: str, body: bytes) -> None:
        """`publish` of an event an actor packed (`make_event`'s four keys): stamped by
        appending "source" and "seq" to its bytes, so the events of a write burst are
        neither decoded nor packed again here. The frames are those `publish` sends.
        node.* events (the member table reads them) and anything else are decoded."""
        if body[:1] != _FOUR_KEYS or kind.startswith("node."):
            with contextlib.suppress(DecodeError):
                event = unpack_untrusted(body, LOCAL_LIMITS)
                if isinstance(event, dict):
                    self.publish(event)
            return
        self.seq += 1
        self._send(kind, b"".join((_SIX_KEYS, body[1:], self._stamp, pack(self.seq))))

    def _send(self, kind: str, body: bytes) -> None:
        """Two frames, type then event, to every sink; a full sink misses it (a slow
        subscriber resynchronises with `snapshot`)."""
        by_type = self.by_type
        counted = kind if kind in by_type or len(by_type) < MAX_TYPES else "other"
        by_type[counted] += 1
        topic = self._topics.get(kind)
        if topic is None:
            topic = kind.encode()
            if counted == kind:  # as bounded as by_type
                self._topics[kind] = topic
        for send in self._sends:
            try:
                send(topic, _MORE_NOBLOCK)
            except zmq.Again:
                continue
            send(body, _NOBLOCK)  # the rest of a message whose first frame went in

    def _track(self, kind: str, data: Any) -> None:
        if kind.startswith("node.") and isinstance(data, dict) and "node_id" in data:
            self.members[str(data["node_id"])] = data

    def member_rows(self, own: dict[str, Any]) -> list[dict[str, Any]]:
        """Members as the events told them. This node is never the subject of a join
        event, so `own` (what the supervisor knows of it) stands in until one is."""
        rows = dict(self.members)
        rows.setdefault(self.node_id, own)
        return sorted(rows.values(), key=lambda r: str(r["node_id"]))

    @property
    def total(self) -> int:
        return self.seq
