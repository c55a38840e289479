"""The SDK host thread keeps at most LOCALS_IN_FLIGHT "local" requests waiting on the
node; changes made meanwhile wait in the program's queue and leave together, newest
per key, as replies come back."""

from __future__ import annotations

import threading
from collections import Counter
from typing import Any

from actors.providers.adapter import ProviderAdapter
from actors.providers.kv import KvProvider
from actors.sdk import host_loop
from actors.sdk.host_loop import ChangeQueue, HostLoop
from transport.protocol import LamportClock, SyncableState


class FakeNode:
    node_id = "n0"
    timeout_s = 5.0


class FakeControl:
    def __init__(self) -> None:
        self.sent: list[tuple[dict[str, Any], Any]] = []

    def request(self, op: str, args: dict[str, Any], now: float, timeout_s: float,
                callback: Any) -> None:
        assert op == "local"
        self.sent.append((args, callback))


def _kv(key: str, version: int) -> SyncableState:
    return SyncableState("kv", key, {"v": version}, version, "n0")


def test_changes_beyond_the_cap_wait_and_leave_coalesced_when_a_reply_comes() -> None:
    clock = LamportClock()
    queue = ChangeQueue()
    loop = HostLoop(ProviderAdapter(KvProvider("n0", clock), clock), threading.RLock(), queue,
                    FakeNode(), "ipc://@unused", 5.0, Counter(), Counter())  # type: ignore[arg-type]
    control = FakeControl()
    loop.control = control  # type: ignore[assignment]
    try:
        for i in range(host_loop.LOCALS_IN_FLIGHT):
            queue.put([_kv(f"k{i}", 1)])
            loop._on_wake()
        assert len(control.sent) == host_loop.LOCALS_IN_FLIGHT == loop.in_flight
        queue.put([_kv("x", 2)])
        queue.put([_kv("y", 3), _kv("x", 4)])
        loop._on_wake()
        assert len(control.sent) == host_loop.LOCALS_IN_FLIGHT  # held: the node is busy
        assert len(queue) == 3
        _, done = control.sent[0]
        done({"accepted": 1, "clock": 4}, None)
        args, _ = control.sent[-1]
        assert len(control.sent) == host_loop.LOCALS_IN_FLIGHT + 1
        assert sorted((s["k"], s["ver"]) for s in args["states"]) == [("x", 4), ("y", 3)]
        assert len(queue) == 0
    finally:
        queue.close()
