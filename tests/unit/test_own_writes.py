"""A provider's own writes made while it handles a request from the node leave like any
local write, in the SDK's host thread and in a node-run provider host: a rate provider
flushes whenever a drain finds its flush due, and an `apply` drains. Such a flush was
once dropped (SDK) or filed as remote (host), and the other nodes then kept the shard
as it was before it (for instance a stopped count, carried forward)."""

from __future__ import annotations

import threading
from collections import Counter
from typing import Any

from conftest import SentFrames

from actors.providers.adapter import ProviderAdapter
from actors.providers.host import ProviderActor
from actors.providers.rate import RateProvider
from actors.sdk.host_loop import ChangeQueue, HostLoop
from transport.protocol import LamportClock, SyncableState, syncable_state_to_map
from transport.rpc import Request


class FakeNode:
    node_id = "n0"
    timeout_s = 5.0


def _rate_due_with_a_remote_apply() -> tuple[RateProvider, Request]:
    """A rate provider whose flush of 5 counts is due, and an apply of another node's
    shard that arrives before its host ticked."""
    clock = {"mono": 100.0, "wall": 1_700_000_000.5}
    rate = RateProvider("n0", LamportClock(), {"window_s": 60},
                        now_fn=lambda: clock["mono"], wall_fn=lambda: clock["wall"])
    rate.add("api", 5)
    rate.drain_changes()  # the first flush (due at once) has left
    rate.add("api", 2)
    clock["mono"] += 1.0  # the next flush is due; the host has not ticked yet
    remote = SyncableState("rate", "api@n1", {"b": [[1_700_000_000, 3]], "at": 0, "r": 0},
                           4, "n1")
    return rate, Request((b"ae",), 7, "apply", {"states": [syncable_state_to_map(remote)],
                                                 "clock": 4})


class FakeControl:
    def __init__(self) -> None:
        self.sent: list[tuple[str, dict[str, Any]]] = []

    def request(self, op: str, args: dict[str, Any], now: float, timeout_s: float,
                callback: Any) -> None:
        self.sent.append((op, args))


def test_the_sdk_sends_a_flush_made_while_applying_a_remote_shard() -> None:
    rate, apply = _rate_due_with_a_remote_apply()
    queue = ChangeQueue()
    loop = HostLoop(ProviderAdapter(rate, rate.clock), threading.RLock(), queue, FakeNode(),
                    "ipc://@unused", 5.0, Counter(), Counter())  # type: ignore[arg-type]
    control, router = FakeControl(), SentFrames()
    loop.control, loop.router = control, router  # type: ignore[assignment]
    try:
        loop._answer(apply)
        assert len(router.sent) == 1  # answered
        (op, args), = control.sent  # and our flush went to the node, not the other shard
        assert op == "local"
        assert [(s["k"], s["v"]["b"]) for s in args["states"]] == \
            [("api@n0", [[1_700_000_000, 7]])]
    finally:
        queue.close()


class FakeEnv:
    node_id = "n0"


def test_a_node_run_host_files_that_flush_as_local_and_the_delivered_shard_as_remote() -> None:
    rate, apply = _rate_due_with_a_remote_apply()
    host = ProviderActor.__new__(ProviderActor)  # only what `_collect` touches
    host.adapter, host.env = ProviderAdapter(rate, rate.clock), FakeEnv()  # type: ignore[assignment]
    host._local, host._remote = {}, {}
    host.adapter.handle("apply", apply.args, 101.0)
    host._collect(101.0, apply)
    assert [s.key for s in host._local.values()] == ["api@n0"]  # sent to anti-entropy
    assert [s.key for s in host._remote.values()] == ["api@n1"]  # journaled, not sent
